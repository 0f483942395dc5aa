"""MATH-style answer equivalence: a cheap in-process string check, then math-verify in a worker.

`math_equal` / `math_equal_batch` are the only entry points. Each pair first goes through a pure
string fast path (`normalize_answer` on the single boxed answer or the bare answer); a pair it
cannot settle whose gold or prediction is recognisably pathological (`longcot.grading.screen`: a
power tower, a megabyte, brackets nested hundreds deep, a dunder name) is False at once; only the
rest are sent to the killable worker pool (`longcot.grading.pool`), where `verify_in_worker` runs
math-verify with its own signal-based timeouts disabled.

How a text is handed to math-verify (gold and prediction alike):

* it contains a complete `\\boxed{}`/`\\fbox{}`, is long, multi-line, holds math delimiters
  (`$`, `\\(`, `\\[`) or reads as prose (three words in a row): the whole text, so math-verify's
  own extraction applies (last box, adjacent boxes joined, "final answer is", last LaTeX span or
  number...);
* otherwise it is a bare answer such as `\\frac{1}{2}` or `x \\in [0, 1)`: it is parsed as `$text$`
  (escaped `\\$` removed), falling back to the plain text if that yields no expression.

math-verify settings are its defaults: LaTeX + plain-expression extraction, `float_rounding=6`,
`strict=True`, `allow_set_relation_comp=False`.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from longcot.grading.extract import extract_boxed, normalize_answer
from longcot.grading.pool import DEFAULT_TIMEOUT, GraderPool, default_pool
from longcot.grading.screen import MAX_CHARS
from longcot.grading.screen import screen as _screen

__all__ = ["math_equal", "math_equal_batch", "fast_equal", "verify_in_worker"]

_BARE_MAX = 200  # longer texts are never treated as a bare answer
_MATH_DELIM = re.compile(r"(?<!\\)\$|\\\(|\\\[")
_PROSE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}(?:\s+[A-Za-z]{2,}){2}")


def _is_bare(text: str) -> bool:
    return (
        len(text) <= _BARE_MAX
        and "\n" not in text
        and extract_boxed(text) is None
        and _MATH_DELIM.search(text) is None
        and _PROSE.search(text) is None
    )


def _fast_answer(text: str) -> str | None:
    """The answer string the fast path may compare: the only box, or a bare answer; else None."""
    boxes = text.count("\\boxed") + text.count("\\fbox")
    if boxes == 1:
        return extract_boxed(text)
    if boxes == 0 and len(text) <= _BARE_MAX and "\n" not in text:
        return text
    return None  # several boxes (math-verify may join them) or a long unboxed text


def fast_equal(gold: str, prediction: str) -> bool:
    """True when both answers have the same non-empty `normalize_answer` form (no false Trues)."""
    a, b = _fast_answer(gold.strip()), _fast_answer(prediction.strip())
    if a is None or b is None:
        return False
    na = normalize_answer(a)
    return bool(na) and na == normalize_answer(b)


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"answers must be str (or int/float/None), got {type(value).__name__}")


def math_equal_batch(
    pairs: Sequence[tuple[Any, Any]],
    timeout: float = DEFAULT_TIMEOUT,
    workers: int | None = None,
    *,
    pool: GraderPool | None = None,
    screen: bool = True,
) -> list[bool]:
    """Grade `(gold, prediction)` pairs; one bool per pair, in order.

    `gold` is a MATH answer or a full solution with `\\boxed{}`; `prediction` a full response or an
    already extracted answer. A None side (e.g. no response) is False; ints/floats are stringified.
    Pairs not settled by the string fast path run (identical pairs once) in `pool` (default: the
    shared module-level pool, resized to `workers` when given) under a hard `timeout` per pair:
    an overrunning pair is False and counted in the pool's `stats.timeouts`. With `screen` (the
    default), a pair with a side longer than `screen.MAX_CHARS` is False before anything reads it,
    and a pair the fast path did not settle and one side of which `longcot.grading.screen` finds
    pathological is False without reaching a worker (both counted in `stats.screened`).
    """
    texts = [(_as_text(g), _as_text(p)) for g, p in pairs]
    verdicts = [False] * len(texts)
    slow: dict[tuple[str, str], list[int]] = {}  # identical pairs are graded once
    reasons: dict[str, str | None] = {}  # each distinct text is screened once (golds repeat)

    def pathological(text: str) -> bool:
        if text not in reasons:
            reasons[text] = _screen(text)
        return reasons[text] is not None

    screened = 0
    for i, (g, p) in enumerate(texts):
        if g is None or p is None:
            continue
        if screen and max(len(g), len(p)) > MAX_CHARS:  # not even the string fast path reads a megabyte
            screened += 1
        elif fast_equal(g, p):
            verdicts[i] = True
        elif screen and (pathological(g) or pathological(p)):
            screened += 1
        else:
            slow.setdefault((g, p), []).append(i)
    pool = pool if pool is not None else default_pool(workers)
    pool.record_fast_path(sum(verdicts))
    pool.record_screened(screened)
    if slow:
        results = pool.run(list(slow), timeout=timeout)
        for indices, (ok, _status) in zip(slow.values(), results):
            for i in indices:
                verdicts[i] = ok
    return verdicts


def math_equal(gold: Any, prediction: Any, timeout: float = DEFAULT_TIMEOUT, *, screen: bool = True) -> bool:
    """Whether `prediction` (full response or extracted answer) matches the MATH-style `gold`.

    Same semantics, screen and hard timeout as `math_equal_batch` (it is a batch of one).
    """
    return math_equal_batch([(gold, prediction)], timeout=timeout, screen=screen)[0]


# -------------------------------------------------------------------------- worker side only

_setup_done = False


def _setup() -> None:
    """Import math-verify, silence its per-call warnings and patch a parser bug (once)."""
    global _setup_done
    if _setup_done:
        return
    import logging

    for name in ("math_verify", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # latex2sympy2_extended (1.11) calls `AtomContext.FUNC_GAMMA()` before checking for a
    # percentage, but the parser it generated for the antlr 4.9.3 runtime (pinned by Hydra) has no
    # such method, so every `28\%` inside a box fails to parse. A missing token is None.
    from latex2sympy2_extended import antlr_parser

    atom_context = antlr_parser.PSParser.AtomContext
    if not hasattr(atom_context, "FUNC_GAMMA"):
        atom_context.FUNC_GAMMA = lambda self: None
    _setup_done = True


def _parse(text: str) -> list:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse
    from sympy import Basic, MatrixBase

    config = [LatexExtractionConfig(), ExprExtractionConfig()]
    text = text.strip()
    candidates = [text]
    if _is_bare(text):
        candidates = ["$" + text.replace("\\$", "") + "$", text]
    first: list | None = None
    for candidate in candidates:
        parsed = parse(candidate, config, parsing_timeout=None)
        if any(isinstance(x, (Basic, MatrixBase)) for x in parsed):
            return parsed
        first = parsed if first is None else first
    return first or []


def verify_in_worker(gold: str, prediction: str) -> bool:
    """math-verify `parse` + `verify` WITHOUT any timeout: call only inside a pool worker."""
    _setup()
    from math_verify import verify

    g = _parse(gold)
    p = _parse(prediction)
    if not g or not p:
        return False
    return bool(verify(g, p, timeout_seconds=None))
