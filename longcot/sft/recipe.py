"""The SFT recipe (paper §3): packed fine-tuning on (prompt, response) pairs, loss on responses only.

Read top to bottom, torchtune / nanoGPT style::

    examples -> tokenise (chat template) -> fixed per-epoch permutations -> optimizer steps of
    `global_batch_sequences` samples -> each step packed into micro-batches of
    `max_tokens_per_micro_batch` tokens -> forward / backward per micro-batch -> one update

Loss of a step = (sum of token cross-entropies over every response token of the step's samples) /
(number of those tokens): each response token weighs the same, whatever micro-batch or process it
lands in (the HF Trainer's ``num_items_in_batch`` normalisation). Data order depends only on
``sft.seed`` and the epoch, and the data position is the optimizer step, so resuming from a
checkpoint replays exactly the steps an uninterrupted run takes; with the model, optimizer,
scheduler and RNG restored, a killed-and-relaunched run ends with the same weights and the same
logged losses.

Outputs in ``run_dir``: ``metrics.jsonl`` (one record per step), ``checkpoints/step-*/``
(periodic, the last ``keep_last``), ``loss.png``, and ``final/`` (``final/model/``: HF format +
tokenizer, ``final/state.json``: the summary) written last.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from longcot import runs
from longcot.sft.data import SFTExample, TokenizedExample, tokenize_examples
from longcot.sft.packing import MicroBatch, pack_step, shard_micro_batches, token_loss_sum
from longcot.training.checkpoint import STATE, latest_checkpoint, load_checkpoint, save_checkpoint
from longcot.training.distributed import all_reduce_sum, init_distributed, local_device
from longcot.training.engine import Engine, EngineConfig
from longcot.training.metrics import METRICS, MetricsLog, plot_loss, progress_bar, summarize

if TYPE_CHECKING:  # pragma: no cover
    from longcot.models.config import ModelConfig
    from longcot.sft.config import SFTConfig
    from longcot.tracking import Tracker

log = logging.getLogger(__name__)

FINAL = "final"
MODEL = "model"  # the engine's name in checkpoints: final/model/ is the HF model directory


# --------------------------------------------------------------------------- data order
def step_plan(num_examples: int, global_batch: int, epochs: int, seed: int,
              drop_last: bool = False) -> list[tuple[int, list[int]]]:
    """``(epoch, example indices)`` of every optimizer step.

    Epoch ``e`` visits a permutation drawn from ``torch.Generator().manual_seed(seed * 1000 + e)``
    (independent of any other RNG use) in consecutive chunks of ``global_batch``; the last chunk
    of an epoch is the remainder (never mixed with the next epoch), or, with ``drop_last``, is not
    trained on (OpenRLHF's ``num_update_steps_per_epoch = len // train_batch_size``)."""
    if drop_last and num_examples < global_batch:
        raise ValueError(f"sft.drop_last: {num_examples} examples < sft.global_batch_sequences={global_batch}: "
                         "no full step; lower the batch or set sft.drop_last=false")
    end = num_examples - num_examples % global_batch if drop_last else num_examples
    plan = []
    for epoch in range(epochs):
        perm = torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist()
        for start in range(0, end, global_batch):
            plan.append((epoch, perm[start:start + global_batch]))
    return plan


def _as_sft_config(sft_cfg: Any) -> "SFTConfig":
    from omegaconf import DictConfig, OmegaConf

    from longcot.sft.config import SFTConfig

    if isinstance(sft_cfg, DictConfig):
        sft_cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SFTConfig), sft_cfg))
    if not isinstance(sft_cfg, SFTConfig):
        raise ValueError(f"sft config must be an SFTConfig or a DictConfig, got {type(sft_cfg).__name__}")
    sft_cfg.validate()
    return sft_cfg


def resolve_attn(attn: str, device: torch.device) -> str:
    """``auto``: flash_attention_2 on CUDA when flash_attn is importable, else ``sdpa_varlen``."""
    from longcot.training.attention import resolve_attn as resolve

    return resolve(attn, device, fallback="sdpa_varlen")


def engine_config(cfg: "SFTConfig", total_steps: int) -> EngineConfig:
    return EngineConfig(
        learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay, adam_betas=(cfg.adam_beta1, cfg.adam_beta2),
        adam_eps=cfg.adam_eps, max_grad_norm=cfg.max_grad_norm, total_steps=total_steps,
        warmup_ratio=cfg.warmup_ratio, min_lr_ratio=cfg.min_lr_ratio, backend=cfg.backend,
        zero_stage=cfg.zero_stage, precision=cfg.precision, gradient_checkpointing=cfg.gradient_checkpointing,
    )


def finished(run_dir: Path) -> dict[str, Any] | None:
    """The result of a finished run (``final/state.json``), or None."""
    state = Path(run_dir) / FINAL / STATE
    return runs.read_json(state)["state"] if state.is_file() else None


# --------------------------------------------------------------------------- one step
def _dummy_batch(device: torch.device) -> MicroBatch:
    """A one-token micro-batch with no target: keeps a rank's collectives in step when it has no work."""
    z = torch.zeros((1, 1), dtype=torch.long, device=device)
    return MicroBatch(z, z.clone(), torch.full_like(z, -100), (1,), 0)


