"""Launching the multi-process tests' subprocesses: a free port, ``torchrun``, an environment without
an outer job's rank variables, and a run that must succeed (its output's tail is the failure message)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(n: int = 2) -> list[str]:
    """The command prefix of an ``n``-process ``torch.distributed.run`` job on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}", f"--master_port={free_port()}"]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without RANK / WORLD_SIZE / LOCAL_RANK, one torch thread, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def run_ok(cmd: list[str], env: dict[str, str], timeout: int = 900) -> str:
    """Run ``cmd``; fail the test with the tail of its output unless it exits 0. Returns stdout."""
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout
