"""The synthetic teacher: a generation backend that really solves the toy arithmetic task.

It implements :class:`~longcot.generation.base.Generator` like the HF and vLLM backends, so the
distillation pipeline (§3: sample N candidates per prompt, grade, keep the correct ones) runs end to
end on a CPU in seconds with outputs that can be checked. It parses the toy expression
(``Compute $a op b op c$.``, :mod:`longcot.data.toy`) from the last user turn, evaluates it step by
step and writes:

* ``style="long"``: a long CoT with reflection steps ("Wait, let me recheck ...", "Alternatively,
  ..."), sometimes a slip that a reflection catches and corrects (the behaviour §3 distils from
  QwQ-32B-Preview);
* ``style="short"``: a compact solution (Qwen2.5-Math-Instruct-like short CoT).

With probability ``error_rate`` a sample makes an uncaught slip, so its final answer is wrong.
Prompts it cannot parse get a generic answer that is almost surely wrong.

The CPU twin's maps (``Map: 9>6;4>3;... Find x with x>4.``, :mod:`longcot.data.twin`) get the search
teacher's answers (:mod:`longcot.generation.search_teacher`). Two more prompt kinds are recognised (the documented protocol of the default templates):

* an action prompt (:mod:`longcot.distill.constructed`, §3.3) whose last line is ``Action: NAME``
  for NAME in clarify / decompose / solution_step / reflection / answer: it writes that action's
  text, continuing the "Solution so far" (a slip has probability ``error_rate`` per solution step;
  a reflection recomputes the last step and corrects it);
* an answer-extraction prompt (:mod:`longcot.distill.silver`, §5) containing
  ``Extract the final answer`` and a ``Solution:`` section: it answers
  ``The final answer is $\\boxed{N}$`` with the last number of that solution.

Sampling: sample ``i`` of a prompt with seed ``s`` draws every choice from
``random.Random(sample_seed(s, i))``, so it is independent of batching; temperature 0 is greedy
(the sample index is ignored: every sample equals sample 0). ``top_p`` is accepted and ignored.
Tokens: a simple deterministic tokenizer (each digit, each letter run, each other character and
each whitespace run is a token; ids are CRC32 hashes), used for ``max_new_tokens`` truncation
(``finish_reason="length"``) and :meth:`SyntheticGenerator.count_tokens`.
"""

from __future__ import annotations

import random
import re
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from longcot.data import twin
from longcot.generation import search_teacher
from longcot.generation.base import (
    Completion,
    Prompt,
    SamplingParams,
    resolve_seeds,
    sample_seed,
)

if TYPE_CHECKING:  # pragma: no cover
    from longcot.generation.config import GenerationConfig
    from longcot.models.config import ModelConfig

STYLES = ("long", "short")
ACTIONS = ("clarify", "decompose", "solution_step", "reflection", "answer")
VOCAB_SIZE = 1 << 16

_TOKEN = re.compile(r"\s+|\d|[A-Za-z]+|[^\sA-Za-z\d]")
_EXPR = re.compile(r"Compute \$([^$]+)\$")
_ACTION = re.compile(r"^Action:\s*([A-Za-z_]+)\s*$", re.MULTILINE)
_BECOMES = re.compile(r"the expression becomes \$([^$]+)\$")
_EXTRACT_MARKER = "Extract the final answer"
_NUMBER = re.compile(r"-?\d+")


# --------------------------------------------------------------------------- tokenizer
def tokenize(text: str) -> list[str]:
    """Pieces of ``text`` (``"".join(tokenize(t)) == t``): digits, letter runs, whitespace runs, symbols."""
    return _TOKEN.findall(text)


def token_ids(pieces: Sequence[str]) -> tuple[int, ...]:
    return tuple(zlib.crc32(p.encode("utf-8")) % VOCAB_SIZE for p in pieces)


# --------------------------------------------------------------------------- arithmetic
Expr = list  # [int, op, int, op, int, ...]


