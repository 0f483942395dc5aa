"""Child processes that must not outlive the process that started them (grading workers, a study's
parallel workers): a daemon thread polls the parent's pid and exits hard once it is gone (the child was
reparented), even mid-computation. Portable (no ``prctl``); notices within ``interval`` seconds."""

from __future__ import annotations

import os
import threading
import time


def _watch(parent_pid: int, interval: float) -> None:
    while True:
        if os.getppid() != parent_pid:
            os._exit(3)
        time.sleep(interval)


def exit_with_parent(interval: float = 1.0, parent_pid: int | None = None) -> None:
    """Start the watcher. ``parent_pid``: the pid the parent gave (``os.getpid()`` there) when it may have
    died before the child got here; default: the current parent."""
    pid = os.getppid() if parent_pid is None else parent_pid
    threading.Thread(target=_watch, args=(pid, interval), daemon=True, name="exit-with-parent").start()
