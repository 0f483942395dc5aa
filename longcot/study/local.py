"""Run a study's graph on this machine, in dependency order: finished runs (``DONE``) are skipped,
partial ones resume inside their run directory (each stage's own resume), a failing run is recorded
(``local.json`` and its log, see :mod:`longcot.study.records`) and every run downstream of it is skipped; the other runs continue.

``cluster.local_workers=N`` runs the graph's independent parts (:func:`parts`: runs linked by no
upstream, e.g. the seeds of a study) in N spawned processes at once (the standard library's
``ProcessPoolExecutor``, as ``distill.workers`` does for shards); inside a part, runs go in order."""

from __future__ import annotations

import logging
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from longcot.study import records
from longcot.study.graph import Graph, Node

log = logging.getLogger(__name__)


@dataclass
class LocalOutcome:
    """Keys of the runs that were already done, ran now, failed, or were skipped (failed upstream)."""

    done_before: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # key -> error line
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped


@contextmanager
def log_to(path: Path) -> Iterator[None]:
    """Copy every log record of the block into ``path`` (the run's log, named by ``status``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


def run_node(node: Node) -> None:
    """Run one stage run in this process (its stage's ``run``: skip if done, else resume/run)."""
    from longcot.stages import stage_module

    result = stage_module(node.stage).run(node.plan)
    if not result.done:
        raise RuntimeError(f"{node.stage} run {node.plan.run_dir} returned without finishing (no DONE)")


def parts(graph: Graph) -> list[list[str]]:
    """The graph's independent parts: its runs grouped so that no run reads one of another group
    (weakly connected components), each in dependency order; the parts with most runs still to run first."""
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
    todo = {k: sum(not graph.nodes[x].plan.done for x in keys) for k, keys in groups.items()}
    return [groups[k] for k in sorted(groups, key=lambda k: -todo[k])]


def subgraph(graph: Graph, keys: list[str]) -> Graph:
    """The runs ``keys`` of ``graph`` (a part: closed under upstream) as a graph of their own."""
    missing = [k for k in keys if k not in graph.nodes]
    if missing:
        raise RuntimeError(f"study {graph.study.name}: run {missing[0]} is not in the study as planned again in a "
                           "worker process (did a config file change while it ran?)")
    want = set(keys)
    cells = {c: ks for c, ks in graph.cells.items() if set(ks) <= want}
    return Graph(graph.study, {k: graph.nodes[k] for k in keys}, cells,
                 {k: v for k, v in graph.changes.items() if k in want})


def _run_part(overrides: list[str], keys: list[str], label: str) -> LocalOutcome:
    """In a spawned worker: plan the study again from its command line, run the part ``keys``."""
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, force=True,
                        format=f"[%(asctime)s][{label}][%(name)s][%(levelname)s] - %(message)s")
    from longcot.study.graph import build_graph
    from longcot.study.spec import load_study

    return run_local(subgraph(build_graph(load_study(overrides)), keys))


def run_parallel(graph: Graph, workers: int) -> LocalOutcome:
    """``graph``'s independent parts in ``workers`` processes at once (one part: this process)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    groups = [g for g in parts(graph) if not all(graph.nodes[k].plan.done for k in g)]
    done = [n.key for n in graph.ordered() if n.plan.done]
    if workers <= 1 or len(groups) <= 1:
        return run_local(graph)
    workers = min(workers, len(groups))
    log.info("study %s: %d independent parts to run, %d at a time (cluster.local_workers); torch_threads=%s in each",
             graph.study.name, len(groups), workers, graph.ordered()[0].plan.cfg.get("torch_threads"))
    out = LocalOutcome(done_before=done)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(_run_part, list(graph.study.overrides), g, f"part {i + 1}/{len(groups)}"): g
                   for i, g in enumerate(groups)}
        for fut in as_completed(futures):
            try:
                got = fut.result()
            except Exception as exc:  # the worker itself died (not a run: run_local records those)
                line = " ".join(str(exc).split()) or type(exc).__name__
                log.error("study %s: a worker process failed: %s", graph.study.name, line)
                todo = [k for k in futures[fut] if not graph.nodes[k].plan.done]
                out.failed.update({k: line for k in todo[:1]})
                out.skipped += todo[1:]
                continue
            out.ran += got.ran
            out.failed.update(got.failed)
            out.skipped += got.skipped
    return out


def run_local(graph: Graph) -> LocalOutcome:
    """Every run of ``graph`` in dependency order (see the module docstring)."""
    out = LocalOutcome()
    blocked: set[str] = set()
    done = [n for n in graph.ordered() if n.plan.done and not n.plan.cfg.get("force", False)]
    log.info("study %s: %d unique stage runs: %d done, skipped; %d to run", graph.study.name, len(graph.nodes),
             len(done), len(graph.nodes) - len(done))
    for node in graph.ordered():
        plan = node.plan
        force = bool(plan.cfg.get("force", False))
        if node.key in blocked:
            out.skipped.append(node.key)
            log.warning("skipping %s run %s: an upstream run failed", node.stage, plan.run_dir)
            continue
        if plan.done and not force:
            out.done_before.append(node.key)
            continue
        log_path = records.local_log(plan)
        log.info("study %s: %s run %s (points: %s)", graph.study.name, node.stage, plan.run_dir, ", ".join(node.points))
        try:
            with log_to(log_path):
                records.write_local(plan, "running")
                run_node(node)
        except Exception as exc:  # a failing run must not stop the others
            line = " ".join(str(exc).split()) or type(exc).__name__
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write(traceback.format_exc())
            records.write_local(plan, "failed", f"{type(exc).__name__}: {line}")
            log.error("study %s: %s run %s failed: %s (log: %s)", graph.study.name, node.stage, plan.run_dir, line, log_path)
            out.failed[node.key] = line
            blocked |= graph.downstream(node.key)
            continue
        records.write_local(plan, "done")
        out.ran.append(node.key)
    return out