def parse_expression(latex: str) -> Expr | None:
    """``"3 + 4 \\times 5"`` -> ``[3, "+", 4, "*", 5]``; None unless it is ints joined by + - *."""
    text = latex.replace("\\times", "*").replace("\\cdot", "*")
    parts = re.findall(r"\d+|[+\-*]|\S", text)
    if not parts or len(parts) % 2 == 0:
        return None
    out: Expr = []
    for k, p in enumerate(parts):
        if k % 2 == 0:
            if not p.isdigit():
                return None
            out.append(int(p))
        else:
            if p not in "+-*" or len(p) != 1:
                return None
            out.append(p)
    return out


def render(expr: Expr) -> str:
    return " ".join(str(t) if isinstance(t, int) else ("\\times" if t == "*" else t) for t in expr)


def _apply(a: int, op: str, b: int) -> int:
    return a * b if op == "*" else a + b if op == "+" else a - b


def reduce_once(expr: Expr, slip: int = 0) -> tuple[Expr, tuple[int, str, int, int]] | None:
    """One evaluation step (first ``*``, else the leftmost ``+``/``-``): (new expr, (a, op, b, value)).

    ``slip`` is added to the step's value (an arithmetic mistake that then propagates)."""
    if len(expr) < 3:
        return None
    k = next((j for j in range(1, len(expr), 2) if expr[j] == "*"), 1)
    a, op, b = expr[k - 1], expr[k], expr[k + 1]
    value = _apply(a, op, b) + slip
    return expr[: k - 1] + [value] + expr[k + 2 :], (a, op, b, value)


def evaluate(expr: Expr) -> int:
    while len(expr) > 1:
        expr = reduce_once(expr)[0]  # type: ignore[index]
    return int(expr[0])


def _slip(rng: random.Random) -> int:
    """A nonzero arithmetic mistake."""
    return rng.choice([-1, 1]) * rng.randint(1, 9)


def _op_text(a: int, op: str, b: int, v: int) -> str:
    return f"${render([a, op, b])} = {v}$"


# --------------------------------------------------------------------------- writers
_OPENINGS = (
    "Okay, let me work through this.",
    "Alright, let's see.",
    "Let me think about this carefully.",
    "Hmm, let me start by reading the problem again.",
)
_ORDER = (
    "Multiplication comes before addition and subtraction.",
    "I need to respect the order of operations here.",
    "First the products, then the sums and differences from left to right.",
)
_RECHECK = (
    "Wait, let me recheck that.",
    "Wait, let me double-check this step.",
    "Hmm, wait. Let me verify that again.",
)
_CONFIRM = ("Yes, that is right.", "That checks out.", "Good, that is correct.")
_CAUGHT = ("Wait, that's not right.", "Hold on, I made a mistake there.", "Hmm, that doesn't look right.")


def write_long(expr: Expr, rng: random.Random, error_rate: float) -> str:
    """A long CoT: steps, reflections, sometimes a caught slip; an uncaught slip w.p. ``error_rate``."""
    lines = [rng.choice(_OPENINGS), f"We need to compute ${render(expr)}$.", rng.choice(_ORDER)]
    n_steps = (len(expr) - 1) // 2
    bad_step = rng.randrange(n_steps) if rng.random() < error_rate and n_steps else -1
    state = list(expr)
    for j in range(n_steps):
        if j == bad_step:  # uncaught: the wrong value propagates to the final answer
            state, (a, op, b, v) = reduce_once(state, _slip(rng))  # type: ignore[misc]
            lines.append(f"Step {j + 1}: {_op_text(a, op, b, v)}, so the expression becomes ${render(state)}$.")
            continue
        state, (a, op, b, v) = reduce_once(state)  # type: ignore[misc]
        if rng.random() < 0.3:  # a slip that a reflection catches
            lines.append(f"Step {j + 1}: {_op_text(a, op, b, v + _slip(rng))}.")
            lines.append(f"{rng.choice(_CAUGHT)} Let me recheck: {_op_text(a, op, b, v)}.")
        else:
            lines.append(f"Step {j + 1}: {_op_text(a, op, b, v)}.")
            if rng.random() < 0.5:
                lines.append(f"{rng.choice(_RECHECK)} {_op_text(a, op, b, v)}. {rng.choice(_CONFIRM)}")
        lines.append(f"So the expression becomes ${render(state)}$.")
    answer = int(state[0])
    for _ in range(rng.randint(1, 2)):
        lines.append(f"{rng.choice(_RECHECK)} Going through it once more, ${render(expr)}$ gives ${answer}$.")
    if rng.random() < 0.4:
        lines.append(f"Alternatively, I can evaluate it in one go: ${render(expr)} = {answer}$. However I do it, I get ${answer}$.")
    lines.append(f"So the final answer is $\\boxed{{{answer}}}$.")
    return "\n\n".join(lines)


