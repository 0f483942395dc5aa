"""Learning-rate schedule: linear warmup, then cosine decay to ``min_lr_ratio`` x peak.

The multiplier at optimizer step ``s`` (0-based: the lr used by the ``s``-th update) is
``s / W`` for ``s < W`` and ``r + (1 - r) * 0.5 * (1 + cos(pi * (s - W) / (T - W)))`` after, with
``W`` warmup steps, ``T`` total steps and ``r = min_lr_ratio`` -- transformers'
``get_cosine_with_min_lr_schedule_with_warmup`` (used here, not re-implemented). The first update
therefore runs at lr 0 when ``W > 0`` (as in transformers / OpenRLHF's ``cosine_with_min_lr``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    """Warmup length in optimizer steps: ``ceil(warmup_ratio * total_steps)``."""
    if not 0.0 <= warmup_ratio < 1.0:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
    return int(math.ceil(warmup_ratio * total_steps))


def build_scheduler(
    optimizer: "torch.optim.Optimizer", *, total_steps: int, warmup_ratio: float, min_lr_ratio: float = 0.0
) -> "torch.optim.lr_scheduler.LambdaLR":
    """A ``LambdaLR`` stepping once per optimizer step (warmup then cosine, see the module doc)."""
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
    return get_cosine_with_min_lr_schedule_with_warmup(
        optimizer,
        num_warmup_steps=warmup_steps(total_steps, warmup_ratio),
        num_training_steps=total_steps,
        min_lr_rate=min_lr_ratio,
    )
