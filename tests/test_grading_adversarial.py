"""Hostile answers: every one gets a verdict within the hard timeout, and no text is executed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from longcot.grading import grading_stats, math_equal, math_equal_batch

TIMEOUT = 1.5  # seconds per pair for these tests (the default is 5)
SLACK = 2.0  # process kill + in-process string work on 1 MB inputs
MB = 1_000_000
PWNED = Path("/tmp/pwned")


def _adversarial(marker: Path) -> dict[str, tuple[str, str]]:
    inject = f"__import__('os').system('touch {marker}')"
    return {
        "nested-power-5": ("3", r"$5^{5^{5^{5^5}}}$"),
        "nested-power-9-boxed": ("3", r"\boxed{9^{9^{9^{9^{9^9}}}}}"),
        "nested-power-as-gold": (r"5^{5^{5^{5^5}}}", r"\boxed{3}"),
        "nested-power-both": (r"9^{9^{9^{9^9}}}", r"\boxed{9^{9^{9^{9^9}}}+1}"),
        "factorial-tower": ("1", r"\boxed{((10^{10})!)!}"),
        "one-megabyte-letters": ("3", "x" * MB),
        "one-megabyte-open-boxes": ("3", "\\boxed{" * (MB // 7)),
        "one-megabyte-answer-phrases": ("3", "answer: " * (MB // 8)),
        "one-megabyte-inside-box": ("3", "\\boxed{" + "1+" * (MB // 2) + "1}"),
        "one-megabyte-dollars": ("3", "$1+" * (MB // 3)),
        "unbalanced": (r"\frac{1}{2}", r"\boxed{\frac{1}{2"),
        "unbalanced-gold": (r"\boxed{\frac{1}{2", r"\boxed{\frac{1}{2}}"),
        "python-injection-marker": ("0", inject),
        "python-injection-boxed": ("0", rf"\boxed{{{inject}}}"),
        "python-injection-pwned": ("0", "__import__('os').system('touch /tmp/pwned')"),
        "eval-in-box": ("2", r'\boxed{eval("1+1")}'),
        "exec-in-text": ("2", "The answer is $exec('import os; os.system(\"touch " + str(marker) + "\")')$"),
        "lambda-call": ("42", r"\boxed{(lambda: int('4' + '2'))()}"),  # evaluating it would give 42
        "dunder-class": ("2", r"\boxed{().__class__.__bases__[0].__subclasses__()}"),
    }


CASE_IDS = list(_adversarial(Path("/nonexistent")))


@pytest.fixture(scope="module")
def report() -> dict[str, float]:
    times: dict[str, float] = {}
    yield times
    if times:
        worst = max(times, key=times.__getitem__)
        print(f"\nadversarial worst case: {worst} {times[worst]:.2f}s (timeout {TIMEOUT}s)")
        print("  " + ", ".join(f"{k}={v:.2f}s" for k, v in sorted(times.items(), key=lambda kv: -kv[1])))


@pytest.mark.parametrize("name", CASE_IDS)
def test_adversarial_answer_gets_a_verdict_in_time(name: str, tmp_path: Path, report: dict[str, float]) -> None:
    marker = tmp_path / "pwned"
    pwned_before = PWNED.exists()
    gold, prediction = _adversarial(marker)[name]
    start = time.monotonic()
    verdict = math_equal(gold, prediction, timeout=TIMEOUT)
    elapsed = time.monotonic() - start
    report[name] = elapsed
    assert verdict is False  # none is correct unless its text were executed (eval("1+1") would be 2)
    assert elapsed < TIMEOUT + SLACK, f"{name}: {elapsed:.2f}s"
    assert not marker.exists(), "model text was executed"
    if not pwned_before:
        assert not PWNED.exists(), "model text was executed"


@pytest.mark.parametrize("screen", [True, False], ids=["screened", "unscreened"])
def test_adversarial_batch_with_timeouts_counted(tmp_path: Path, screen: bool) -> None:
    """All hostile pairs in one batch (2 workers) plus normal ones: normal pairs still grade right.
    Screened, the towers, megabytes and injections never reach a worker; unscreened (the pool is
    still the safety net behind the screen), the nested powers are cut off by the timeout."""
    cases = list(_adversarial(tmp_path / "pwned").values())
    normal = [(r"\frac{1}{2}", r"\boxed{0.5}"), ("7", r"\boxed{7}"), ("x+1", r"\boxed{1+x}")]
    before = grading_stats()
    start = time.monotonic()
    verdicts = math_equal_batch(cases + normal, timeout=TIMEOUT, workers=2, screen=screen)
    elapsed = time.monotonic() - start
    after = grading_stats()
    timeouts, screened = after.timeouts - before.timeouts, after.screened - before.screened
    print(f"\nadversarial batch ({'screened' if screen else 'unscreened'}): {len(cases) + len(normal)} pairs"
          f" in {elapsed:.2f}s, {screened} screened, {timeouts} timeouts")
    assert verdicts == [False] * len(cases) + [True] * len(normal)
    if screen:
        assert screened >= 12 and timeouts == 0
        assert elapsed < TIMEOUT + SLACK  # what is left is ordinary work
    else:
        assert screened == 0 and timeouts >= 3  # at least the nested powers were cut off, not computed
    # each pair costs at most one timeout; two workers share them
    assert elapsed < (len(cases) / 2 + 1) * (TIMEOUT + SLACK)
    assert not (tmp_path / "pwned").exists()