def train_step(engine: Engine, batches: Sequence[MicroBatch], *, attn_implementation: str) -> tuple[float, float]:
    """One optimizer step over the step's micro-batches (all ranks'); returns (mean token loss, grad norm)."""
    dist = engine.dist
    total_targets = sum(b.num_targets for b in batches)
    scale = engine.loss_scale() / max(total_targets, 1)
    mine = shard_micro_batches(batches, dist.rank, dist.world_size)
    loss_sum = 0.0
    for j, mb in enumerate(mine):
        mb = _dummy_batch(engine.device) if mb is None else mb.to(engine.device)
        with engine.micro_batch(last=j == len(mine) - 1):
            logits = engine(**mb.model_inputs(attn_implementation)).logits
            s = token_loss_sum(logits, mb.targets)
            engine.backward(s * scale)
        loss_sum += float(s.detach())
    grad_norm = engine.step()
    loss_sum = all_reduce_sum([loss_sum], device=str(engine.device))[0]
    return loss_sum / max(total_targets, 1), grad_norm


# --------------------------------------------------------------------------- the recipe
def train(
    examples: Sequence[SFTExample],
    model_cfg: "ModelConfig",
    sft_cfg: "SFTConfig",
    run_dir: str | Path,
    *,
    tracker: "Tracker | None" = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune ``model_cfg`` on ``examples``; resume from the latest checkpoint in ``run_dir``.

    Returns ``{"checkpoint": <final HF model dir>, "metrics": <summary>, "data": <counts>,
    "steps": ..., "total_steps": ...}``; a finished run returns its saved result without training."""
    from longcot.models.loading import load_model_and_tokenizer

    cfg = _as_sft_config(sft_cfg)
    run_dir = Path(run_dir)
    done = finished(run_dir)
    if done is not None:
        log.info("SFT run %s is finished; nothing to do", run_dir)
        return done
    dist = init_distributed(shared_dir=run_dir)  # every node must see the run directory
    device = local_device("auto", dist)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    # Master weights in float32; bf16 compute comes from autocast (torch) or DeepSpeed's bf16 mode.
    attn = resolve_attn(cfg.attn_implementation, device)
    model, tokenizer = load_model_and_tokenizer(model_cfg, device=str(device), dtype="float32",
                                                attn_implementation=attn)
    data, counts = tokenize_examples(tokenizer, examples, max_length=cfg.max_length, overlong=cfg.overlong)
    plan = step_plan(len(data), cfg.global_batch_sequences, cfg.epochs, cfg.seed, cfg.drop_last)
    total_steps = len(plan)
    stop = min(total_steps, cfg.max_steps) if cfg.max_steps else total_steps
    steps_per_epoch = total_steps // cfg.epochs
    engine = Engine(model, engine_config(cfg, total_steps), device=device, dist_env=dist)

    metrics = MetricsLog(run_dir / METRICS, tracker, enabled=dist.is_main)
    start = 0
    ckpt = latest_checkpoint(run_dir)
    layout = {"examples": len(data), "total_steps": total_steps, "global_batch_sequences": cfg.global_batch_sequences,
              "seed": cfg.seed}
    if ckpt is not None:
        meta = load_checkpoint(ckpt, {MODEL: engine})
        saved = {k: meta["state"].get(k) for k in layout}
        if saved != layout:
            raise ValueError(f"{ckpt} was written by a run with a different data layout {saved}; this run has "
                             f"{layout}: use a new run directory (or the same data and sft.* settings)")
        start = int(meta["step"])
        log.info("resumed from %s (step %d of %d)", ckpt, start, total_steps)
    metrics.truncate(start)  # drop records a killed run logged after its last checkpoint

    bar = progress_bar(stop, start, desc="sft", disable=not (progress and dist.is_main))
    t_run = time.perf_counter()
    for step in range(start, stop):
        epoch, indices = plan[step]
        t0 = time.perf_counter()
        samples: list[TokenizedExample] = [data[i] for i in indices]
        batches = pack_step(samples, cfg.max_tokens_per_micro_batch)
        lr = engine.lr
        loss, grad_norm = train_step(engine, batches, attn_implementation=attn)
        dt = time.perf_counter() - t0
        tokens = sum(b.num_tokens for b in batches)
        record = {
            "step": step + 1,
            "epoch": epoch + (step - epoch * steps_per_epoch + 1) / steps_per_epoch,
            "loss": loss,
            "lr": lr,
            "grad_norm": grad_norm,
            "sequences": len(samples),
            "tokens": tokens,
            "target_tokens": sum(b.num_targets for b in batches),
            "micro_batches": len(batches),
            "padding_fraction": 0.0,  # flattened packed rows carry no padding (see sft/packing.py)
            "fill": tokens / (len(batches) * cfg.max_tokens_per_micro_batch),
            "tokens_per_s": tokens / dt,
            "step_time_s": dt,
        }
        if (step + 1) % cfg.log_every_steps == 0 or step + 1 == stop:
            metrics.log(record)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
        if cfg.save_every_steps and (step + 1) % cfg.save_every_steps == 0 and step + 1 < stop:
            save_checkpoint(run_dir, {MODEL: engine}, step=step + 1, keep_last=cfg.keep_last,
                            state={**layout, "epoch": epoch})
    bar.close()

    records = metrics.records() if dist.is_main else []
    summary = summarize(records)
    summary["wall_s_this_launch"] = time.perf_counter() - t_run
    if dist.is_main:
        plot_loss(records, run_dir / "loss.png", title=f"SFT {getattr(model_cfg, 'name', '')}")
    result = {
        "checkpoint": str(run_dir / FINAL / MODEL),
        "metrics": summary,
        "data": counts,
        "steps": stop,
        "total_steps": total_steps,
    }
    save_checkpoint(run_dir, {MODEL: engine}, step=stop, tokenizers={MODEL: tokenizer}, tag=FINAL,
                    training_state=False, state=result)
    if tracker is not None:
        tracker.summary({f"sft/{k}": v for k, v in summary.items() if isinstance(v, (int, float))})
    return result
