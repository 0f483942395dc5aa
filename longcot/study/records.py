"""What the study driver records about a stage run, beside (not inside) its run directory: a stage
owns its run directory (distill rebuilds its selection directory, for one), so the records live in
``<output_root>/jobs/<stage>/<run id>/``, keyed by the run's identity like the run itself (shared by
every study that contains the run):

* ``slurm.json``: every SLURM job submitted for the run (job id, log paths, dependencies, time);
* ``local.json``: the last local attempt (state, error, log path); ``local.log`` its log.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional

from longcot import runs
from longcot.stages.base import Plan

SLURM = "slurm.json"
LOCAL = "local.json"
LOCAL_LOG = "local.log"


def location(plan: Plan) -> Path:
    """``<output_root>/jobs/<stage>/<run id>``: where the driver's records of ``plan`` go."""
    return Path(plan.cfg.output_root) / "jobs" / plan.stage / plan.run_id


def read(plan: Plan, name: str) -> Optional[dict[str, Any]]:
    path = location(plan) / name
    return runs.read_json(path) if path.is_file() else None


def slurm_jobs(plan: Plan) -> list[dict[str, Any]]:
    """Every SLURM job submitted for this run, oldest first."""
    return (read(plan, SLURM) or {}).get("jobs", [])


def add_slurm_job(plan: Plan, job: dict[str, Any]) -> None:
    """Append a submitted job to ``slurm.json`` (written atomically)."""
    jobs = slurm_jobs(plan)
    jobs.append({**job, "run_dir": str(plan.run_dir), "submitted_at": time.time()})
    runs.write_json(location(plan) / SLURM, {"jobs": jobs})


def local_log(plan: Plan) -> Path:
    return location(plan) / LOCAL_LOG


def write_local(plan: Plan, state: str, error: Optional[str] = None, pid: Optional[int] = None) -> None:
    """Record a local run's state; ``pid``: the process that ran it (default: this one)."""
    runs.write_json(location(plan) / LOCAL, {"state": state, "log": str(local_log(plan)), "error": error,
                                             "run_dir": str(plan.run_dir), "time": time.time(),
                                             "pid": os.getpid() if pid is None else pid})
