"""Typed settings of the SFT stage (``sft.*`` of the root config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class SFTConfig:
    """SFT settings. Filled in by the SFT recipe; see longcot/sft/."""

    # Where the training data comes from: "distill" (a distill run planned from this config with
    # model=<teacher>) or "dataset" (a local file / hub dataset id in `dataset`).
    source: str = "distill"
    teacher: Optional[str] = None  # model config name of the distill upstream (source=distill)
    subset: str = "n32"  # a distill selection: "n<N>" or "n<N>/budget-<tokens>"
    dataset: Optional[str] = None  # source=dataset: local .jsonl/.json/.parquet or hub id
    eval_benchmarks: list[str] = field(default_factory=list)
