"""The distill stage end to end: the tiny HF model as teacher, re-runs, force, config errors."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_dir

from longcot.config.loading import CONF_DIR
from longcot.distill.shards import Shard
from longcot.stages import distill as stage
from tests.stage_helpers import distill_run
from tests.test_distill_sampling import distill_cfg


def test_tiny_hf_teacher_runs_the_same_stage(tmp_path: Path) -> None:
    overrides = ["stage=distill", "model=tiny", "generation=hf", "generation.device=cpu", "data=toy", "data.toy_size=3",
                 "distill.n=2", "distill.max_new_tokens=8", f"output_root={tmp_path}", "distill.print_table=false"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    out = distill_run(cfg)
    run_dir = Path(out["dir"]).parent
    assert run_dir.parent.name == "tiny" and run_dir.name.startswith("toy-")
    shard_rows = Shard(0, 1).rows_path(run_dir).read_text().splitlines()
    assert len(shard_rows) == 6 and all('"finish_reason": "length"' in r or '"finish_reason": "stop"' in r for r in shard_rows)
    table = pq.read_table(Path(out["dir"]) / "n2/data.parquet")  # written even if the random model is never right
    assert table.num_rows == out["datasets"]["2"]["responses_kept"]
    assert out["datasets"]["2"]["candidates"] == 6


def test_rerun_skips_sampling_and_adds_derived_datasets(tmp_path: Path) -> None:
    first = distill_run(distill_cfg(tmp_path, "data.toy_size=10", "distill.n=8", "distill.derive_n=[]"))
    run_dir = Path(first["dir"]).parent
    marker = Shard(0, 4).done_path(run_dir)
    before = marker.stat().st_mtime_ns
    second = distill_run(distill_cfg(tmp_path, "data.toy_size=10", "distill.n=8", "distill.derive_n=[2,4]"))
    assert Path(second["dir"]).parent == run_dir and marker.stat().st_mtime_ns == before  # not resampled
    assert sorted(second["datasets"], key=int) == ["2", "4", "8"]
    assert second["datasets"]["8"] == first["datasets"]["8"]
    # another selection setting: a new selection directory over the same samples
    capped = distill_run(distill_cfg(tmp_path, "data.toy_size=10", "distill.n=8", "distill.max_per_prompt=1"))
    assert Path(capped["dir"]).parent == run_dir and capped["dir"] != first["dir"]
    assert capped["datasets"]["8"]["responses_kept"] == capped["datasets"]["8"]["prompts_kept"] <= 10
    forced = distill_run(distill_cfg(tmp_path, "data.toy_size=10", "distill.n=8", "force=true"))
    assert marker.stat().st_mtime_ns != before and forced["datasets"]["8"] == first["datasets"]["8"]


@pytest.mark.parametrize("override,message", [
    ("distill.mode=guess", r"distill.mode='guess': unknown value; valid: sample, constructed, silver"),
    ("distill.format=csv", r"distill.format='csv': unknown value; valid: parquet, jsonl"),
    ("distill.derive_n=[0]", r"distill.derive_n=\[0\] must lie in 1..distill.n=16"),
    ("distill.constructed.action_model=gpt-9", r"distill.constructed.action_model='gpt-9': not a conf/model option"),
])
def test_config_errors_name_the_key(tmp_path: Path, override: str, message: str) -> None:
    extra = ["distill.mode=constructed"] if "constructed" in override else []
    with pytest.raises(ValueError, match=message):
        distill_run(distill_cfg(tmp_path, "data.toy_size=3", *extra, override))


@pytest.mark.parametrize("override,message", [
    ("distill.budget_unit=tokens", r"distill.budget_unit='tokens': unknown value; valid: sft, response"),
    ("distill.token_budgets=[lots]", r"distill.token_budgets: cannot parse 'lots'; use e.g. 1000, 250M"),
    ("distill.token_budgets=[0]", r"distill.token_budgets: '0' is less than one token"),
    ("distill.budget_n=5", r"distill.budget_n=5 is not one of the datasets' N; valid: 4, 8, 16"),
    ("distill.chunk_prompts=0", r"distill.chunk_prompts=0: must be >= 1"),
])
def test_bad_budget_settings_fail_before_any_sampling(tmp_path: Path, override: str, message: str) -> None:
    cfg = distill_cfg(tmp_path, "data.toy_size=8", "distill.token_budgets=[1K]", override)
    with pytest.raises(ValueError, match=message):
        distill_run(cfg)
    assert not (tmp_path / "distill").exists()  # nothing sampled, not even a run directory


def _fake_real_teacher(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 'real' teacher config (qwq-32b-preview on hf) whose text the synthetic backend writes."""
    from longcot.distill.sources import Generators
    from longcot.generation.synthetic import SyntheticGenerator

    monkeypatch.setattr(Generators, "get", lambda self, name, key="model": SyntheticGenerator(error_rate=0.3))


