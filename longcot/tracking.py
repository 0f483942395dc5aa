"""Experiment tracking: ``logger=none`` or ``logger=wandb`` (offline unless ``logger.mode=online``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class Tracker:
    """Logs metrics of one run; a no-op for ``logger=none``."""

    def __init__(self, cfg: Any, run_name: str, run_dir: Path, config: dict[str, Any]):
        self._run = None
        if cfg.name == "none":
            return
        if cfg.name != "wandb":
            raise ValueError(f"logger.name={cfg.name!r}; valid: none, wandb")
        from longcot.training.distributed import detect

        if not detect().is_main:  # one wandb run per training job: rank 0 logs
            return
        import wandb

        run_dir.mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            mode=cfg.mode,
            name=run_name,
            dir=str(run_dir),
            config=config,
            tags=list(cfg.tags),
            reinit="finish_previous",
        )

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if self._run is not None:
            self._run.log(metrics, step=step)

    def summary(self, metrics: dict[str, Any]) -> None:
        if self._run is not None:
            self._run.summary.update(metrics)

    def finish(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None
