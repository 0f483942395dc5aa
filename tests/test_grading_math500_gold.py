"""MATH-500 reference solutions graded against their own answers (and against shuffled answers).

Data: `<shared>/data/math500/test.jsonl` (`$LONGCOT_SHARED_DATA` or `../shared/data` next to the
repository root).
"""

from __future__ import annotations

import json
import random

import pytest

from longcot.data import shared_data_dir

from longcot.grading import math_equal_batch
from longcot.grading.extract import normalize_answer


MATH500 = shared_data_dir() / "math500" / "test.jsonl"


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    if not MATH500.is_file():
        pytest.skip(f"MATH-500 not found at {MATH500} (set LONGCOT_SHARED_DATA to the shared data folder)")
    with MATH500.open(encoding="utf-8") as f:
        data = [json.loads(line) for line in f if line.strip()]
    assert len(data) == 500
    return data


def derangement(n: int, seed: int) -> list[int]:
    """Sattolo's algorithm: a uniformly random cyclic permutation, so perm[i] != i for all i."""
    perm = list(range(n))
    rng = random.Random(seed)
    for i in range(n - 1, 0, -1):
        j = rng.randrange(i)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def test_reference_solutions_match_their_answers(rows: list[dict]) -> None:
    pairs = [(r["answer"], r["solution"]) for r in rows]  # gold = answer, prediction = full solution
    pairs += [(r["solution"], r["answer"]) for r in rows]  # gold = full solution, prediction = answer
    verdicts = math_equal_batch(pairs, workers=2)
    forward, backward = sum(verdicts[:500]), sum(verdicts[500:])
    misses = [rows[i]["unique_id"] for i in range(500) if not (verdicts[i] and verdicts[500 + i])]
    print(f"\nMATH-500 gold check: answer vs solution {forward}/500, solution vs answer {backward}/500; misses: {misses}")
    assert forward >= 495 and backward >= 495


def test_shuffled_pairs_are_rejected(rows: list[dict]) -> None:
    """A fixed-seed derangement pairs each answer with another problem's solution. Pairs whose two
    reference answers are literally the same string (e.g. both "3") are genuinely correct; they are
    reported but not counted against the grader."""
    perm = derangement(len(rows), seed=0)
    assert all(p != i for i, p in enumerate(perm))
    verdicts = math_equal_batch([(r["answer"], rows[perm[i]]["solution"]) for i, r in enumerate(rows)], workers=2)
    same = {i for i, r in enumerate(rows) if normalize_answer(r["answer"]) == normalize_answer(rows[perm[i]]["answer"])}
    wrongly = [(rows[i]["answer"], rows[perm[i]]["answer"]) for i, v in enumerate(verdicts) if v and i not in same]
    rate = len(wrongly) / (len(rows) - len(same))
    print(
        f"\nMATH-500 shuffled pairs judged correct: {sum(verdicts)}/500 in all; {len(same)} pairs share the same"
        f" answer string; among the other {len(rows) - len(same)}: {len(wrongly)} ({rate:.1%}) {wrongly}"
    )
    assert rate <= 0.01
    assert all(verdicts[i] for i in same)  # identical answers must of course be accepted
