"""Engine + checkpoints on the tiny model: exact restore of weights, optimizer, scheduler and RNG;
atomicity (a half-written checkpoint is invisible); keep-last pruning; two engines (actor/critic);
the final export loads with from_pretrained."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from longcot.models.config import ModelConfig
from longcot.models.loading import load_model_and_tokenizer
from longcot.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from longcot.training.engine import Engine, EngineConfig, deepspeed_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = OmegaConf.structured(ModelConfig(name="tiny", path="tiny"))
IDS = torch.tensor([[1, 5, 9, 33, 70, 2, 40, 41, 42]])


def _engine(lr: float = 1e-2) -> tuple[Engine, object]:
    model, tok = load_model_and_tokenizer(TINY, device="cpu", dtype="float32")
    return Engine(model, EngineConfig(learning_rate=lr, total_steps=10, warmup_ratio=0.2, backend="torch")), tok


def _step(engine: Engine, ids: torch.Tensor = IDS) -> tuple[float, float]:
    with engine.micro_batch(last=True):
        loss = engine(input_ids=ids, labels=ids, use_cache=False).loss
        engine.backward(loss)
    return float(loss.detach()), engine.step()


def test_engine_step_matches_plain_adamw() -> None:
    """The torch backend is AdamW + clip + LambdaLR: one step equals doing it by hand."""
    engine, _ = _engine()
    model2, _ = load_model_and_tokenizer(TINY, device="cpu", dtype="float32")
    opt = torch.optim.AdamW(model2.parameters(), lr=1e-2 * 0.5, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    _step(engine)  # lr 0 (warmup step 0): weights unchanged, Adam moments updated
    loss2 = model2(input_ids=IDS, labels=IDS, use_cache=False).loss
    loss2.backward()
    norm = torch.nn.utils.clip_grad_norm_(model2.parameters(), 1.0)
    for group in opt.param_groups:
        group["lr"] = 0.0
    opt.step()
    opt.zero_grad()
    _, norm1 = _step(engine)  # lr = 0.5 * peak
    loss2 = model2(input_ids=IDS, labels=IDS, use_cache=False).loss
    loss2.backward()
    norm2 = torch.nn.utils.clip_grad_norm_(model2.parameters(), 1.0)
    for group in opt.param_groups:
        group["lr"] = 1e-2 * 0.5
    opt.step()
    assert norm1 == pytest.approx(float(norm2), rel=1e-5)
    for (n, p), q in zip(engine.module.named_parameters(), model2.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5, msg=n)
    assert float(norm) > 0


def test_resume_is_exact_and_rng_restored(tmp_path: Path) -> None:
    engine, tok = _engine()
    for _ in range(3):
        _step(engine)
    random.seed(11)
    np.random.seed(11)
    torch.manual_seed(11)
    path = save_checkpoint(tmp_path, {"model": engine}, step=3, tokenizers={"model": tok}, state={"position": 42})
    expected_rng = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    lr_at_save = engine.lr
    loss_a, norm_a = _step(engine)
    weights_a = {k: v.clone() for k, v in engine.module.state_dict().items()}

    fresh, _ = _engine()
    torch.manual_seed(999)
    meta = load_checkpoint(latest_checkpoint(tmp_path), {"model": fresh})
    assert meta["step"] == 3 and meta["state"] == {"position": 42}
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected_rng
    assert fresh.global_step == 3 and fresh.lr == lr_at_save
    loss_b, norm_b = _step(fresh)
    assert (loss_b, norm_b) == (loss_a, norm_a)  # bitwise
    for k, v in fresh.module.state_dict().items():
        assert torch.equal(v, weights_a[k]), k
    assert path.name == "step-00000003"


def test_atomic_and_keep_last(tmp_path: Path) -> None:
    engine, _ = _engine()
    for step in (1, 2, 3):
        _step(engine)
        save_checkpoint(tmp_path, {"model": engine}, step=step, keep_last=2)
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["step-00000002", "step-00000003"]
    # a checkpoint killed while being written is a .tmp-* dir (or lacks state.json): never picked
    shutil.copytree(root / "step-00000003", root / ".tmp-step-00000004")
    (root / "step-00000005").mkdir()
    assert latest_checkpoint(tmp_path).name == "step-00000003"
    assert latest_checkpoint(tmp_path / "nothing") is None


def test_two_engines_actor_critic(tmp_path: Path) -> None:
    actor, tok = _engine(lr=1e-2)
    critic, _ = _engine(lr=5e-3)
    for _ in range(2):
        _step(actor)
        _step(critic, IDS.flip(1))
    save_checkpoint(tmp_path, {"actor": actor, "critic": critic}, step=2, tokenizers={"actor": tok})
    a2, _ = _engine(lr=1e-2)
    c2, _ = _engine(lr=5e-3)
    load_checkpoint(latest_checkpoint(tmp_path), {"actor": a2, "critic": c2})
    assert _step(a2) == _step(actor)
    assert _step(c2, IDS.flip(1)) == _step(critic, IDS.flip(1))
    with pytest.raises(ValueError, match="no state for engine"):
        load_checkpoint(latest_checkpoint(tmp_path), {"reward": a2})


def test_final_export_loads_with_from_pretrained(tmp_path: Path) -> None:
    engine, tok = _engine()
    _step(engine)
    _step(engine)
    path = save_checkpoint(tmp_path, {"model": engine}, step=2, tokenizers={"model": tok}, tag="final",
                           training_state=False)
    names = {p.name for p in (path / "model").iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"} <= names
    model, tok2 = load_model_and_tokenizer(OmegaConf.structured(ModelConfig(name="x", path=str(path / "model"))),
                                           device="cpu", dtype="float32")
    for k, v in model.state_dict().items():
        assert torch.equal(v, engine.module.state_dict()[k]), k
    assert tok2.chat_template == tok.chat_template
    assert model.config.use_cache is True and engine.module.config.use_cache is False
    with pytest.raises(ValueError, match="weights-only"):
        load_checkpoint(path, {"model": engine})


def test_engine_config_errors_and_deepspeed_autofill() -> None:
    with pytest.raises(ValueError, match="backend='jax'; valid: auto, torch, deepspeed"):
        EngineConfig(backend="jax").validate()
    with pytest.raises(ValueError, match="zero_stage"):
        EngineConfig(zero_stage=4).validate()
    for stage in (1, 2, 3):
        ds = deepspeed_config(EngineConfig(zero_stage=stage, learning_rate=3e-6, max_grad_norm=0.5), 8, "bf16")
        assert ds["zero_optimization"]["stage"] == stage
        assert ds["train_batch_size"] == 8 and ds["gradient_accumulation_steps"] == 1
        assert ds["gradient_clipping"] == 0.5 and ds["zero_allow_untested_optimizer"] is True
        assert ds["bf16"]["enabled"] is True
        assert "auto" not in repr(ds)


def test_gradient_checkpointing_and_bf16_autocast() -> None:
    """Gradient checkpointing (torch.utils.checkpoint via transformers) changes memory, not the math;
    bf16 autocast runs and stays close to float32 (CPU autocast; on GPU it is the default)."""
    ref, _ = _engine()
    model, _ = load_model_and_tokenizer(TINY, device="cpu", dtype="float32")
    gc = Engine(model, EngineConfig(learning_rate=1e-2, total_steps=10, warmup_ratio=0.2, backend="torch",
                                    gradient_checkpointing=True))
    assert gc.module.is_gradient_checkpointing
    for _ in range(2):
        (la, na), (lb, nb) = _step(ref), _step(gc)
        assert lb == pytest.approx(la, rel=1e-6) and nb == pytest.approx(na, rel=1e-5)
    model, _ = load_model_and_tokenizer(TINY, device="cpu", dtype="float32")
    bf = Engine(model, EngineConfig(learning_rate=1e-2, total_steps=10, warmup_ratio=0.2, backend="torch",
                                    precision="bf16"))
    loss_bf, _ = _step(bf)
    fresh, _ = _engine()
    loss_fp, _ = _step(fresh)
    assert bf.precision == "bf16" and next(bf.module.parameters()).dtype == torch.float32  # fp32 master weights
    assert loss_bf == pytest.approx(loss_fp, rel=2e-2) and loss_bf != loss_fp
