"""Rejection sampling: smaller N are prefixes of one sampling; selection; teacher settings; saving."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_dir
from hypothesis import given, settings
from hypothesis import strategies as st

from longcot.config.loading import CONF_DIR
from longcot.config.schema import register_configs
from longcot.distill.sampling import Selection, select_prefix, teacher_plan
from longcot.stages import distill as stage
from tests.stage_helpers import distill_run

register_configs()


def distill_cfg(root: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=["+experiment=demo_cpu_distill", f"output_root={root}",
                                            "distill.print_table=false", "distill.token_budgets=[]", *overrides])


def _rows(manifest: dict, n: int) -> list[dict]:
    return pq.read_table(Path(manifest["dir"]) / manifest["datasets"][str(n)]["path"]).to_pylist()


def test_smaller_n_is_a_prefix_of_one_sampling(tmp_path: Path) -> None:
    common = ["data.toy_size=40", "distill.num_shards=2", "generation.error_rate=0.4", "distill.dedupe=false"]
    big = distill_run(distill_cfg(tmp_path, *common, "distill.n=8", "distill.derive_n=[4]"))
    small = distill_run(distill_cfg(tmp_path, *common, "distill.n=4", "distill.derive_n=[]"))
    assert big["dir"] != small["dir"]  # two independent samplings
    derived, direct = _rows(big, 4), _rows(small, 4)
    assert derived == direct and len(direct) > 40
    assert {r["candidate_index"] for r in derived} == {0, 1, 2, 3}
    # the derived dataset is exactly the N=8 rows with candidate index < 4
    assert derived == [r for r in _rows(big, 8) if r["candidate_index"] < 4]
    assert big["sampling"]["candidates_sampled"] == 40 * 8
    assert big["sampling"]["candidates_naive"] == 40 * (4 + 8)
    # only one sampling happened in the N=8 run: its shards hold 8 candidates per prompt, no more
    shard_rows = sum(1 for f in (Path(big["dir"]).parent / "shards").glob("*.jsonl") for _ in f.open())
    assert shard_rows == 40 * 8


def _cands(spec: list[tuple[bool, str, str]]) -> list[dict]:
    return [{"candidate_index": i, "correct": ok, "response": text, "finish_reason": reason}
            for i, (ok, text, reason) in enumerate(spec)]


def test_select_prefix_keeps_correct_first_unique_capped() -> None:
    cands = _cands([(False, "a", "stop"), (True, "b", "stop"), (True, "b", "stop"), (True, "c", "length"),
                    (True, "d", "stop"), (True, "e", "stop"), (True, "f", "stop")])
    kept, stats = select_prefix(reversed(cands), 7, Selection(dedupe=True, max_per_prompt=2))
    assert [r["response"] for r in kept] == ["b", "d"]
    assert (stats.candidates, stats.correct, stats.duplicates_removed, stats.truncated_dropped, stats.capped) == (7, 6, 1, 1, 2)
    kept, _ = select_prefix(cands, 4, Selection(dedupe=False, keep_truncated=True))
    assert [r["response"] for r in kept] == ["b", "b", "c"]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.sampled_from("abcd"), st.sampled_from(["stop", "length"])), min_size=1, max_size=20),
    st.booleans(), st.one_of(st.none(), st.integers(1, 4)), st.booleans(), st.integers(1, 20), st.integers(1, 20),
)
def test_selection_is_nested_in_n(spec, dedupe, cap, keep_truncated, n1, n2) -> None:
    sel = Selection(dedupe=dedupe, max_per_prompt=cap, keep_truncated=keep_truncated)
    cands = _cands(spec)
    small, _ = select_prefix(cands, min(n1, n2), sel)
    large, _ = select_prefix(cands, max(n1, n2), sel)
    assert {r["candidate_index"] for r in small} <= {r["candidate_index"] for r in large}


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_teacher_settings_precedence(tmp_path: Path) -> None:
    """Per key: generation.* > distill.* (when set) > distill.teachers[model.name] > built-in defaults."""
    qwq = _compose("stage=distill", "scale=full", "model=qwq-32b-preview")
    p = teacher_plan(qwq).params  # the teacher's entry
    assert (p.temperature, p.top_p, p.max_new_tokens) == (1.0, 0.95, 8192)
    # an explicit distill.* value wins over the teacher's entry (was silently ignored)
    cli = _compose("stage=distill", "scale=full", "model=qwq-32b-preview", "distill.temperature=0.6",
                   "distill.max_new_tokens=4096")
    p = teacher_plan(cli).params
    assert (p.temperature, p.top_p, p.max_new_tokens) == (0.6, 0.95, 4096)
    # ... and generation.* wins over distill.*
    gen = _compose("stage=distill", "scale=full", "model=qwq-32b-preview", "distill.temperature=0.6",
                   "generation.temperature=0.2")
    assert teacher_plan(gen).params.temperature == 0.2
    smoke = _compose("stage=distill", "scale=smoke", "model=qwq-32b-preview")
    p = stage.plan(smoke).detail.teacher.params  # smoke scale caps new tokens, never N
    assert (p.temperature, p.max_new_tokens, p.n) == (1.0, 256, teacher_plan(qwq).params.n)
    short = _compose("stage=distill", "scale=full", "model=qwen2.5-math-72b-instruct", "generation.top_p=0.5")
    p = teacher_plan(short).params
    assert (p.temperature, p.top_p, p.max_new_tokens) == (0.7, 0.5, 4096)  # generation.* wins
    short = _compose("stage=distill", "scale=full", "model=qwen2.5-math-72b-instruct", "distill.top_p=0.8")
    assert (teacher_plan(short).params.temperature, teacher_plan(short).params.top_p) == (0.7, 0.8)
    # no teacher entry, nothing set: the built-in defaults
    p = teacher_plan(_compose("stage=distill", "scale=full", "model=tiny")).params
    assert (p.temperature, p.top_p, p.max_new_tokens, p.n) == (1.0, 0.95, 8192, 32)
    other = _compose("stage=distill", "scale=full", "model=tiny", "distill.temperature=0.3")
    p = teacher_plan(other).params
    assert (p.temperature, p.max_new_tokens) == (0.3, 8192)
    other.distill.derive_n = [64]
    with pytest.raises(ValueError, match=r"distill.derive_n=\[64\] must lie in 1..distill.n=32"):
        teacher_plan(other)


def test_distill_overrides_apply_to_every_teacher_of_fig1() -> None:
    for model in ("qwq-32b-preview", "qwen2.5-math-72b-instruct"):
        plan = teacher_plan(_compose("+experiment=fig1_long_vs_short_n", f"model={model}", "distill.temperature=0.6",
                                     "distill.max_new_tokens=4096", "distill.derive_n=[64]"))
        assert (plan.params.temperature, plan.params.max_new_tokens, plan.ns) == (0.6, 4096, (64, 256))


def test_fig1_counts_sft_tokens_with_the_paper_student() -> None:
    from longcot.distill.tokens import resolve_model

    for model in ("qwq-32b-preview", "qwen2.5-math-72b-instruct"):
        cfg = _compose("+experiment=fig1_long_vs_short_n", f"model={model}")
        assert cfg.distill.student == "llama3.1-8b"
        assert resolve_model(cfg.distill.student).path == "meta-llama/Llama-3.1-8B"
        assert list(stage.plan(cfg).notes) == []
    # a full-scale run of a real teacher counting with the tiny tokenizer is warned about
    cfg = _compose("+experiment=fig1_long_vs_short_n", "distill.student=tiny")
    [warning] = stage.plan(cfg).notes
    assert "distill.student=tiny" in warning and "toy tokenizer" in warning and "llama3.1-8b" in warning


def test_fig1_grid_costs_one_sampling_per_teacher() -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        long_ = teacher_plan(compose("config", overrides=["+experiment=fig1_long_vs_short_n"]))
        short = teacher_plan(compose("config", overrides=["+experiment=fig1_long_vs_short_n", "model=qwen2.5-math-72b-instruct"]))
    assert long_.ns == (32, 64, 128, 192, 256) and long_.params.temperature == 1.0 and long_.params.max_new_tokens == 8192
    assert short.ns == (32, 64, 128, 256) and short.params.temperature == 0.7 and short.params.max_new_tokens == 4096
    assert (long_.params.n, long_.candidates_naive) == (256, 672)
    assert (short.params.n, short.candidates_naive) == (256, 480)
    assert long_.saving == pytest.approx(1 - 256 / 672)