def _real_cfg(root: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=["stage=distill", "model=qwq-32b-preview", "data=toy", "data.toy_size=4",
                                            "distill.n=2", f"output_root={root}", *overrides])


def test_smoke_scale_with_a_real_teacher_is_loud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture) -> None:
    _fake_real_teacher(monkeypatch)
    with caplog.at_level("INFO", logger="longcot.stages.distill"):
        out = distill_run(_real_cfg(tmp_path))  # scale=smoke: the embedded default
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("scale=smoke caps a real model (teacher qwq-32b-preview, hf) this run" in w
               and "distill.max_new_tokens 8192 -> 256" in w and "pass scale=full for a real run" in w
               for w in warnings), warnings
    assert any("(scale=smoke)" in r.getMessage() for r in caplog.records if r.levelname == "INFO")  # startup line
    assert out["scale"] == "smoke" and "scale=smoke" in capsys.readouterr().out  # manifest and table title
    # vllm is a real run even with a toy model name
    cfg = distill_cfg(tmp_path, "scale=smoke", "generation.backend=vllm")
    assert any("scale=smoke caps a real model" in w for w in stage.plan(cfg).notes)


def test_full_scale_real_teacher_with_the_tiny_student_is_warned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    _fake_real_teacher(monkeypatch)
    with caplog.at_level("WARNING", logger="longcot.stages.distill"):
        distill_run(_real_cfg(tmp_path, "scale=full", "distill.max_new_tokens=512", "distill.print_table=false"))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("distill.student=tiny" in w and "toy tokenizer" in w for w in warnings), warnings
    assert not any("scale=smoke" in w for w in warnings)


def test_toy_runs_are_told_only_what_the_scale_capped(tmp_path: Path) -> None:
    for extra in ((), ("distill.mode=constructed",)):
        assert list(stage.plan(distill_cfg(tmp_path, *extra)).notes) == []  # the demo runs at scale=full
    [note] = stage.plan(distill_cfg(tmp_path, "scale=smoke")).notes
    assert note.startswith("scale=smoke caps this run: distill.max_new_tokens 1024 -> 256, data.limit all -> 20")
    assert list(stage.plan(_real_cfg(tmp_path, "model=tiny", "generation=hf", "scale=full")).notes) == []


def test_a_synthetic_teacher_run_hashes_the_name_not_the_weights(tmp_path: Path) -> None:
    """The synthetic backend reads only ``model.name`` (``longcot.generation.synthetic.build``): the tiny
    model's init does not change its text, so it does not change its identity; a real engine's does."""
    common = ("data.toy_size=10", "distill.n=2", "distill.derive_n=[]", "distill.num_shards=1")
    a = distill_run(distill_cfg(tmp_path / "a", *common, "model.tiny_seed=0"))
    b = distill_run(distill_cfg(tmp_path / "b", *common, "model.tiny_seed=7"))
    assert (Path(a["dir"]) / "n2/data.parquet").read_bytes() == (Path(b["dir"]) / "n2/data.parquet").read_bytes()
    assert Path(a["dir"]).relative_to(tmp_path / "a") == Path(b["dir"]).relative_to(tmp_path / "b")
    renamed = stage.plan(distill_cfg(tmp_path, *common, "model.name=synthetic-other")).run_dir
    assert renamed.relative_to(tmp_path) != Path(a["dir"]).relative_to(tmp_path / "a")  # the name is in the rows

    def hf(seed: int) -> Path:
        return stage.plan(distill_cfg(tmp_path, *common, "generation=hf", "generation.device=cpu", "model.path=tiny",
                                      f"model.tiny_seed={seed}")).run_dir

    assert hf(0) != hf(7)  # a real engine reads the weights
