"""A pool of killable grading worker processes with a hard per-answer timeout.

Why plain subprocesses (`python -m longcot.grading.worker`, JSON lines over pipes) rather than
`multiprocessing`: `fork` is unsafe once torch/vLLM threads exist in the caller, and both `spawn`
and `forkserver` re-import the caller's `__main__` (in the eval stage: torch, vLLM) into the
workers. A subprocess is started by fork+exec (thread-safe), imports only math-verify, exchanges
data (never pickles), needs no signals (so the pool works from any thread), and can be killed with
SIGKILL and reaped with `wait()` at any moment. Workers are kept alive between answers and
batches; only a worker that overruns its deadline (or crashes) is killed and replaced, and that
answer is judged False and counted as a timeout (or error).
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, replace
from multiprocessing.connection import wait as _wait_fds
from pathlib import Path
from typing import Literal, Sequence

__all__ = ["DEFAULT_TIMEOUT", "GradeStats", "GraderPool", "default_pool", "grading_stats", "shutdown_default_pool"]

DEFAULT_TIMEOUT = 5.0  # seconds per (gold, prediction) pair, measured from dispatch to a ready worker
STARTUP_TIMEOUT = 60.0  # seconds for a fresh worker to import math-verify and report ready
DEFAULT_MEMORY_MB = 2048  # address-space cap per worker (RLIMIT_AS), so one answer cannot eat the host

Status = Literal["ok", "timeout", "error"]
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the directory that contains `longcot/`


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class GradeStats:
    """Cumulative counters of one pool (a snapshot is returned by `GraderPool.stats`)."""

    fast_path: int = 0  # pairs settled in-process by the string fast path (never reach a worker)
    screened: int = 0  # pairs judged False in-process by the pathological-answer screen
    dispatched: int = 0  # pairs sent to a worker
    timeouts: int = 0  # pairs whose worker overran the deadline (judged False; worker killed)
    errors: int = 0  # pairs that raised inside math-verify or whose worker died (judged False)
    restarts: int = 0  # workers started to replace a killed or dead one


class _Worker:
    """One worker subprocess and its protocol state."""

    def __init__(self, memory_mb: int) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        cmd = [sys.executable, "-m", "longcot.grading.worker", "--memory-mb", str(memory_mb)]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            env=env,
            close_fds=True,
            start_new_session=True,  # terminal Ctrl-C goes to the caller, which then closes us
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.started = time.monotonic()
        self.ready = False
        self.task: tuple[int, float] | None = None  # (index in the batch, deadline)
        self._buf = b""

    def send(self, index: int, gold: str, pred: str, deadline: float) -> None:
        data = memoryview((json.dumps({"id": index, "gold": gold, "pred": pred}) + "\n").encode())
        stdin = self.proc.stdin
        assert stdin is not None
        while data:  # an idle worker is blocked reading, so this cannot stall
            data = data[stdin.write(data) :]
        self.task = (index, deadline)

    def read(self) -> list[dict] | None:
        """Complete messages available now; None once the worker's stdout is closed (it died)."""
        try:
            chunk = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return []
        if not chunk:
            return None
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def kill(self) -> None:
        """SIGKILL and reap (no zombie); closing our pipe ends."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()  # type: ignore[union-attr]
            except OSError:
                pass

    def close_stdin(self) -> None:
        """EOF on the worker's stdin: an idle worker exits by itself."""
        try:
            self.proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass

    def forget(self) -> None:
        """In a forked child: drop our copies of the pipes without touching the parent's worker."""
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()  # type: ignore[union-attr]
            except OSError:
                pass
        self.proc.returncode = 0  # so that Popen never tries to reap a process that is not ours


def _close_all(workers: list[_Worker], grace: float = 1.0) -> None:
    """Let idle workers exit on EOF, then kill whatever is still running after `grace` seconds."""
    for w in workers:
        w.close_stdin()
    deadline = time.monotonic() + grace
    for w in workers:
        try:
            w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        w.kill()
    workers.clear()


