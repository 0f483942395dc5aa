"""SFT data mixes by weight (Table 2's "50% MATH + 50% WebIT"): shares by sample and by token computed
by hand, the plan (one distill upstream per component, identities), and a mixed SFT run on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from longcot.config.loading import CONF_DIR
from longcot.config.schema import register_configs
from longcot.sft.mix import quotas, select_mix
from longcot.stages import sft as sft_stage
from tests.stage_helpers import distill_run, run_stage

register_configs()


def test_quotas_by_hand():
    # 50/50 of 10 and 4 samples: the largest mix without repeats is 8 (4 + 4)
    assert quotas([10, 4], [0.5, 0.5]) == [4.0, 4.0]
    # 1:3 of 10 and 30: min(10 * 4 / 1, 30 * 4 / 3) = 40 -> 10 + 30
    assert quotas([10, 30], [1, 3]) == [10.0, 30.0]
    assert quotas([10, 30], [1, 3], total=20) == [5.0, 15.0]
    with pytest.raises(ValueError, match="sft.mix_size=50: component 0 has 10 for a share of 12.5; the largest mix .* is 40"):
        quotas([10, 30], [1, 3], total=50)
    with pytest.raises(ValueError, match="weights must be > 0"):
        quotas([1, 1], [1, 0])


def test_select_by_sample_and_by_token():
    a = [f"a{i}" for i in range(10)]
    b = [f"b{i}" for i in range(4)]
    rows, stats = select_mix([a, b], [1, 1], unit="sample", seed=3)
    assert len(rows) == 8 and sum(r.startswith("a") for r in rows) == 4 and set(b) <= set(rows)
    assert [s["share"] for s in stats] == [0.5, 0.5]
    assert select_mix([a, b], [1, 1], unit="sample", seed=3)[0] == rows  # seeded
    assert select_mix([a, b], [1, 1], unit="sample", seed=4)[0] != rows
    # by token: a's rows have 10 tokens each (100), b's 50 each (200): 50/50 -> 100 tokens each
    rows_t, stats_t = select_mix([a, b], [1, 1], unit="token", tokens=[[10] * 10, [50] * 4])
    assert sum(r.startswith("a") for r in rows_t) == 10 and sum(r.startswith("b") for r in rows_t) == 2
    assert [s["tokens"] for s in stats_t] == [100.0, 100.0]
    # shares met from above by whole samples: 70 tokens of 3-token rows -> 24 rows (72 tokens)
    _, st = select_mix([list(range(40)), list(range(40))], [0.5, 0.5], unit="token", tokens=[[3] * 40, [7] * 40], size=140)
    assert st[0]["rows"] == 24 and st[1]["rows"] == 10
    with pytest.raises(ValueError, match="needs the rows' SFT token counts"):
        select_mix([a, b], [1, 1], unit="token")


def _cfg(root: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"output_root={root}", *overrides])


COMMON = ("+experiment=demo_cpu_sft", "data.toy_size=24")
MIX = ("sft.source=mix",
       "sft.mix=[{teacher: synthetic-long, teacher_generation: synthetic, subset: n4, weight: 1},"
       " {teacher: synthetic-short, teacher_generation: synthetic_short, subset: n2, weight: 1,"
       " overrides: ['distill.derive_n=[]', 'distill.n=2']}]")


def test_mix_plans_one_distill_run_per_component(tmp_path: Path) -> None:
    p = sft_stage.plan(_cfg(tmp_path, *COMMON, *MIX))
    long_, short = p.upstream
    # each component's distill run is the one a plain SFT on it would read (same identity)
    assert long_.run_id == sft_stage.plan(_cfg(tmp_path, *COMMON)).upstream[0].run_id
    plain_short = sft_stage.plan(_cfg(tmp_path, *COMMON, "sft.teacher=synthetic-short", "sft.teacher_generation=synthetic_short",
                                      "sft.subset=n2", "distill.derive_n=[]", "distill.n=2"))
    assert short.run_id == plain_short.upstream[0].run_id and short.cfg.distill.n == 2
    assert p.identity["data"]["mix"] == [{"distill": long_.run_id, "subset": "n4", "weight": 1.0},
                                         {"distill": short.run_id, "subset": "n2", "weight": 1.0}]
    assert sft_stage.plan(_cfg(tmp_path, *COMMON, *MIX, "sft.mix_unit=token")).run_id != p.run_id
    assert sft_stage.plan(_cfg(tmp_path, *COMMON, *MIX[:1], MIX[1].replace("weight: 1}", "weight: 3}", 1))).run_id != p.run_id
    with pytest.raises(ValueError, match=r"sft.mix\[1\].overrides: 'distill.nn=2'"):
        sft_stage.plan(_cfg(tmp_path, *COMMON, *MIX[:1], MIX[1].replace("'distill.n=2'", "'distill.nn=2'")))
    with pytest.raises(ValueError, match="sft.mix: sft.source=mix needs at least 2 components"):
        sft_stage.plan(_cfg(tmp_path, *COMMON, "sft.source=mix"))
    assert not (tmp_path / "sft").exists()


@pytest.mark.slow
def test_sft_on_a_mix_trains_on_equal_shares(tmp_path: Path, one_torch_thread, caplog) -> None:
    small = ["sft.global_batch_sequences=8", "sft.max_length=1024", "sft.max_tokens_per_micro_batch=1024", "sft.epochs=1",
             "sft.max_steps=1", "sft.eval_benchmarks=[]", "sft.save_every_steps=0", "sft.overlong=truncate"]
    long_m = distill_run(_cfg(tmp_path, *COMMON, "stage=distill", "model=synthetic-long", "generation=synthetic",
                              "distill.print_table=false"))
    short_m = distill_run(_cfg(tmp_path, *COMMON, "stage=distill", "model=synthetic-short", "generation=synthetic_short",
                               "distill.print_table=false", "distill.derive_n=[]", "distill.n=2"))
    n_long, n_short = long_m["datasets"]["4"]["responses_kept"], short_m["datasets"]["2"]["responses_kept"]
    with caplog.at_level("INFO", logger="longcot.stages.sft"):
        [result] = run_stage(_cfg(tmp_path, *COMMON, *MIX, *small))
    assert result.summary["examples"] == 2 * min(n_long, n_short)
    assert f"synthetic-long/n4: {min(n_long, n_short)} samples" in caplog.text


def test_drop_last_partial_batch_as_openrlhf(tmp_path: Path) -> None:
    """sft.drop_last: OpenRLHF's num_update_steps_per_epoch = len // train_batch_size (10 // 4 = 2 steps
    an epoch, 2 samples unused) instead of a smaller third step; unset, identities are unchanged."""
    from longcot.sft.recipe import step_plan

    kept = step_plan(10, 4, 2, seed=0)
    dropped = step_plan(10, 4, 2, seed=0, drop_last=True)
    assert [len(ix) for _, ix in kept] == [4, 4, 2, 4, 4, 2]
    assert [(e, len(ix)) for e, ix in dropped] == [(0, 4), (0, 4), (1, 4), (1, 4)]
    assert [ix for _, ix in dropped] == [ix for _, ix in kept if len(ix) == 4]  # the same order, the remainder left out
    with pytest.raises(ValueError, match="3 examples < sft.global_batch_sequences=4"):
        step_plan(3, 4, 1, seed=0, drop_last=True)
    plain = sft_stage.plan(_cfg(tmp_path, *COMMON))
    assert "drop_last" not in plain.identity["sft"]
    assert sft_stage.plan(_cfg(tmp_path, *COMMON, "sft.drop_last=true")).run_id != plain.run_id
