"""Run a stage the way the CLI does (plan, then run) and return what tests inspect."""

from __future__ import annotations

from typing import Any

from longcot.config.validate import validate
from longcot.stages import execute


def run_stage(cfg: Any) -> list[Any]:
    """What the CLI does: validate the config, plan every unit of work, run them."""
    validate(cfg)
    return execute(cfg)


def distill_run(cfg: Any) -> dict[str, Any]:
    """The distill manifest (with ``dir``), or ``{"dir", "pending_shards"}`` while shards are pending."""
    [result] = run_stage(cfg)
    return result.summary


def eval_run(cfg: Any) -> dict[str, dict[str, Any]]:
    """``{benchmark: summary}`` of every benchmark of the run."""
    return {a.summary["benchmark"]: a.summary for a in run_stage(cfg)}
