"""The pathological-answer screen: what it catches, what it leaves alone, and that it changes no
verdict on real data (the 333 shared grader cases, MATH-500 answers/solutions, MATH training
solutions), with the burst of hostile answers from 4 threads answered well within one timeout."""

from __future__ import annotations

import json
import threading
import time

import pytest

from longcot.data import shared_data_dir
from longcot.grading import GraderPool, math_equal, math_equal_batch
from longcot.grading.screen import MAX_BOX_DEPTH, MAX_CHARS, MAX_TEXT_DEPTH, _Magnitudes, screen

SHARED = shared_data_dir()
INJECT = "__import__('os').system('touch /tmp/pwned')"

# The burst of issue 7: each one alone held a worker for the full timeout (or seconds).
BURST = {
    "tower-9": r"\boxed{9^{9^{9^{9^{9}}}}}",
    "tower-5": r"$5^{5^{5^{5^5}}}$",
    "one-megabyte": "x" * 1_000_000,
    "5000-open-braces": "{" * 5000,
    "box-3000-parens": "\\boxed{" + "(" * 3000,
    "factorial-tower": r"\boxed{10^{10^{10^{10}}}!}",
    "import-injection": INJECT,
}


@pytest.mark.parametrize("name", sorted(BURST))
def test_burst_answers_are_screened(name: str) -> None:
    assert screen(BURST[name]) is not None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("x" * (MAX_CHARS + 1), "longer than"),
        ("\\boxed{" + "1+" * 3000 + "1}", "boxed answer longer"),
        ("\\boxed{" + "{" * (MAX_BOX_DEPTH + 1) + "1" + "}" * (MAX_BOX_DEPTH + 1) + "}", "nested deeper than 12"),
        ("$" + "(" * (MAX_TEXT_DEPTH + 1) + "1$", "nested deeper than 32"),
        (r"\boxed{().__class__.__bases__[0]}", "dunder"),
        (r"\boxed{9^{9^{9}}}", "digits"),  # 9^387420489: 370 million digits
        (r"\boxed{(10^{7})!}", "digits"),  # 65.7 million digits
        (r"\boxed{1000000!}", "digits"),  # 5.6 million digits
        (r"\boxed{2^{4000000}}", "digits"),  # 1.2 million digits
        (r"\boxed{0.5^{10^{7}}}", "digits"),  # a tiny value with a 3-million-digit denominator
        (r"\boxed{\frac{1}{10^{10^{7}}}}", "digits"),
        ("9**9**9**9", "digits"),
        ("$" + "1+" * 60_000 + "1$", "without a space"),
        ("The sum is " + "1+" * 600 + "1.", "without a space"),
        (r"\boxed{x + 3 \cdot 10^{10^{7}}}", "digits"),  # a huge part of a symbolic sum
    ],
)
def test_screen_reasons(text: str, reason: str) -> None:
    assert reason in (screen(text) or "")


@pytest.mark.parametrize(
    "text",
    [
        r"\boxed{7^{7^{7}}}",  # 695,975 digits: under the 10^6 bound, left to math-verify
        r"\boxed{2^{2^{2^{2}}}}",
        r"\boxed{100000!}",  # 456,574 digits
        r"\boxed{10^{-5}}",
        r"\boxed{x^{10^{10}}}",  # symbolic: sympy does not expand it
        r"\boxed{(x+2)^{10^{10}}}",
        r"\boxed{\frac{2}{\sqrt{2}}}",
        "1" * 400,  # a 400-digit literal has 400 digits
        r"The last digit of $9^{9^{9}}$ is 9, so the answer is $\boxed{9}$.",  # only the box counts
        "\\boxed{" + "{" * MAX_BOX_DEPTH + "1" + "}" * MAX_BOX_DEPTH + "}",
        "\\frac" * 5000 + "12",  # tolerant reading: no recursion error
        "1 + " * 50_000,  # spaced out: left to math-verify (about 2 s), the timeout is the net
        "1+" * 500,
        "",
    ],
)
def test_screen_leaves_ordinary_and_borderline_texts(text: str) -> None:
    assert screen(text) is None


