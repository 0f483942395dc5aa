"""RL on DeepSpeed across two processes (DeepSpeed's CPU accelerator, gloo): ZeRO-2, ZeRO-3 (every
actor forward a collective: HF rollouts of unequal lengths step the ranks together, ``synced_gpus``)
and ZeRO-2 with the optimizer offloaded to DeepSpeed's CPU Adam (``rl.adam_offload``) each log the
same rollouts, losses and grad norms as two plain-torch DDP processes, with two optimizer steps per
rollout and two epochs (accumulation boundaries across several steps), and the offload engine
really is offloaded.

Needs the optional extra (``pip install -e '.[deepspeed]'``); skipped where deepspeed is not
importable (CI). The first run JIT-builds DeepSpeed's CPU ops (shared-memory comm, CPU Adam; a C++
compiler is needed, ~1-3 min, cached in ~/.cache/torch_extensions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("deepspeed", reason="deepspeed not installed (optional extra: pip install -e '.[deepspeed]')")

from tests.launch import clean_env, run_ok, torchrun  # noqa: E402
from tests.test_rl_distributed import SCRIPT, _records, script_args, sigkill_and_relaunch, warm_model  # noqa: E402

pytestmark = pytest.mark.slow

OFFLOAD_CHECK = """
import json, sys, torch
from omegaconf import OmegaConf
from longcot.models.config import ModelConfig
from longcot.models.loading import load_model_and_tokenizer
from longcot.training.engine import Engine, EngineConfig
model, _ = load_model_and_tokenizer(OmegaConf.structured(ModelConfig(name="tiny", path="tiny")), device="cpu",
                                    dtype="float32")
eng = Engine(model, EngineConfig(backend="deepspeed", zero_stage=2, adam_offload=True, precision="float32"),
             device="cpu")
print("RESULT " + json.dumps({"optimizer": type(eng.optimizer.optimizer).__name__,
                              "offload": bool(eng.deepspeed_engine.zero_cpu_offload())}))
"""


def test_zero2_zero3_offload_train_like_torch_ddp(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = clean_env()
    model = warm_model(tmp_path)
    multi = dict(train_batch=4, epochs=2)  # 2 optimizer steps per epoch, 2 epochs per rollout
    run_ok([*torchrun(), str(script), *script_args(tmp_path / "torch", model, "torch", **multi)], env)
    runs = {"zero2": (2, False), "zero3": (3, False), "zero2_offload": (2, True)}
    for name, (stage, offload) in runs.items():
        run_ok([*torchrun(), str(script), *script_args(tmp_path / name, model, "deepspeed", stage, offload, **multi)], env)
    # ranks decode unequal numbers of tokens (the ZeRO-3 hazard)
    assert all(r["response_length_max"] > r["response_length_mean"] for r in _records(tmp_path / "torch" / "ppo"))
    for name in runs:
        for algo in ("ppo", "reinforce_pp", "grpo"):
            ra, rb = _records(tmp_path / "torch" / algo), _records(tmp_path / name / algo)
            assert [r["step"] for r in rb] == [1, 2], (name, algo)
            for x, y in zip(ra, rb):
                for key in ("reward", "response_length_mean", "truncation_ratio"):
                    assert y[key] == x[key], (name, algo, key)
                rel = 1e-4 if x["step"] == 1 else 2e-3
                keys = ["kl", "entropy", "actor_grad_norm"] + (["value_loss", "critic_grad_norm"] if algo == "ppo" else [])
                for key in keys:
                    assert y[key] == pytest.approx(x[key], rel=rel, abs=1e-6), (name, algo, key)
            assert (tmp_path / name / algo / "final" / "actor" / "model.safetensors").is_file()
    # the offload run's engine: DeepSpeed's CPU Adam on offloaded optimizer states
    (tmp_path / "check.py").write_text(OFFLOAD_CHECK)
    out = run_ok([*torchrun(1), str(tmp_path / "check.py")], env)
    result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
    assert result == {"optimizer": "DeepSpeedCPUAdam", "offload": True}


def test_zero2_sigkill_and_relaunch_equals_uninterrupted(tmp_path: Path) -> None:
    """DeepSpeed's partitioned optimizer states and schedules resume from the RL checkpoint exactly."""
    sigkill_and_relaunch(tmp_path, "deepspeed", 2)
