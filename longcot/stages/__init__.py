"""Stages a run can execute (``stage=NAME``), one module each, on the protocol of
:mod:`longcot.stages.base`: ``plan(cfg, upstream) -> Plan``, ``run(plan) -> Artifacts``,
``artifacts(run_dir) -> Artifacts``; optionally ``expand(cfg)`` (one config per unit of work, e.g.
one per benchmark) and ``report(plans, artifacts)`` (the result table).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Sequence

from longcot.stages.base import Artifacts, Plan

STAGES = {"eval": "longcot.stages.eval", "distill": "longcot.stages.distill", "sft": "longcot.stages.sft",
          "rl": "longcot.stages.rl"}


def stage_module(name: str) -> ModuleType:
    if name not in STAGES:
        raise ValueError(f"stage.name={name!r}; valid: {', '.join(STAGES)}")
    return importlib.import_module(STAGES[name])


def plan_all(cfg: Any, upstream: Sequence[Plan] = ()) -> list[Plan]:
    """Every plan of ``cfg``'s stage (validation, identity, run directory; nothing is written)."""
    module = stage_module(cfg.stage.name)
    expand = getattr(module, "expand", lambda c: [c])
    return [module.plan(c, upstream) for c in expand(cfg)]


def run_all(plans: Sequence[Plan]) -> list[Artifacts]:
    """Run the plans of one stage in order, then print its table (unless ``<stage>.print_table=false``)."""
    if not plans:
        return []
    module = stage_module(plans[0].stage)
    results = [module.run(p) for p in plans]
    cfg = plans[0].cfg
    section = cfg.get(cfg.stage.name)
    from longcot.training.distributed import detect

    if not detect().is_main:  # the other processes of a multi-process training job stay quiet
        return results
    if hasattr(module, "report") and (section is None or section.get("print_table", True)):
        done = [(p, a) for p, a in zip(plans, results) if a.done]
        if done:
            module.report([p for p, _ in done], [a for _, a in done])
    return results


def execute(cfg: Any, upstream: Sequence[Plan] = ()) -> list[Artifacts]:
    """Plan and run ``cfg``'s stage."""
    return run_all(plan_all(cfg, upstream))


__all__ = ["Artifacts", "Plan", "STAGES", "execute", "plan_all", "run_all", "stage_module"]