def write_short(expr: Expr, rng: random.Random, error_rate: float) -> str:
    """A short CoT: the reduction steps in one paragraph; an uncaught slip w.p. ``error_rate``."""
    wrong = rng.random() < error_rate
    n_steps = (len(expr) - 1) // 2
    bad_step = rng.randrange(n_steps) if wrong and n_steps else -1
    state = list(expr)
    parts = [rng.choice(("We follow the order of operations.", "Multiplication first, then left to right."))]
    for j in range(n_steps):
        state, (a, op, b, v) = reduce_once(state, _slip(rng) if j == bad_step else 0)  # type: ignore[misc]
        parts.append(f"{_op_text(a, op, b, v)}, giving ${render(state)}$.")
    parts.append(f"The final answer is $\\boxed{{{state[0]}}}$.")
    return " ".join(parts)


def write_unknown(rng: random.Random) -> str:
    """A response to a prompt the synthetic teacher cannot parse: a guess."""
    return f"I will estimate the answer. The final answer is $\\boxed{{{rng.randint(0, 999)}}}$."


def write_action(action: str, expr: Expr, so_far: str, rng: random.Random, error_rate: float) -> str:
    """One action of a constructed trajectory (§3.3), continuing the solution ``so_far``."""
    history = [parse_expression(m) for m in _BECOMES.findall(so_far)]
    states = [expr] + [h for h in history if h]
    cur = states[-1]
    if action == "clarify":
        return f"The problem asks for the value of ${render(expr)}$, an integer."
    if action == "decompose":
        n = (len(expr) - 1) // 2
        return f"There are {n} operations. We evaluate the products first, then the sums and differences from left to right."
    if action == "solution_step":
        if len(cur) < 3:
            return f"All operations are done: the value is ${cur[0]}$."
        nxt, (a, op, b, v) = reduce_once(cur, _slip(rng) if rng.random() < error_rate else 0)  # type: ignore[misc]
        return f"{_op_text(a, op, b, v)}, so the expression becomes ${render(nxt)}$."
    if action == "reflection":
        if len(states) < 2:
            return f"{rng.choice(_RECHECK)} The expression is ${render(cur)}$; nothing is computed yet."
        prev = states[-2]
        step = reduce_once(prev)
        if step is None:
            return f"{rng.choice(_RECHECK)} {rng.choice(_CONFIRM)}"
        good, (a, op, b, v) = step
        if good == cur:
            return f"{rng.choice(_RECHECK)} {_op_text(a, op, b, v)}. {rng.choice(_CONFIRM)}"
        return f"{rng.choice(_CAUGHT)} Let me recheck: {_op_text(a, op, b, v)}, so the expression becomes ${render(good)}$."
    if action == "answer":
        return f"The final answer is $\\boxed{{{evaluate(cur)}}}$."
    raise ValueError(f"synthetic teacher: unknown action {action!r}; valid: {', '.join(ACTIONS)}")


