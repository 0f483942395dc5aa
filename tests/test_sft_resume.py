"""SIGKILL mid-epoch + relaunch with the same call == an uninterrupted run: same final weights and
the same logged losses / lr / grad norms, every step logged exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from omegaconf import OmegaConf
from longcot.models.config import ModelConfig
from longcot.sft.config import SFTConfig
from longcot.sft.data import toy_examples
from longcot.sft.recipe import train
cfg = SFTConfig(global_batch_sequences=8, max_length=300, max_tokens_per_micro_batch=400, learning_rate=1e-3,
                epochs=3, warmup_ratio=0.1, save_every_steps=2, keep_last=2, seed=7)
train(toy_examples(44, 0), OmegaConf.structured(ModelConfig(name="tiny", path="tiny")), cfg, sys.argv[1], progress=False)
"""
# 44 examples / 8 per step = 6 steps per epoch (the last one of 4 sequences), 18 steps in all.
STEPS = 18
DETERMINISTIC = ("step", "epoch", "loss", "lr", "grad_norm", "sequences", "tokens", "target_tokens", "micro_batches")


def _launch(script: Path, run_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(script), str(run_dir)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _records(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "killed"

    ref = _launch(script, ref_dir)
    _, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err[-3000:]

    proc = _launch(script, run_dir)
    deadline = time.time() + 300
    # Kill in epoch 2 (steps 7-12), after the step-8 checkpoint and with step 9 already logged.
    while time.time() < deadline and proc.poll() is None:
        if len(_records(run_dir)) >= 9 and (run_dir / "checkpoints" / "step-00000008").is_dir():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = len(_records(run_dir))
    assert 9 <= killed_at < STEPS and not (run_dir / "final").exists()

    again = _launch(script, run_dir)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-3000:]

    # weights: equal to float tolerance (bitwise on one CPU thread, in practice)
    a = load_file(str(ref_dir / "final" / "model" / "model.safetensors"))
    b = load_file(str(run_dir / "final" / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=1e-6)
    # logged losses: every step once, the same values
    ra, rb = _records(ref_dir), _records(run_dir)
    assert [r["step"] for r in rb] == list(range(1, STEPS + 1))
    for x, y in zip(ra, rb):
        for key in DETERMINISTIC:
            assert y[key] == pytest.approx(x[key], rel=1e-6, abs=1e-9), (x["step"], key)
    # keep_last=2 periodic checkpoints; the final checkpoint and the plot exist
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-00000014", "step-00000016"]
    assert (run_dir / "loss.png").stat().st_size > 0
    # training really happened: the loss went down
    assert rb[-1]["loss"] < rb[0]["loss"] - 0.5
