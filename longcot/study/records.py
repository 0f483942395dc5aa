"""What the study driver records in a stage run's directory (beside the stage's own outputs, which
end with ``DONE``): ``.slurm.json`` (every SLURM job submitted for the run: job id, log paths,
dependencies, time) and ``.local.json`` (the last local attempt: state, error, log path)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

from longcot import runs

SLURM = ".slurm.json"
LOCAL = ".local.json"
LOCAL_LOG = "study-local.log"


def read(run_dir: Path, name: str) -> Optional[dict[str, Any]]:
    path = Path(run_dir) / name
    return runs.read_json(path) if path.is_file() else None


def slurm_jobs(run_dir: Path) -> list[dict[str, Any]]:
    """Every SLURM job submitted for this run, oldest first."""
    return (read(run_dir, SLURM) or {}).get("jobs", [])


def add_slurm_job(run_dir: Path, job: dict[str, Any]) -> None:
    """Append a submitted job to ``.slurm.json`` (written atomically)."""
    jobs = slurm_jobs(run_dir)
    jobs.append({**job, "submitted_at": time.time()})
    runs.write_json(Path(run_dir) / SLURM, {"jobs": jobs})


def write_local(run_dir: Path, state: str, log: Path, error: Optional[str] = None) -> None:
    runs.write_json(Path(run_dir) / LOCAL, {"state": state, "log": str(log), "error": error, "time": time.time()})