class GraderPool:
    """Killable math-verify worker processes; thread-safe (one batch runs at a time per pool).

    `run(pairs, timeout)` grades `(gold, prediction)` pairs with `longcot.grading.equivalence`'s
    worker-side check and returns `(verdict, status)` per pair, status in {"ok", "timeout",
    "error"}; a timed-out or failed pair has verdict False. Workers start lazily (at most one per
    pending pair), stay alive between batches, and are closed by `close()`, by the context
    manager, at garbage collection, or at interpreter exit. A forked child process does not
    inherit the workers (it starts its own on first use).
    """

    def __init__(self, workers: int | None = None, *, memory_mb: int = DEFAULT_MEMORY_MB) -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.size = workers or _cpu_count()
        self.memory_mb = memory_mb
        self._workers: list[_Worker] = []
        self._stats = GradeStats()
        self._lock = threading.Lock()
        self._closed = False
        self._finalizer = weakref.finalize(self, _close_all, self._workers)
        _POOLS.add(self)

    def _after_fork_in_child(self) -> None:
        # The workers belong to the parent process; a forked child starts its own when needed.
        self._lock = threading.Lock()
        for w in self._workers:
            w.forget()
        self._workers.clear()

    # ------------------------------------------------------------------ public

    @property
    def stats(self) -> GradeStats:
        """A snapshot of this pool's cumulative counters."""
        with self._lock:
            return replace(self._stats)

    def worker_pids(self) -> list[int]:
        """PIDs of the live workers (for monitoring and tests)."""
        with self._lock:
            return [w.proc.pid for w in self._workers]

    def resize(self, workers: int) -> None:
        """Change the maximum number of workers (extra idle workers are closed)."""
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        with self._lock:
            self.size = workers
            if len(self._workers) > workers:
                extra = self._workers[workers:]
                del self._workers[workers:]
                _close_all(extra)

    def record_fast_path(self, count: int) -> None:
        with self._lock:
            self._stats.fast_path += count

    def record_screened(self, count: int) -> None:
        with self._lock:
            self._stats.screened += count

    def run(self, pairs: Sequence[tuple[str, str]], timeout: float = DEFAULT_TIMEOUT) -> list[tuple[bool, Status]]:
        """Grade string pairs in the workers under a hard per-pair `timeout` (seconds)."""
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if not pairs:
            return []
        with self._lock:
            if self._closed:
                raise RuntimeError("GraderPool is closed")
            try:
                return self._run(pairs, timeout)
            except BaseException:
                # Results still in flight would be read by the next batch: drop those workers.
                for w in [w for w in self._workers if w.task is not None or not w.ready]:
                    w.kill()
                    self._workers.remove(w)
                raise

    def close(self) -> None:
        """Stop all workers (idempotent)."""
        with self._lock:
            self._closed = True
            _close_all(self._workers)

    def __enter__(self) -> GraderPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _start_worker(self) -> _Worker:
        w = _Worker(self.memory_mb)
        self._workers.append(w)
        return w

    def _replace(self, w: _Worker) -> _Worker:
        w.kill()
        self._workers.remove(w)
        self._stats.restarts += 1
        return self._start_worker()

    def _run(self, pairs: Sequence[tuple[str, str]], timeout: float) -> list[tuple[bool, Status]]:
        results: list[tuple[bool, Status]] = [(False, "error")] * len(pairs)
        queue = _GoldRuns(pairs)
        while len(self._workers) < min(self.size, len(pairs)):
            self._start_worker()
        startup_failures = 0
        while queue or any(w.task is not None for w in self._workers):
            for w in list(self._workers):  # dispatch to idle, ready workers
                if queue and w.ready and w.task is None:
                    i = queue.take(w)
                    try:
                        w.send(i, pairs[i][0], pairs[i][1], time.monotonic() + timeout)
                        self._stats.dispatched += 1
                    except OSError:  # it died while idle: retry the pair on a fresh worker
                        queue.give_back(i)
                        queue.transfer(w, self._replace(w))
            deadlines = [w.task[1] for w in self._workers if w.task is not None]
            deadlines += [w.started + STARTUP_TIMEOUT for w in self._workers if not w.ready]
            wait_s = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            readable = set(_wait_fds([w.fd for w in self._workers], wait_s))
            for w in [w for w in self._workers if w.fd in readable]:
                messages = w.read()
                if messages is None:  # the worker died
                    if w.task is not None:
                        results[w.task[0]] = (False, "error")
                        self._stats.errors += 1
                    elif not w.ready:
                        startup_failures += 1
                        if startup_failures > 3:
                            code = w.proc.wait()
                            raise RuntimeError(
                                f"grading workers keep dying during startup (last exit code {code}); "
                                f"run `{sys.executable} -m longcot.grading.worker` to see the error"
                            )
                    queue.transfer(w, self._replace(w))
                    continue
                for msg in messages:
                    if msg.get("ready"):
                        w.ready = True
                    elif w.task is not None and msg.get("id") == w.task[0]:
                        results[w.task[0]] = (bool(msg["ok"]), "ok" if msg.get("error") is None else "error")
                        self._stats.errors += msg.get("error") is not None
                        w.task = None
            now = time.monotonic()
            for w in list(self._workers):
                if w.task is not None and now >= w.task[1]:
                    results[w.task[0]] = (False, "timeout")
                    self._stats.timeouts += 1
                    queue.transfer(w, self._replace(w))
                elif not w.ready and now - w.started > STARTUP_TIMEOUT:
                    w.kill()
                    self._workers.remove(w)
                    raise RuntimeError(f"a grading worker did not start within {STARTUP_TIMEOUT:.0f} s")
        return results


