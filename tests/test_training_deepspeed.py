"""DeepSpeed ZeRO-1/2/3 on DeepSpeed's CPU accelerator: initialises, trains a few packed SFT steps with
the same losses and grad norms as the plain torch engine, resumes exactly from its checkpoint (ZeRO-2),
and exports a ZeRO-3 model (gathered weights) that from_pretrained loads.

Needs the optional extra (``pip install -e '.[deepspeed]'``); skipped where deepspeed is not
importable. The first run JIT-builds DeepSpeed's CPU shared-memory comm op (a C++ compiler is
needed; cached in ~/.cache/torch_extensions afterwards). Runs in a subprocess: DeepSpeed joins a
(one-process, gloo) process group, which must not leak into other tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("deepspeed", reason="deepspeed not installed (optional extra: pip install -e '.[deepspeed]')")

from tests.launch import free_port  # noqa: E402

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json, sys, torch
torch.set_num_threads(1)
from omegaconf import OmegaConf
from longcot.models.config import ModelConfig
from longcot.models.loading import load_model_and_tokenizer
from longcot.sft.data import toy_examples, tokenize_examples
from longcot.sft.packing import pack_step
from longcot.sft.recipe import train_step
from longcot.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from longcot.training.engine import Engine, EngineConfig

TINY = OmegaConf.structured(ModelConfig(name="tiny", path="tiny"))
out_dir = sys.argv[1]

def engine(backend, stage):
    model, tok = load_model_and_tokenizer(TINY, device="cpu", dtype="float32")
    cfg = EngineConfig(learning_rate=1e-3, total_steps=4, warmup_ratio=0.25, backend=backend, zero_stage=stage,
                       precision="float32")
    return Engine(model, cfg, device="cpu"), tok

_, tok = load_model_and_tokenizer(TINY, device="cpu", dtype="float32")
data, _ = tokenize_examples(tok, toy_examples(16, 0), max_length=300)
steps = [pack_step(data[4 * s:4 * s + 4], 300) for s in range(4)]  # 2+ micro-batches per step
result = {"micro_batches": [len(b) for b in steps]}
for backend, stage in (("torch", 1), ("deepspeed", 1), ("deepspeed", 2), ("deepspeed", 3)):
    eng, _ = engine(backend, stage)
    key = f"{backend}{stage}"
    result[key] = [train_step(eng, steps[s], attn_implementation="sdpa") + (eng.lr,) for s in range(4)]
    result[key + "_backend"] = eng.backend
    if backend == "deepspeed" and stage == 2:
        eng2, _ = engine(backend, stage)
        for s in range(2):
            train_step(eng2, steps[s], attn_implementation="sdpa")
        save_checkpoint(out_dir, {"model": eng2}, step=2)
        eng3, _ = engine(backend, stage)
        load_checkpoint(latest_checkpoint(out_dir), {"model": eng3})
        result["resumed"] = [train_step(eng3, steps[s], attn_implementation="sdpa") for s in (2, 3)]
    if stage == 3:
        path = save_checkpoint(out_dir + "/z3", {"model": eng}, step=4, tag="final", training_state=False,
                               tokenizers={"model": tok})
        exported, _ = load_model_and_tokenizer(OmegaConf.structured(ModelConfig(name="x", path=str(path / "model"))),
                                               device="cpu", dtype="float32")
        # the gathered ZeRO-3 weights equal the torch run's after the same 4 steps
        result["z3_vs_torch_maxdiff"] = max(float((a - b).abs().max()) for a, b in
                                            zip(exported.state_dict().values(), torch_weights.values()))
    if backend == "torch":
        torch_weights = {k: v.clone() for k, v in eng.module.state_dict().items()}
print("RESULT " + json.dumps(result))
"""


def test_zero123_train_like_torch_resume_and_export(tmp_path: Path) -> None:
    script = tmp_path / "ds.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"}
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "run")], env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    r = json.loads(line[len("RESULT "):])
    assert max(r["micro_batches"]) >= 2  # gradient accumulation across micro-batches is exercised
    assert r["deepspeed1_backend"] == "deepspeed" and r["deepspeed2_backend"] == "deepspeed"
    ref = r["torch1"]
    assert ref[-1][0] < ref[0][0]  # it trains
    for key in ("deepspeed1", "deepspeed2", "deepspeed3"):
        for (loss, norm, lr), (rl, rn, rlr) in zip(r[key], ref):
            assert loss == pytest.approx(rl, rel=1e-5)
            assert norm == pytest.approx(rn, rel=1e-4)
            assert lr == pytest.approx(rlr)
    assert r["z3_vs_torch_maxdiff"] < 1e-5
    for (loss, norm), (rl, rn, _) in zip(r["resumed"], r["deepspeed2"][2:]):
        assert loss == pytest.approx(rl, rel=1e-6) and norm == pytest.approx(rn, rel=1e-5)