def write_extraction(prompt_text: str) -> str:
    """§5 answer extraction: the last number of the prompt's ``Solution:`` section, boxed."""
    _, _, solution = prompt_text.rpartition("Solution:")
    numbers = _NUMBER.findall(solution)
    if not numbers:
        return "The solution does not state a final answer."
    return f"The final answer is $\\boxed{{{int(numbers[-1])}}}$."


# --------------------------------------------------------------------------- the backend
@dataclass
class SyntheticGenerator:
    """:class:`~longcot.generation.base.Generator` writing toy solutions (see the module docstring)."""

    style: str = "long"
    error_rate: float = 0.2
    name: str = "synthetic"
    giveup_rate: float = search_teacher.GIVEUP_RATE  # the twin's long teacher only
    recheck_rate: float = 0.0  # the twin's long teacher only

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"generation.style={self.style!r}; valid: {', '.join(STYLES)}")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"generation.error_rate must be in [0, 1], got {self.error_rate}")
        for key in ("giveup_rate", "recheck_rate"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"generation.{key} must be in [0, 1], got {getattr(self, key)}")

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(tokenize(t)) for t in texts]

    def respond(self, prompt: Prompt, rng: random.Random) -> str:
        """The full (untruncated) response to one chat prompt."""
        user = next((m["content"] for m in reversed(list(prompt)) if m["role"] == "user"), "")
        if _EXTRACT_MARKER in user:
            return write_extraction(user)
        lookup = twin.parse(user)
        if lookup is not None:  # the CPU twin's search task (toy_level=search)
            if self.style == "long":
                return search_teacher.write_long(lookup, rng, self.error_rate, self.giveup_rate, self.recheck_rate)
            return search_teacher.write_short(lookup, rng, self.error_rate)
        match = _EXPR.search(user)
        expr = parse_expression(match.group(1)) if match else None
        action = _ACTION.findall(user)
        if action and expr is not None:
            so_far = user.split("Solution so far:", 1)[-1]
            return write_action(action[-1], expr, so_far, rng, self.error_rate)
        if expr is None:
            return write_unknown(rng)
        writer = write_long if self.style == "long" else write_short
        return writer(expr, rng, self.error_rate)

    def generate(
        self,
        prompts: Sequence[Prompt],
        params: SamplingParams,
        *,
        seeds: Sequence[int] | None = None,
        first_sample: int = 0,
        progress: bool = True,
    ) -> list[list[Completion]]:
        from longcot.progress import bar

        seeds = resolve_seeds(len(prompts), params, seeds, first_sample)
        out: list[list[Completion]] = []
        for prompt, seed in bar(list(zip(prompts, seeds)), desc="synthetic", unit="prompt", disable=not progress):
            prompt_tokens = sum(len(tokenize(m["content"])) for m in prompt)
            row = []
            for k in range(params.n):
                s = first_sample + k
                # Greedy (t=0): one deterministic response per prompt, whatever the sample index.
                rng = random.Random(sample_seed(int(seed), 0 if params.temperature == 0 else s))
                pieces = tokenize(self.respond(prompt, rng))
                reason = "stop"
                if len(pieces) > params.max_new_tokens:
                    pieces, reason = pieces[: params.max_new_tokens], "length"
                row.append(Completion("".join(pieces), token_ids(pieces), reason, prompt_tokens, s))  # type: ignore[arg-type]
            out.append(row)
        return out


def build(model_cfg: "ModelConfig", gen_cfg: "GenerationConfig") -> SyntheticGenerator:
    """Backend entry point used by :func:`longcot.generation.build_generator`."""
    return SyntheticGenerator(style=gen_cfg.style, error_rate=float(gen_cfg.error_rate), name=str(model_cfg.name),
                              giveup_rate=float(gen_cfg.giveup_rate), recheck_rate=float(gen_cfg.recheck_rate))
