"""Child processes that must not outlive the process that started them (grading workers, a study's
parallel workers): a daemon thread polls the parent's pid and exits hard once it is gone (the child was
reparented), even mid-computation. Portable (no ``prctl``); notices within ``interval`` seconds."""

from __future__ import annotations

import os
import threading
import time


def _watch(parent_pid: int, interval: float) -> None:
    while True:
        time.sleep(interval)
        if os.getppid() != parent_pid:
            os._exit(3)


def exit_with_parent(interval: float = 1.0) -> None:
    """Start the watcher for the current parent process."""
    threading.Thread(target=_watch, args=(os.getppid(), interval), daemon=True, name="exit-with-parent").start()
