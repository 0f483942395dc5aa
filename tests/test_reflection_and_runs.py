"""Reflection-keyword counting, eval summaries (hand-computed) and atomic run outputs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from longcot import runs
from longcot.analysis.reflection import keyword_counts, keyword_frequency
from longcot.data.records import Problem
from longcot.stages.eval import summarise


def test_keyword_counts_whole_words_case_insensitive() -> None:
    text = "Wait, let me recheck. wait... Alternatively we retry. However, awaited rechecked WAIT"
    assert keyword_counts(text) == {"wait": 3, "recheck": 1, "alternatively": 1, "retry": 1, "however": 1}


def test_keyword_frequency() -> None:
    freq = keyword_frequency(["wait wait", "no", "Wait"], ["wait", "retry"])
    assert freq["wait"] == {"per_response": 1.0, "response_rate": pytest.approx(2 / 3)}
    assert freq["retry"] == {"per_response": 0.0, "response_rate": 0.0}


def test_summary_statistics_hand_computed() -> None:
    problems = [Problem("a", "", "1", "math"), Problem("b", "", "2", "math")]
    # sample set 0: a right, b right -> 1.0 ; set 1: a right, b wrong -> 0.5
    verdicts = {("a", 0): True, ("b", 0): True, ("a", 1): True, ("b", 1): False}
    rows = [
        {"problem_id": pid, "sample_index": k, "correct": ok, "tokens": 10 * (k + 1), "finish_reason": "length" if k else "stop",
         "extracted_answer": None if ok is False else "1", "response": "Wait" if k else "ok"}
        for (pid, k), ok in verdicts.items()
    ]
    s = summarise(problems, rows, n=2, keywords=["wait"])
    assert s["accuracy"] == 0.75
    assert s["accuracy_per_sample_set"] == [1.0, 0.5]
    # std([1, .5], ddof=1) / sqrt(2) = 0.353553 / 1.414214 = 0.25
    assert s["accuracy_se"] == pytest.approx(0.25)
    # per-problem means [1, .5] -> same numbers here
    assert s["accuracy_se_problems"] == pytest.approx(0.25)
    assert s["mean_tokens"] == 15 and s["truncation_rate"] == 0.5
    # correct: a0 (10), b0 (10), a1 (20) -> 40/3; wrong: b1 (20)
    assert s["mean_tokens_correct"] == pytest.approx(40 / 3) and s["mean_tokens_wrong"] == 20
    # within a problem: only b is mixed (b0 right, 10 tokens; b1 wrong, 20): right - wrong = -10
    assert s["length_gap"] == {"mixed": 1.0, "right_minus_wrong": -10.0, "share_right_longer": 0.0}
    assert s["reflection"]["wait"]["response_rate"] == 0.5


def test_single_sample_has_no_standard_error() -> None:
    problems = [Problem("a", "", "1", "math")]
    rows = [{"problem_id": "a", "sample_index": 0, "correct": True, "tokens": 1, "finish_reason": "stop", "extracted_answer": "1", "response": ""}]
    s = summarise(problems, rows, n=1, keywords=[])
    assert s["accuracy_se"] is None  # JSON null, not NaN
    assert s["mean_tokens_correct"] == 1 and s["mean_tokens_wrong"] is None  # no wrong response: null
    assert s["length_gap"] is None  # no problem with a right and a wrong sample: null


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError):
        with runs.atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    runs.write_jsonl(target, [{"b": 1, "a": 2}])
    assert target.read_text() == '{"a": 2, "b": 1}\n'
    assert target.stat().st_mode & 0o777 == runs.FILE_MODE  # readable like any file, not mkstemp's 0600
    assert not runs.is_done(tmp_path)
    runs.mark_done(tmp_path)
    assert runs.is_done(tmp_path)


def test_config_hash_is_order_independent_and_sensitive() -> None:
    assert runs.config_hash({"a": 1, "b": [1, 2]}) == runs.config_hash({"b": [1, 2], "a": 1})
    assert runs.config_hash({"a": 1}) != runs.config_hash({"a": 2})
