"""RL on DeepSpeed across two processes (DeepSpeed's CPU accelerator, gloo): ZeRO-2, ZeRO-3 (HF
rollouts from the gathered actor weights, :meth:`Engine.full_weights`) and ZeRO-2 with the optimizer
offloaded to DeepSpeed's CPU Adam (``rl.adam_offload``) each log the same rollouts, losses and grad
norms as a single plain-torch process, and the offload engine really is offloaded.

Needs the optional extra (``pip install -e '.[deepspeed]'``); skipped where deepspeed is not
importable (CI). The first run JIT-builds DeepSpeed's CPU ops (shared-memory comm, CPU Adam; a C++
compiler is needed, ~1-3 min, cached in ~/.cache/torch_extensions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("deepspeed", reason="deepspeed not installed (optional extra: pip install -e '.[deepspeed]')")

from tests.test_rl_distributed import SCRIPT, _port, _records  # noqa: E402

pytestmark = pytest.mark.slow

DS_SCRIPT = SCRIPT.replace(
    'rl=RLConfig(max_steps=2, save_every=1, backend="torch")',
    'rl=RLConfig(max_steps=2, save_every=1, backend=sys.argv[2], zero_stage=int(sys.argv[3]), '
    'adam_offload=sys.argv[4] == "1")',
)

OFFLOAD_CHECK = """
import json, sys, torch
from omegaconf import OmegaConf
from longcot.config.schema import ModelConfig
from longcot.models.loading import load_model_and_tokenizer
from longcot.training.engine import Engine, EngineConfig
model, _ = load_model_and_tokenizer(OmegaConf.structured(ModelConfig(name="tiny", path="tiny")), device="cpu",
                                    dtype="float32")
eng = Engine(model, EngineConfig(backend="deepspeed", zero_stage=2, adam_offload=True, precision="float32"),
             device="cpu")
print("RESULT " + json.dumps({"optimizer": type(eng.optimizer.optimizer).__name__,
                              "offload": bool(eng.deepspeed_engine.zero_cpu_offload())}))
"""


def _run(cmd: list[str], env: dict) -> str:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout


def test_zero2_zero3_offload_train_like_one_torch_process(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(DS_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    _run([sys.executable, str(script), str(tmp_path / "torch"), "torch", "2", "0"], env)
    runs = {"zero2": ("2", "0"), "zero3": ("3", "0"), "zero2_offload": ("2", "1")}
    for name, (stage, offload) in runs.items():
        _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_port()}",
              str(script), str(tmp_path / name), "deepspeed", stage, offload], env)
    for name in runs:
        for algo in ("ppo", "reinforce_pp"):
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
    out = _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", f"--master_port={_port()}",
                str(tmp_path / "check.py")], env)
    result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
    assert result == {"optimizer": "DeepSpeedCPUAdam", "offload": True}
