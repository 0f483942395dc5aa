"""The training engine: one model + its optimizer + its LR schedule, behind one small interface.

Backends:

* ``torch``: plain PyTorch (CPU, or one GPU; several processes are wrapped in
  ``DistributedDataParallel``). AdamW, ``clip_grad_norm_``, bf16 autocast on CUDA with fp32 master
  weights.
* ``deepspeed``: DeepSpeed ZeRO-1/2/3 (``conf/deepspeed/zero{1,2,3}.json``; the ``"auto"`` values are
  filled from :class:`EngineConfig`), one process per GPU. The optimizer is the same torch AdamW
  as the torch backend, handed to DeepSpeed (``zero_allow_untested_optimizer``): DeepSpeed's
  FusedAdam needs a JIT C++/CUDA build (minutes on a CPU host) and would make the two backends'
  updates differ.

Gradient accumulation is explicit and the same on both: each micro-batch runs inside
``with engine.micro_batch(last=...)`` (forward and ``engine.backward(loss)``), and ``engine.step()``
after the last one updates the weights and returns the pre-clip global grad norm. The caller scales
each micro-batch loss so that the sum over the optimizer step (and over ranks, see
:meth:`Engine.loss_scale`) is the step's loss: no hidden division by an accumulation count.

An RL loop builds one engine per trained model (actor, critic), each with its own optimizer and
schedule; :mod:`longcot.training.checkpoint` saves and restores any number of named engines.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch

from longcot.training.distributed import DistEnv, detect
from longcot.training.options import BACKENDS, PRECISIONS, ZERO_STAGES
from longcot.training.schedule import build_scheduler

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)

DS_CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf" / "deepspeed"


@dataclass
class EngineConfig:
    """Optimizer, schedule and backend of one trained model."""

    learning_rate: float = 5e-6
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.95)
    adam_eps: float = 1e-8
    max_grad_norm: float = 1.0  # <= 0: no clipping (the norm is still measured)
    total_steps: int = 1
    warmup_ratio: float = 0.03
    min_lr_ratio: float = 0.0
    backend: str = "auto"  # auto (deepspeed if CUDA and importable and >1 process, else torch) | torch | deepspeed
    zero_stage: int = 2
    precision: str = "auto"  # auto (bf16 on CUDA, float32 on CPU) | float32 | bf16
    gradient_checkpointing: bool = False
    # deepspeed: optimizer states (and the fp32 master weights) in CPU memory, updated by DeepSpeed's
    # CPU Adam (official --adam_offload); the torch backend has no offload and refuses it.
    adam_offload: bool = False

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend={self.backend!r}; valid: {', '.join(BACKENDS)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r}; valid: {', '.join(PRECISIONS)}")
        if self.zero_stage not in ZERO_STAGES:
            raise ValueError(f"zero_stage={self.zero_stage!r}; valid: 1, 2, 3")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")


def resolve_backend(backend: str, device: torch.device, dist_env: DistEnv) -> str:
    if backend != "auto":
        return backend
    if device.type == "cuda" and dist_env.distributed:
        try:
            import deepspeed  # noqa: F401

            return "deepspeed"
        except ImportError:
            log.warning("deepspeed is not installed; training with plain torch DDP (pip install -e '.[deepspeed]')")
    return "torch"


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "float32"
    return precision


def deepspeed_config(cfg: EngineConfig, world_size: int, precision: str) -> dict[str, Any]:
    """``conf/deepspeed/zero<stage>.json`` with every ``"auto"`` filled in.

    One micro-batch per process per ``micro_batch`` call and accumulation boundaries set by the
    caller: ``train_micro_batch_size_per_gpu = 1``, ``gradient_accumulation_steps = 1``."""
    path = DS_CONFIG_DIR / f"zero{cfg.zero_stage}.json"
    if not path.is_file():
        raise ValueError(f"zero_stage={cfg.zero_stage}: no DeepSpeed config {path}")
    ds = json.loads(path.read_text())
    fills = {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "train_batch_size": world_size,
        "gradient_clipping": float(cfg.max_grad_norm) if cfg.max_grad_norm > 0 else 0.0,
    }
    for key, value in fills.items():
        if ds.get(key, "auto") == "auto":
            ds[key] = value
    if cfg.adam_offload:
        ds.setdefault("zero_optimization", {})["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    ds.setdefault("bf16", {})
    if ds["bf16"].get("enabled", "auto") == "auto":
        ds["bf16"]["enabled"] = precision == "bf16"
    return ds


class Engine:
    """One trained model with its optimizer and scheduler (see the module doc)."""

    def __init__(self, model: "PreTrainedModel", cfg: EngineConfig, *, device: str | torch.device | None = None,
                 dist_env: DistEnv | None = None):
        cfg.validate()
        self.cfg = cfg
        self.dist = dist_env or detect()
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.backend = resolve_backend(cfg.backend, self.device, self.dist)
        self.precision = resolve_precision(cfg.precision, self.device)
        if cfg.adam_offload and self.backend != "deepspeed":
            raise ValueError(f"adam_offload=true needs the deepspeed backend; this engine resolved to {self.backend!r} "
                             "(set the backend to deepspeed, or turn the offload off)")
        if self.precision == "bf16" and self.device.type != "cuda" and self.backend == "torch":
            log.warning("precision=bf16 on %s: autocast to bfloat16 on CPU is slow; float32 is the CPU default", self.device)
        if cfg.gradient_checkpointing:
            # torch.utils.checkpoint through transformers; the non-reentrant variant works with DDP/ZeRO.
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False  # training never wants a KV cache (and it breaks packing, see sft/packing.py)
        model.train()
        self.module = model  # the unwrapped HF model (save_pretrained, generation)
        self._ds = None
        self._ddp = None
        if self.backend not in ("torch", "deepspeed"):
            raise ValueError(f"backend={self.backend!r}; valid: torch, deepspeed")
        if self.backend == "torch":
            model.to(self.device)
        decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]  # norms, biases
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if cfg.adam_offload:  # ZeRO-Offload steps on the CPU: DeepSpeed's CPU Adam (AdamW mode), not torch's
            from deepspeed.ops.adam import DeepSpeedCPUAdam

            optimizer = DeepSpeedCPUAdam(groups, lr=cfg.learning_rate, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps,
                                         adamw_mode=True)
        else:
            optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps)
        scheduler = build_scheduler(optimizer, total_steps=cfg.total_steps, warmup_ratio=cfg.warmup_ratio,
                                    min_lr_ratio=cfg.min_lr_ratio)
        if self.backend == "deepspeed":
            import deepspeed

            self._ds, self.optimizer, _, self.scheduler = deepspeed.initialize(
                model=model, optimizer=optimizer, lr_scheduler=scheduler,
                config=deepspeed_config(cfg, self.dist.world_size, self.precision),
            )
            self.module = self._ds.module
        else:
            self.optimizer, self.scheduler = optimizer, scheduler
            if self.dist.distributed:
                self._ddp = torch.nn.parallel.DistributedDataParallel(
                    model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.global_step = 0

    # ------------------------------------------------------------------ training
    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def loss_scale(self) -> float:
        """Factor to multiply a rank's loss sum by: gradients are averaged over ranks by DDP/ZeRO,
        so a rank's share of a global sum must be multiplied by the world size."""
        return float(self.dist.world_size)

    @contextlib.contextmanager
    def micro_batch(self, last: bool) -> Iterator[None]:
        """Run one micro-batch's forward and backward inside; ``last`` marks the accumulation boundary."""
        if self._ds is not None:
            self._ds.set_gradient_accumulation_boundary(bool(last))
            yield
        elif self._ddp is not None and not last:
            with self._ddp.no_sync():
                yield
        else:
            yield

    def __call__(self, **inputs: Any) -> Any:
        """Forward pass of the (wrapped) model; bf16 autocast for the torch backend on CUDA."""
        if self._ds is not None:
            return self._ds(**inputs)
        model = self._ddp if self._ddp is not None else self.module
        if self.precision == "bf16":
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
                return model(**inputs)
        return model(**inputs)

    def backward(self, loss: torch.Tensor) -> None:
        if self._ds is not None:
            self._ds.backward(loss)
        else:
            loss.backward()

    def step(self) -> float:
        """Optimizer + scheduler step at the accumulation boundary; returns the pre-clip grad norm."""
        if self._ds is not None:
            self._ds.step()
            norm = self._ds.get_global_grad_norm()
            norm = float(norm) if norm is not None else float("nan")
        else:
            params = [p for p in self.module.parameters() if p.requires_grad]
            max_norm = self.cfg.max_grad_norm if self.cfg.max_grad_norm > 0 else float("inf")
            norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.global_step += 1
        return norm

    # ------------------------------------------------------------------ state (see checkpoint.py)
    @property
    def deepspeed_engine(self) -> Any:
        return self._ds

    def optim_state(self) -> dict[str, Any]:
        """Optimizer + scheduler state of the torch backend (DeepSpeed saves its own, partitioned)."""
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "global_step": self.global_step}

    def load_optim_state(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.global_step = int(state["global_step"])

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        """The model's full weights for ``save_pretrained`` (ZeRO-3 gathers them: a collective, every
        rank must call it; only rank 0 gets the dict)."""
        if self._ds is not None and self.cfg.zero_stage == 3:
            return self._ds._zero3_consolidated_16bit_state_dict()
        return self.module.state_dict()
