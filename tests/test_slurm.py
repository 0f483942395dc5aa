"""Fan-out on a real SLURM controller: Hydra multirun + submitit send grid points as SLURM jobs.

Needs a reachable SLURM (``slurm/setup_local_cluster.sh`` starts one on localhost); skips otherwise.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _slurm_up() -> bool:
    if not shutil.which("sbatch") or not shutil.which("sinfo"):
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10)
    except (subprocess.TimeoutExpired, OSError):
        return False
    return out.returncode == 0 and any(s in out.stdout for s in ("idle", "mix", "alloc"))


pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.skipif(not _slurm_up(), reason="no SLURM controller answers (run slurm/setup_local_cluster.sh)")]


def _sweep(out: Path, extra: list[str]) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable, "-m", "longcot", "-m", "cluster=slurm", "cluster.gpus_per_node=0", "cluster.cpus_per_task=1",
        "cluster.mem_gb=2", "cluster.timeout_min=10", "benchmark=toy", "benchmark.limit=3", "benchmark.num_samples=2",
        "generation.max_new_tokens=8", "eval.grader_workers=1", f"output_root={out}", "benchmark.seed=0,1", *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)


def test_multirun_grid_points_run_as_slurm_jobs_and_relaunch_skips(tmp_path: Path) -> None:
    proc = _sweep(tmp_path, [])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summaries = sorted((tmp_path / "eval" / "tiny").glob("toy-*/summary.json"))
    assert len(summaries) == 2  # two grid points, two run identities
    for s in summaries:
        data = json.loads(s.read_text())
        assert data["num_problems"] == 3 and data["samples_per_problem"] == 2
        assert (s.parent / "DONE").is_file()
    job_logs = list((tmp_path / "submitit").rglob("*_log.out"))
    assert job_logs, "no submitit job folders: the grid points did not go through SLURM"
    stamps = {s: s.stat().st_mtime_ns for s in summaries}
    proc = _sweep(tmp_path, [])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {s: s.stat().st_mtime_ns for s in summaries} == stamps  # finished work was skipped