class _GoldRuns:
    """Pending pair indices, grouped into runs that share a gold answer.

    A worker keeps taking pairs from its run, so a gold answer graded against many samples is
    parsed (and its sympy caches warmed) in one process instead of in all of them. A worker
    without a run claims the next unclaimed one, and once none is left steals from the end of the
    longest run, so the load stays balanced.
    """

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        runs: dict[str, deque[int]] = {}
        for i, (gold, _pred) in enumerate(pairs):
            runs.setdefault(gold, deque()).append(i)
        self._unclaimed = deque(runs.values())
        self._owned: dict[_Worker, deque[int]] = {}
        self._retry: deque[int] = deque()
        self._left = len(pairs)

    def __bool__(self) -> bool:
        return self._left > 0

    def take(self, w: _Worker) -> int:
        self._left -= 1
        if self._retry:
            return self._retry.popleft()
        run = self._owned.get(w)
        if run:
            return run.popleft()
        if self._unclaimed:
            run = self._owned[w] = self._unclaimed.popleft()
            return run.popleft()
        return max(self._owned.values(), key=len).pop()

    def give_back(self, index: int) -> None:
        self._retry.append(index)
        self._left += 1

    def transfer(self, old: _Worker, new: _Worker) -> None:
        """A replaced worker's run goes to its replacement."""
        run = self._owned.pop(old, None)
        if run is not None:
            self._owned[new] = run


# ---------------------------------------------------------------------- the shared default pool

_default: GraderPool | None = None
_default_lock = threading.Lock()
_POOLS: weakref.WeakSet[GraderPool] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _default_lock
    _default_lock = threading.Lock()
    for pool in list(_POOLS):
        pool._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


def default_pool(workers: int | None = None) -> GraderPool:
    """The lazily created module-level pool (closed at exit); `workers` resizes it when given."""
    global _default
    with _default_lock:
        if _default is None or _default._closed:
            _default = GraderPool(workers)
        elif workers is not None and workers != _default.size:
            _default.resize(workers)
        return _default


def grading_stats() -> GradeStats:
    """Counters of the default pool (all zero if it was never started)."""
    with _default_lock:
        return _default.stats if _default is not None else GradeStats()


def shutdown_default_pool() -> None:
    """Close the default pool's workers; a later call to the graders starts a new one."""
    global _default
    with _default_lock:
        if _default is not None:
            _default.close()
            _default = None


atexit.register(shutdown_default_pool)
