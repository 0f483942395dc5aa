"""``cluster.local_workers=N``: a local study's independent parts in N processes at once.

A part (:func:`parts`) is a set of runs that reads no run outside it and that no run outside it reads
(a weakly connected component of the stage graph): one seed's distill -> SFT -> RL -> evals, say. Each
part runs in a spawned process of its own, at most N alive at a time, through the sequential runner
(:func:`longcot.study.local.run_local`), its plans sent pickled as a SLURM job gets its plan. This is the
standard library's process start and wait, as ``distill.workers`` runs shards; across machines, SLURM
schedules (``cluster=slurm``).

A worker that dies (killed, out of memory) stops its own part only: the run it was in is recorded
``failed`` with the exit code, the part's later runs are reported not run, and a relaunch resumes them.
Ctrl-C or SIGTERM of the study terminates its workers (and a worker exits within a second if the study's
process is killed outright: :mod:`longcot.processes`); an interrupted run resumes on the next launch.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import threading
from typing import Any

from longcot.processes import exit_with_parent
from longcot.study import records
from longcot.study.graph import Graph
from longcot.study.local import LocalOutcome, run_local, settled

log = logging.getLogger(__name__)


def parts(graph: Graph) -> list[list[str]]:
    """The graph's independent parts, each in dependency order; the parts with most runs still to run
    (not :func:`~longcot.study.local.settled`) first."""
    root = {k: k for k in graph.nodes}

    def find(k: str) -> str:
        while root[k] != k:
            root[k] = root[root[k]]
            k = root[k]
        return k

    for up, down in graph.edges():
        root[find(up)] = find(down)
    groups: dict[str, list[str]] = {}
    for node in graph.ordered():
        groups.setdefault(find(node.key), []).append(node.key)
    todo = {k: sum(not settled(graph.nodes[x]) for x in keys) for k, keys in groups.items()}
    return [groups[k] for k in sorted(groups, key=lambda k: -todo[k])]


def subgraph(graph: Graph, keys: list[str]) -> Graph:
    """The runs ``keys`` of ``graph`` (a part: closed under upstream) as a graph of their own."""
    missing = [k for k in keys if k not in graph.nodes]
    if missing:
        raise ValueError(f"study {graph.study.name}: no run {missing[0]} in its graph")
    want = set(keys)
    return Graph(graph.study, {k: graph.nodes[k] for k in keys},
                 {c: ks for c, ks in graph.cells.items() if set(ks) <= want},
                 {k: v for k, v in graph.changes.items() if k in want})


def _worker(graph: Graph, label: str, conn: Any, parent_pid: int) -> None:
    """A spawned worker: run one part and send its outcome back."""
    exit_with_parent(parent_pid=parent_pid)  # the study's pid, given before this process started
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, force=True,
                        format=f"[%(asctime)s][{label}][%(name)s][%(levelname)s] - %(message)s")
    conn.send(run_local(graph))
    conn.close()


def _died(graph: Graph, keys: list[str], before: set[str], pid: int, exitcode: Any, label: str) -> LocalOutcome:
    """The outcome of a part whose worker (``pid``) died, from the records that worker wrote: the run it
    was in failed (recorded so), a run it finished ran, a run it failed failed, the rest did not run."""
    out = LocalOutcome()
    line = f"its worker process ({label}) died with exit code {exitcode}; a relaunch resumes it"
    for key in keys:
        if key in before:
            continue
        plan = graph.nodes[key].plan
        rec = records.read(plan, records.LOCAL) or {}
        state = rec.get("state") if rec.get("pid") == pid else None
        if state == "done" or (state == "running" and plan.done):
            out.ran.append(key)
        elif state == "failed":
            out.failed[key] = str(rec.get("error") or "failed")
        elif state == "running":
            records.write_local(plan, "failed", line, pid=pid)
            out.failed[key] = line
        else:
            out.skipped.append(key)
    return out


def _outcome(recv: Any) -> LocalOutcome | None:
    """The outcome a worker sent, or None if it sent none (or died mid-message)."""
    try:
        return recv.recv() if recv.poll() else None
    except (EOFError, OSError, pickle.UnpicklingError):
        return None


class Stopped(Exception):
    """SIGTERM of the study while its workers ran (the workers were stopped)."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Stopped(f"stopped by signal {signum}; its workers were stopped, and a relaunch resumes")


def run_parallel(graph: Graph, workers: int) -> LocalOutcome:
    """``graph``'s independent parts, ``workers`` processes at a time (one part left: this process)."""
    import multiprocessing as mp
    from multiprocessing.connection import wait

    before = {n.key for n in graph.ordered() if settled(n)}
    groups = [g for g in parts(graph) if not set(g) <= before]
    if workers <= 1 or len(groups) <= 1:
        return run_local(graph)
    workers = min(workers, len(groups))
    threads = graph.ordered()[0].plan.cfg.get("torch_threads")
    log.info("study %s: %d independent parts to run, %d at a time (cluster.local_workers), torch_threads=%s each",
             graph.study.name, len(groups), workers, threads)
    cores = os.cpu_count() or 1
    if not threads:
        log.warning("study %s: torch_threads is unset, so each of %d workers may use all %d cores; set "
                    "torch_threads=%d", graph.study.name, workers, cores, max(1, cores // workers))
    elif workers * int(threads) > cores:
        log.warning("study %s: %d workers x torch_threads=%s > %d cores: they will slow each other down",
                    graph.study.name, workers, threads, cores)
    out = LocalOutcome(done_before=[k for k in graph.nodes if k in before])
    ctx = mp.get_context("spawn")
    pending = [(f"part {i + 1}/{len(groups)}", g) for i, g in enumerate(groups)]
    running: dict[Any, tuple[Any, Any, list[str], str]] = {}  # pipe -> (process, pipe, keys, label)
    starting: list[Any] = []  # a process between start() and `running`
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    finished = 0
    try:
        while pending or running:
            while pending and len(running) < workers:
                label, keys = pending.pop(0)
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_worker, args=(subgraph(graph, keys), label, send, os.getpid()),
                                   name=f"longcot {label}")
                starting.append(proc)
                proc.start()
                send.close()
                running[recv] = (proc, recv, keys, label)
                starting.clear()
            # a pipe is ready when its worker sent its outcome, or exited (EOF) without sending one
            for recv in wait(list(running)):
                proc, _, keys, label = running.pop(recv)
                got = _outcome(recv)
                recv.close()
                proc.join()
                if got is None:
                    got = _died(graph, keys, before, proc.pid, proc.exitcode, label)
                    log.error("study %s: the worker of %s died with exit code %s; %d runs of it not run (a "
                              "relaunch resumes)", graph.study.name, label, proc.exitcode, len(got.skipped))
                out.ran += got.ran
                out.failed.update(got.failed)
                out.skipped += got.skipped
                finished += 1
                log.info("study %s: %s finished (%d of %d parts): %d ran, %d failed, %d not run", graph.study.name,
                         label, finished, len(groups), len(got.ran), len(got.failed), len(got.skipped))
    except BaseException:  # Ctrl-C, SIGTERM: stop every worker, start no other part
        procs = [*starting, *(v[0] for v in running.values())]
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                proc.terminate()
        for proc in procs:
            if proc.pid is not None:
                proc.join(30)
        raise
    finally:
        if main_thread and previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return out
