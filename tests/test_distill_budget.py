"""Token budgets: deterministic, nested, the shortest prefix of a fixed order reaching the budget."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longcot.distill.budget import parse_budget, rank_key, select_budget
from longcot.stages import distill as stage
from tests.stage_helpers import distill_run
from tests.test_distill_sampling import distill_cfg


def test_parse_budget() -> None:
    assert parse_budget("250M") == 250_000_000
    assert parse_budget("0.25B") == 250_000_000
    assert parse_budget("3.5B") == 3_500_000_000
    assert parse_budget("20K") == parse_budget("2e4") == parse_budget(20000) == 20000
    for bad in ("lots", "5X", "", "-3M", "0.0001"):
        with pytest.raises(ValueError, match="distill.token_budgets"):
            parse_budget(bad)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 500), min_size=1, max_size=60), st.integers(1, 20000), st.integers(1, 20000), st.integers(0, 3))
def test_budgets_are_nested_shortest_prefixes(tokens: list[int], b1: int, b2: int, seed: int) -> None:
    keys = [rank_key(seed, f"p{i // 4}", i % 4) for i in range(len(tokens))]
    small, large = select_budget(keys, tokens, min(b1, b2)), select_budget(keys, tokens, max(b1, b2))
    assert small.selected <= large.selected
    for pick in (small, large):
        assert pick.selected_tokens == sum(tokens[i] for i in pick.selected)
        assert pick.reached == (pick.selected_tokens >= pick.tokens)
        if pick.reached:  # shortest: without its last-ranked row the budget is not reached
            last = max(pick.selected, key=lambda i: keys[i])
            assert pick.selected_tokens - tokens[last] < pick.tokens
        else:
            assert pick.selected == frozenset(range(len(tokens)))
        # a prefix of the fixed order: every chosen row ranks before every unchosen one
        unchosen = set(range(len(tokens))) - pick.selected
        if pick.selected and unchosen:
            assert max(keys[i] for i in pick.selected) < min(keys[i] for i in unchosen)


def test_stage_budget_datasets(tmp_path: Path) -> None:
    out = distill_run(distill_cfg(tmp_path, "data.toy_size=40", "distill.n=8", "distill.derive_n=[4]",
                                "distill.token_budgets=[5K,12K,30K,10M]", "distill.budget_n=8"))
    base = Path(out["dir"])
    full = pq.read_table(base / "n8/data.parquet").to_pylist()
    ids = lambda rows: {(r["prompt_id"], r["candidate_index"]) for r in rows}  # noqa: E731
    subsets = []
    for label in ("budget-5000", "budget-12000", "budget-30000", "budget-10000000"):
        rows = pq.read_table(base / "n8" / label / "data.parquet").to_pylist()
        man = out["budgets"][f"n8/{label}"]
        assert man["responses"] == len(rows) and man["sft_tokens"] == sum(r["sft_tokens"] for r in rows)
        assert [r for r in full if (r["prompt_id"], r["candidate_index"]) in ids(rows)] == rows  # dataset order
        subsets.append(ids(rows))
    assert subsets[0] < subsets[1] < subsets[2] < ids(full)
    assert subsets[3] == ids(full) and out["budgets"]["n8/budget-10000000"]["reached"] is False
    assert out["budgets"]["n8/budget-12000"]["sft_tokens"] >= 12000
    # deterministic: a fresh run (other root) selects the same rows
    again = distill_run(distill_cfg(tmp_path / "again", "data.toy_size=40", "distill.n=8", "distill.derive_n=[4]",
                                  "distill.token_budgets=[12K]", "distill.budget_n=8"))
    assert (Path(again["dir"]) / "n8/budget-12000/data.parquet").read_bytes() == (base / "n8/budget-12000/data.parquet").read_bytes()
    with pytest.raises(ValueError, match=r"distill.budget_n=5 is not one of the datasets' N; valid: 4, 8"):
        distill_run(distill_cfg(tmp_path, "data.toy_size=40", "distill.n=8", "distill.derive_n=[4]",
                              "distill.token_budgets=[5K]", "distill.budget_n=5"))
