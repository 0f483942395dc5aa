"""The stage protocol: plan has no side effects and every experiment plans; identities follow
upstream; finished runs are skipped and force redoes them; the SFT stage end to end on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from longcot.config.loading import CONF_DIR
from longcot.config.schema import register_configs
from longcot.config.validate import validate
from longcot.stages import plan_all
from longcot.stages import sft as sft_stage
from tests.stage_helpers import distill_run, run_stage

register_configs()
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
SMALL_SFT = ["sft.global_batch_sequences=8", "sft.max_length=512", "sft.max_tokens_per_micro_batch=1024",
             "sft.epochs=1", "sft.max_steps=2", "sft.eval_benchmarks=[]", "sft.save_every_steps=0"]


def _cfg(root: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"output_root={root}", *overrides])


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_validates_and_plans_without_side_effects(tmp_path: Path, name: str) -> None:
    cfg = _cfg(tmp_path, f"+experiment={name}")
    validate(cfg)
    plans = plan_all(cfg)
    assert plans and all(p.run_dir.is_relative_to(tmp_path) for p in plans)
    assert len({p.run_id for p in plans}) == len(plans)
    assert _files(tmp_path) == []  # nothing written, not even a run directory


def test_sft_identity_follows_its_upstream_distill_run(tmp_path: Path) -> None:
    base = ("+experiment=demo_cpu_sft",)
    a = sft_stage.plan(_cfg(tmp_path, *base))
    assert [u.stage for u in a.upstream] == ["distill"]
    assert a.identity["data"] == {"distill": a.upstream[0].run_id, "subset": "n4"}
    other_data = sft_stage.plan(_cfg(tmp_path, *base, "distill.temperature=0.8"))  # another distillation
    assert other_data.upstream[0].run_id != a.upstream[0].run_id and other_data.run_id != a.run_id
    assert sft_stage.plan(_cfg(tmp_path, *base, "sft.subset=n2")).run_id != a.run_id
    assert sft_stage.plan(_cfg(tmp_path, *base, "sft.learning_rate=1e-4")).run_id != a.run_id
    # bookkeeping is not identity
    assert sft_stage.plan(_cfg(tmp_path, *base, "sft.save_every_steps=7", "sft.keep_last=5")).run_id == a.run_id
    with pytest.raises(ValueError, match=r"sft.subset='n3': not a dataset of distill run .*valid: n2, n4, n4/budget-20000"):
        sft_stage.plan(_cfg(tmp_path, *base, "sft.subset=n3"))
    assert _files(tmp_path) == []


def test_sft_needs_its_distill_data_first(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "+experiment=demo_cpu_sft", *SMALL_SFT)
    with pytest.raises(FileNotFoundError, match="run the distill stage first: longcot stage=distill "
                                                "model=synthetic-long generation=synthetic"):
        run_stage(cfg)
    assert not (tmp_path / "sft").exists()  # a failed run leaves no empty run directory


@pytest.mark.slow
def test_sft_on_distilled_data_then_skip_then_force(tmp_path: Path, one_torch_thread) -> None:
    from transformers import AutoModelForCausalLM

    common = ("+experiment=demo_cpu_sft", "data.toy_size=24")
    manifest = distill_run(_cfg(tmp_path, *common, "stage=distill", "model=synthetic-long", "generation=synthetic",
                                "distill.print_table=false"))
    [result] = run_stage(_cfg(tmp_path, *common, *SMALL_SFT))
    s = result.summary
    assert s["steps"] == 2 and s["examples"] == manifest["datasets"]["4"]["responses_kept"]
    model_dir = result.files["model"]
    assert (model_dir / "config.json").is_file() and AutoModelForCausalLM.from_pretrained(model_dir) is not None
    assert (result.run_dir / "DONE").is_file() and (result.run_dir / "loss.png").is_file()
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    stamp = (model_dir / "config.json").stat().st_mtime_ns
    [again] = run_stage(_cfg(tmp_path, *common, *SMALL_SFT))  # finished: skipped
    assert again.run_dir == result.run_dir and (model_dir / "config.json").stat().st_mtime_ns == stamp
    [forced] = run_stage(_cfg(tmp_path, *common, *SMALL_SFT, "force=true"))
    assert (model_dir / "config.json").stat().st_mtime_ns != stamp and forced.summary["steps"] == 2


@pytest.mark.slow
def test_sft_on_a_users_own_dataset_with_smoke_caps_named(tmp_path: Path, one_torch_thread) -> None:
    data = tmp_path / "mine.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"Compute {i} + 1."},
                          {"role": "assistant", "content": f"{i} + 1 = {i + 1}. \\boxed{{{i + 1}}}"}]} for i in range(10)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    overrides = ("stage=sft", "sft.source=dataset", f"sft.dataset={data}", *SMALL_SFT[:-3], "sft.max_steps=null",
                 "sft.epochs=5", "scale=smoke")
    p = sft_stage.plan(_cfg(tmp_path, *overrides))
    assert any("sft.max_steps all -> 4" in n for n in p.notes)  # smoke caps the steps, and says so
    [result] = run_stage(_cfg(tmp_path, *overrides))
    assert result.summary["steps"] == 4 and result.summary["scale_caps"] == {"sft.max_steps": {"set": None, "used": 4}}
    data.write_text(data.read_text().replace("Compute 3", "Compute 4"))
    assert sft_stage.plan(_cfg(tmp_path, *overrides)).run_id != p.run_id  # edited data: another run


SMALL_RL = ["stage=rl", "rl.from_sft=true", "algorithm=grpo", "reward=classic", "algorithm.rollout_batch_size=2",
            "algorithm.samples_per_prompt=2", "algorithm.train_batch_size=4", "rl.max_steps=1",
            "algorithm.max_new_tokens=24", "rl.save_every=1"]


def test_rl_identity_follows_the_sft_run_it_starts_from(tmp_path: Path) -> None:
    from longcot.stages import rl as rl_stage

    base = ("+experiment=demo_cpu_sft", *SMALL_SFT, *SMALL_RL)
    p = rl_stage.plan(_cfg(tmp_path, *base))
    [sft_plan] = [u for u in p.upstream if u.stage == "sft"]
    assert p.identity["model"] == {"checkpoint_of": {"stage": "sft", "run_id": sft_plan.run_id}}
    assert rl_stage.plan(_cfg(tmp_path, *base, "sft.learning_rate=1e-4")).run_id != p.run_id  # another SFT
    assert rl_stage.plan(_cfg(tmp_path, *base, "reward=cosine")).run_id != p.run_id
    assert rl_stage.plan(_cfg(tmp_path, *base, "rl.save_every=5")).run_id == p.run_id  # bookkeeping
    # a logged metric's N (the metric's name holds it): the same trained run
    assert rl_stage.plan(_cfg(tmp_path, *base, "rl.repetition_metric_ngram=10")).run_id == p.run_id
    assert rl_stage.plan(_cfg(tmp_path, *base, "rl.from_sft=false")).identity["model"]["name"] == "tiny"
    with pytest.raises(ValueError, match=r"algorithm.lam=0.9: reward 'cosine_reppen' has channels with different "
                                         r"gammas \[1.0, 0.99\]; PPO with one value head and several gammas needs algorithm.lam=1"):
        rl_stage.plan(_cfg(tmp_path, *base, "reward=cosine_reppen", "algorithm=ppo", "algorithm.lam=0.9"))
    assert _files(tmp_path) == []


@pytest.mark.slow
def test_chain_distill_sft_rl_eval_on_cpu(tmp_path: Path, one_torch_thread) -> None:
    from longcot.stages import eval as eval_stage
    from longcot.stages import rl as rl_stage

    common = ("+experiment=demo_cpu_sft", "data.toy_size=12", *SMALL_SFT)
    distill_run(_cfg(tmp_path, *common, "stage=distill", "model=synthetic-long", "generation=synthetic",
                     "distill.print_table=false"))
    [sft_result] = run_stage(_cfg(tmp_path, *common))
    [rl_result] = run_stage(_cfg(tmp_path, *common, *SMALL_RL))
    assert rl_result.summary["steps"] == 1 and (rl_result.files["model"] / "config.json").is_file()
    rl_plan = rl_stage.plan(_cfg(tmp_path, *common, *SMALL_RL))
    assert rl_plan.done and [u.run_dir for u in rl_plan.upstream if u.stage == "sft"] == [sft_result.run_dir]
    ecfg = _cfg(tmp_path, *common, "stage=eval", "benchmark.limit=2", "benchmark.max_new_tokens=8")
    e = eval_stage.plan(ecfg, (rl_plan,))
    assert e.identity["model"] == {"checkpoint_of": {"stage": "rl", "run_id": rl_plan.run_id}}
    summary = eval_stage.run(e).summary
    assert summary["num_problems"] == 2
