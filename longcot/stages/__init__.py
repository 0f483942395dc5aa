"""Stages a run can execute (``stage=NAME``), one module each, on the protocol of
:mod:`longcot.stages.base`: ``plan(cfg, upstream) -> Plan``, ``run(plan) -> Artifacts``,
``artifacts(run_dir) -> Artifacts``; optionally ``expand(cfg)`` (one config per unit of work, e.g.
one per benchmark) and ``report(plans, artifacts)`` (the result table).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Sequence

from longcot.config.schema import STAGE_NAMES
from longcot.stages.base import Artifacts, Plan

STAGES = {name: f"longcot.stages.{name}" for name in STAGE_NAMES}  # the config layer owns the names


def stage_module(name: str) -> ModuleType:
    if name not in STAGES:
        raise ValueError(f"stage.name={name!r}; valid: {', '.join(STAGES)}")
    return importlib.import_module(STAGES[name])


def plan_all(cfg: Any, upstream: Sequence[Plan] = ()) -> list[Plan]:
    """Every plan of ``cfg``'s stage (validation, identity, run directory; nothing is written)."""
    from longcot.stages.base import TRAINING_STAGES
    from longcot.training.distributed import detect

    info = detect()
    if info.distributed and cfg.stage.name not in TRAINING_STAGES:  # N copies of one run would race
        raise ValueError(f"stage={cfg.stage.name} runs as one process, but this is process {info.rank} of "
                         f"{info.world_size} ({info.launcher}); only {' / '.join(TRAINING_STAGES)} span several: "
                         "launch it once (cluster.nodes=1, one task)")
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


def plan_follow_ups(plans: Sequence[Plan]) -> list[Plan]:
    """The eval runs that training runs ask for (``<stage>.eval_benchmarks``): each its own planned run
    of the final checkpoint (:func:`longcot.stages.eval.plan_after_training`), done / resumed like any."""
    from longcot.stages.base import TRAINING_STAGES
    from longcot.stages.eval import plan_after_training

    out: list[Plan] = []
    for p in plans:
        if p.stage in TRAINING_STAGES and p.cfg[p.stage].get("eval_benchmarks"):
            out += plan_after_training(p, list(p.cfg[p.stage].eval_benchmarks))
    return out


def run_follow_ups(plans: Sequence[Plan]) -> list[Artifacts]:
    """Run the evaluations of :func:`plan_follow_ups` after training: on rank 0 only, after every rank
    has left the process group (the evaluation builds its own engines)."""
    if not plans:
        return []
    from longcot.training.distributed import detect, shutdown

    if detect().distributed:
        shutdown()
    if not detect().is_main:
        return []
    return run_all(plans)


def execute(cfg: Any, upstream: Sequence[Plan] = ()) -> list[Artifacts]:
    """Plan and run ``cfg``'s stage (and the evaluations its training runs ask for)."""
    plans = plan_all(cfg, upstream)
    follow = plan_follow_ups(plans)
    results = run_all(plans)
    run_follow_ups(follow)
    return results


__all__ = ["Artifacts", "Plan", "STAGES", "execute", "plan_all", "plan_follow_ups", "run_all", "run_follow_ups",
           "stage_module"]
