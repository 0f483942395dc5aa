"""longcot.processes.exit_with_parent: a child whose parent is killed outright exits by itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = "from longcot.processes import exit_with_parent; import time; exit_with_parent(0.05); print('ready', flush=True); time.sleep(60)"
PARENT = (f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', {CHILD!r}]); "
          "print(p.pid, flush=True); time.sleep(60)")


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_child_exits_when_its_parent_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    child = int(parent.stdout.readline())
    assert parent.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    assert _alive(child)  # the watcher does not fire while the parent lives
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(10)
    end = time.monotonic() + 10
    while _alive(child) and time.monotonic() < end:
        time.sleep(0.05)
    assert not _alive(child)