def test_magnitude_estimates_are_hand_checked() -> None:
    """log10 upper bounds: 9^9 = 387,420,489 -> 8.59; 9^{9^9} -> 387,420,489 * log10(9) = 3.70e8."""
    assert _Magnitudes("9^9").largest() == pytest.approx(9 * 0.9542425, rel=1e-6)
    assert _Magnitudes("9^{9^9}").largest() == pytest.approx(387_420_489 * 0.9542425094, rel=1e-6)
    assert _Magnitudes("100!").largest() == pytest.approx(157.97, abs=0.01)  # 100! has 158 digits
    assert _Magnitudes(r"\frac{10^{3}}{10^{4}}").largest() == pytest.approx(7.0)
    assert _Magnitudes("x^{10^{10}}").largest() == pytest.approx(10.0)  # only the exponent is numeric


def test_screened_pair_costs_no_worker() -> None:
    with GraderPool(workers=1) as pool:
        assert math_equal_batch([("3", BURST["tower-9"]), ("3", INJECT)], pool=pool) == [False, False]
        assert pool.stats.screened == 2 and pool.stats.dispatched == 0 and pool.worker_pids() == []
        # the fast path still settles identical texts, however pathological
        assert math_equal_batch([(r"9^{9^{9}}", r"\boxed{9^{9^{9}}}")], pool=pool) == [True]


def test_burst_from_four_threads_returns_within_one_timeout() -> None:
    """Issue 7: the seven hostile answers at once from 4 threads took up to 16.2 s (timeout 5 s)."""
    timeout = 5.0
    math_equal("1", r"\boxed{1}")  # the shared pool is up, as in a running eval
    latencies: dict[str, float] = {}
    verdicts: dict[str, bool] = {}
    names = sorted(BURST)
    start = time.monotonic()

    def worker(k: int) -> None:
        for name in names[k::4]:
            verdicts[name] = math_equal("3", BURST[name], timeout=timeout)
            latencies[name] = time.monotonic() - start

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    print(f"\nburst of {len(BURST)} from 4 threads: worst verdict after {max(latencies.values()):.3f}s")
    assert verdicts == {name: False for name in names}
    assert max(latencies.values()) < timeout / 5


# ------------------------------------------------------------------ no verdict changes on real data


def _jsonl(relative: str) -> list[dict]:
    path = SHARED / relative
    if not path.is_file():
        pytest.skip(f"shared data file not found: {path} (set LONGCOT_SHARED_DATA)")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_screen_passes_every_real_text() -> None:
    """No side of the shared cases, MATH-500 and the MATH training solutions trips the screen."""
    texts = [str(c[k]) for c in _jsonl("grader_cases/equiv_cases.jsonl") for k in ("gold", "pred")]
    texts += [r[k] for r in _jsonl("math500/test.jsonl") for k in ("answer", "solution")]
    texts += [r["solution"] for r in _jsonl("math_train/train.jsonl")]
    assert len(texts) > 9000
    tripped = [(t[:80], screen(t)) for t in texts if screen(t) is not None]
    assert tripped == []


@pytest.mark.slow
def test_verdicts_identical_with_and_without_screen() -> None:
    """The 333 shared cases and MATH-500 gold (answer vs solution both ways) graded twice."""
    cases = _jsonl("grader_cases/equiv_cases.jsonl")
    rows = _jsonl("math500/test.jsonl")
    pairs = [(c["gold"], c["pred"]) for c in cases]
    pairs += [(r["answer"], r["solution"]) for r in rows] + [(r["solution"], r["answer"]) for r in rows]
    with GraderPool(workers=2) as pool:
        screened = math_equal_batch(pairs, pool=pool, screen=True)
        assert pool.stats.screened == 0
        plain = math_equal_batch(pairs, pool=pool, screen=False)
    assert len(pairs) == 1333
    assert screened == plain


def test_a_megabyte_is_not_even_read_by_the_fast_path() -> None:
    """`\\boxed{` + 1 MB of braces costs ~1 s of in-process string work (brace matching twice);
    over MAX_CHARS the pair is False before the fast path runs."""
    hostile = "\\boxed{" + "{" * 1_000_000
    with GraderPool(workers=1) as pool:
        start = time.perf_counter()
        assert math_equal_batch([("3", hostile), (hostile, hostile)], pool=pool) == [False, False]
        assert time.perf_counter() - start < 0.1
        assert pool.stats.screened == 2
        assert math_equal_batch([("3", hostile)], pool=pool, screen=False, timeout=1.0) == [False]
