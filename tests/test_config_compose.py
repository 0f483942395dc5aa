"""Every config option and every experiment composes against the typed schema; bad input fails
with a message that names the key or option."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from longcot.config.loading import CONF_DIR, group_options
from longcot.config.schema import SCHEMAS, register_configs

REPO = Path(__file__).resolve().parents[1]
GROUPS = ["model", "data", "reward", "algorithm", "benchmark", "generation", "cluster", "logger", "stage", "scale"]
EXPERIMENTS = sorted(p.stem for p in (REPO / "experiments").glob("*.yaml"))

register_configs()


def _compose(overrides: list[str], config_dir: Path = CONF_DIR, hydra_cfg: bool = False):
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=hydra_cfg)


def test_every_group_has_options() -> None:
    for group in GROUPS:
        assert group_options(group), f"conf/{group}/ has no options"


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in group_options(g)])
def test_every_group_option_composes(group: str, option: str) -> None:
    cfg = _compose([f"{group}={option}"], hydra_cfg=(group == "cluster"))
    OmegaConf.resolve(cfg)  # every interpolation resolves
    node = cfg[group]
    if group in SCHEMAS:
        assert OmegaConf.get_type(node) is SCHEMAS[group]
    if group == "cluster" and option == "slurm":
        launcher = cfg.hydra.launcher
        assert launcher._target_.endswith("SlurmLauncher")
        assert launcher.gpus_per_node == cfg.cluster.gpus_per_node


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes(name: str) -> None:
    cfg = _compose([f"+experiment={name}"])
    OmegaConf.resolve(cfg)
    assert cfg.stage.name


def test_experiments_are_reachable_as_a_config_group() -> None:
    assert sorted(group_options("experiment")) == EXPERIMENTS and EXPERIMENTS


def test_misspelled_key_fails_with_its_name() -> None:
    with pytest.raises(ConfigCompositionException) as err:
        _compose(["model.pathh=x"])
    assert "pathh" in str(err.value.__cause__ or err.value)


def test_wrong_type_fails() -> None:
    with pytest.raises((ConfigCompositionException, ValidationError)) as err:
        _compose(["benchmark.num_samples=many"])
    assert "num_samples" in str(err.value.__cause__ or err.value)


def test_misspelled_key_in_a_yaml_file_fails(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf, symlinks=False)
    (conf / "model" / "broken.yaml").write_text("name: broken\npath: tiny\ndtyp: float32\n")
    with pytest.raises((ConfigCompositionException, ConfigKeyError)) as err:
        _compose(["model=broken"], config_dir=conf)
    assert "dtyp" in str(err.value) + str(err.value.__cause__)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "longcot", *args], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_cli_unknown_option_lists_valid_choices() -> None:
    proc = _cli("model=gpt5")
    assert proc.returncode != 0
    assert "gpt5" in proc.stderr and "tiny" in proc.stderr and "qwen2.5-math-7b" in proc.stderr


def test_cli_misspelled_key_exits_nonzero_naming_it() -> None:
    proc = _cli("benchmark.limt=3")
    assert proc.returncode != 0
    assert "limt" in proc.stderr


def test_cli_unknown_option_lists_only_real_options() -> None:
    proc = _cli("model=tinyy")
    assert proc.returncode == 2 and "model_schema" not in proc.stderr and "did you mean tiny?" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "synthetic-short, tiny)" in proc.stderr


@pytest.mark.parametrize(
    "override,key",
    [
        ("reward.kind=cosin", "reward.kind"),
        ("reward.repetition.variant=dens", "reward.repetition.variant"),
        ("reward.gamma=1.5", "reward.gamma"),
        ("logger.mode=onlin", "logger.mode"),
        ("generation.device=cdua", "generation.device"),
        ("generation.backend=tgi", "generation.backend"),
        ("cluster.name=slurm", "cluster.name"),
        ("benchmark.top_p=0", "benchmark.top_p"),
        ("eval.benchmarks=[gsm8k]", "eval.benchmarks"),
    ],
)
def test_cli_rejects_invalid_values_before_any_work(override: str, key: str, tmp_path: Path) -> None:
    proc = _cli(override, f"output_root={tmp_path}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "longcot: config error:" in proc.stderr and key in proc.stderr
    assert not (tmp_path / "eval").exists()


def test_every_default_and_experiment_config_validates() -> None:
    from longcot.config.validate import validate

    for overrides in [[]] + [[f"+experiment={name}"] for name in EXPERIMENTS]:
        validate(_compose(overrides))


def test_cli_prints_composed_config() -> None:
    proc = _cli("--cfg", "job", "model=qwen2.5-math-7b", "model.rope_theta_scale=10")
    assert proc.returncode == 0, proc.stderr
    cfg = OmegaConf.create(proc.stdout)
    assert cfg.model.path == "Qwen/Qwen2.5-Math-7B" and cfg.model.rope_theta_scale == 10
