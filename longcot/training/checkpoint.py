"""Atomic, resumable checkpoints of any number of named engines (SFT: ``model``; RL: ``actor``, ``critic``).

Layout of ``<run_dir>/checkpoints/step-<NNNNNNNN>/`` (periodic) and of a final checkpoint::

    <name>/            HF format: config.json, model*.safetensors, generation_config.json, tokenizer
                       (loadable by from_pretrained and by vLLM)
    <name>.optim.pt    torch backend: optimizer + scheduler state
    <name>.deepspeed/  deepspeed backend: DeepSpeed's own (partitioned) model + optimizer + scheduler state
    rng/rank-<r>.pt    python / numpy / torch (+ CUDA) RNG states of every rank
    state.json         step and the caller's extra state (data position, ...)

Everything is written into ``.tmp-<tag>`` beside the target and renamed onto it when complete, so a
killed run never leaves a checkpoint that looks finished; :func:`latest_checkpoint` only sees
renamed ones. Periodic checkpoints beyond the last ``keep_last`` are deleted after a new one lands.
With several processes, rank 0 creates and renames the directory and every rank writes its part in
between (barriers around); the run directory must be on a filesystem all nodes share.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch

from longcot import runs
from longcot.training.distributed import barrier, detect

if TYPE_CHECKING:  # pragma: no cover
    from longcot.training.engine import Engine

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
STATE = "state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def checkpoint_root(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINTS


def step_tag(step: int) -> str:
    return f"step-{step:08d}"


def periodic_checkpoints(run_dir: Path) -> list[Path]:
    """Finished periodic checkpoints, oldest first."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))
             and (p / STATE).is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest finished periodic checkpoint of ``run_dir``, or None."""
    found = periodic_checkpoints(run_dir)
    return found[-1] if found else None


# --------------------------------------------------------------------------- RNG
def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------- HF weights
def export_hf(engine: "Engine", out_dir: Path, tokenizer: Any = None) -> None:
    """Write the engine's model in HF format (safetensors + config + generation config [+ tokenizer]).

    Collective for ZeRO-3 (every rank calls it); only rank 0 writes."""
    state_dict = engine.full_state_dict()
    if not detect().is_main:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    config = engine.module.config
    training_use_cache = getattr(config, "use_cache", None)
    config.use_cache = True  # the engine turns the KV cache off for training; a saved model generates with it
    try:
        engine.module.save_pretrained(out_dir, state_dict=state_dict)
    finally:
        config.use_cache = training_use_cache
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)


def load_hf_weights(module: torch.nn.Module, model_dir: Path) -> None:
    """Load the safetensors weights of an HF directory into ``module`` in place (exact copy)."""
    from safetensors.torch import load_file

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise ValueError(f"{model_dir}: no *.safetensors weights to resume from")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    result = module.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"{model_dir}: unexpected weights {result.unexpected_keys[:5]}")
    params = dict(module.named_parameters(remove_duplicate=False))
    loaded_ptrs = {params[k].data_ptr() for k in state if k in params}
    untied = [k for k in result.missing_keys if k in params and params[k].data_ptr() not in loaded_ptrs]
    if untied:
        raise ValueError(f"{model_dir}: weights missing from the checkpoint: {untied[:5]}")


# --------------------------------------------------------------------------- save / load
def save_checkpoint(
    run_dir: Path,
    engines: Mapping[str, "Engine"],
    *,
    step: int,
    state: Mapping[str, Any] | None = None,
    tokenizers: Mapping[str, Any] | None = None,
    keep_last: int | None = None,
    tag: str | None = None,
    training_state: bool = True,
) -> Path:
    """Write a checkpoint atomically and return its path.

    ``tag`` None = periodic (``checkpoints/step-<step>``, pruned to ``keep_last``); otherwise the
    directory ``run_dir/<tag>`` (e.g. ``final``), never pruned. ``training_state=False`` writes
    only the HF models (a final export)."""
    info = detect()
    target = checkpoint_root(run_dir) / step_tag(step) if tag is None else Path(run_dir) / tag
    tmp = target.parent / f".tmp-{target.name}"
    if info.is_main:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    barrier()
    tokenizers = tokenizers or {}
    for name, engine in engines.items():
        export_hf(engine, tmp / name, tokenizers.get(name))
        if not training_state:
            continue
        if engine.deepspeed_engine is not None:
            engine.deepspeed_engine.save_checkpoint(str(tmp / f"{name}.deepspeed"), tag="state",
                                                    client_state={"global_step": engine.global_step})
        elif info.is_main:
            torch.save(engine.optim_state(), tmp / f"{name}.optim.pt")
    if training_state:
        (tmp / "rng").mkdir(exist_ok=True)
        torch.save(rng_state(), tmp / "rng" / f"rank-{info.rank}.pt")
    barrier()
    if info.is_main:
        runs.write_json(tmp / STATE, {"step": int(step), "engines": sorted(engines), "world_size": info.world_size,
                                       "training_state": training_state, "state": dict(state or {})})
        os.chmod(tmp, 0o777 & ~_umask())
        if target.exists():  # a re-save of the same step (e.g. a rerun of a finished final export)
            shutil.rmtree(target)
        os.rename(tmp, target)
        if tag is None and keep_last is not None and keep_last > 0:
            for old in periodic_checkpoints(run_dir)[:-keep_last]:
                shutil.rmtree(old, ignore_errors=True)
    barrier()
    log.info("checkpoint %s", target)
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_checkpoint(path: Path, engines: Mapping[str, "Engine"], *, restore_rng: bool = True) -> dict[str, Any]:
    """Restore every engine (weights, optimizer, scheduler) and this rank's RNG from ``path``; returns
    ``state.json`` (``step``, ``state``)."""
    path = Path(path)
    meta = runs.read_json(path / STATE)
    if not meta.get("training_state", True):
        raise ValueError(f"{path} is a weights-only export; it cannot resume training")
    missing = sorted(set(engines) - set(meta["engines"]))
    if missing:
        raise ValueError(f"{path}: no state for engine(s) {missing}; it holds {meta['engines']}")
    info = detect()
    if meta["world_size"] != info.world_size:
        raise ValueError(f"{path} was written by {meta['world_size']} processes; resuming with {info.world_size} "
                         "is not supported (the RNG and data position are per rank)")
    for name, engine in engines.items():
        if engine.deepspeed_engine is not None:
            _, client = engine.deepspeed_engine.load_checkpoint(str(path / f"{name}.deepspeed"), tag="state",
                                                                load_optimizer_states=True,
                                                                load_lr_scheduler_states=True)
            engine.global_step = int((client or {}).get("global_step", meta["step"]))  # optimizer steps
        else:
            with torch.no_grad():
                load_hf_weights(engine.module, path / name)
            engine.load_optim_state(torch.load(path / f"{name}.optim.pt", map_location=engine.device, weights_only=False))
    if restore_rng:
        set_rng_state(torch.load(path / "rng" / f"rank-{info.rank}.pt", weights_only=False))
    return meta


def read_state(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / STATE).read_text())
