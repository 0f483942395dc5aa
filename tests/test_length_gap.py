"""§4.1's premise within a problem (longcot/analysis/length.py), against hand-computed values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from longcot.analysis.length import length_gap, length_gap_of_rows, main


def test_length_gap_averages_per_problem_differences_over_mixed_problems_only() -> None:
    groups = [
        [(True, 10), (True, 20), (False, 40)],  # right mean 15, wrong 40: -25
        [(True, 50), (False, 30), (False, 10)],  # right 50, wrong mean 20: +30
        [(True, 5), (True, 7)],  # all right: no group advantage, left out
        [(False, 99)],  # all wrong: left out
        [(True, 12), (False, 12)],  # a tie: 0, not "right longer"
    ]
    gap = length_gap(groups)
    assert gap == {"mixed": 3.0, "right_minus_wrong": pytest.approx((-25 + 30 + 0) / 3), "share_right_longer": pytest.approx(1 / 3)}


def test_length_gap_is_none_without_a_mixed_problem() -> None:
    assert length_gap([[(True, 3)], [(False, 4), (False, 9)]]) is None
    assert length_gap([]) is None


def test_pooled_and_within_problem_lengths_can_disagree() -> None:
    # hard problem h: every attempt long and wrong except one longer right one; easy problem e: short and right,
    # with one shorter wrong. Pooled, wrong answers are longer; within each problem, the right one is longer.
    rows = [{"problem_id": "h", "correct": False, "tokens": 100}, {"problem_id": "h", "correct": True, "tokens": 120},
            {"problem_id": "e", "correct": True, "tokens": 20}, {"problem_id": "e", "correct": False, "tokens": 10}]
    pooled_right = (120 + 20) / 2
    pooled_wrong = (100 + 10) / 2
    assert pooled_right > pooled_wrong  # 70 > 55 here; now make the hard problem's wrong attempts dominate
    rows += [{"problem_id": "h", "correct": False, "tokens": 100}] * 6
    pooled_wrong = (100 * 7 + 10) / 8
    assert pooled_wrong > pooled_right
    gap = length_gap_of_rows(rows)
    assert gap is not None and gap["right_minus_wrong"] == pytest.approx(((120 - 100) + (20 - 10)) / 2)
    assert gap["share_right_longer"] == 1.0


def test_cli_reads_an_eval_runs_samples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "eval-run"
    run.mkdir()
    rows = [{"problem_id": "a", "correct": True, "tokens": 30}, {"problem_id": "a", "correct": False, "tokens": 10},
            {"problem_id": "b", "correct": True, "tokens": 5}]
    (run / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main([str(run)]) == 0
    assert "1 of 2 problems mixed; right - wrong tokens within a problem +20.0; right longer in 100% of them" in capsys.readouterr().out
    assert main([str(tmp_path / "missing")]) == 1
    assert "no samples.jsonl" in capsys.readouterr().err
