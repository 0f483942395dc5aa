"""Run a study's graph on this machine, in dependency order: finished runs (``DONE``) are skipped,
partial ones resume inside their run directory (each stage's own resume), a failing run is recorded
(``local.json`` and its log, see :mod:`longcot.study.records`) and every run downstream of it is skipped; the other runs continue.
Several parts at once: :mod:`longcot.study.parallel` (``cluster.local_workers``)."""

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


def settled(node: Node) -> bool:
    """Whether ``node`` is finished and not forced to run again (``force=true``): a run to skip."""
    return node.plan.done and not node.plan.cfg.get("force", False)


def run_local(graph: Graph) -> LocalOutcome:
    """Every run of ``graph`` in dependency order (see the module docstring)."""
    out = LocalOutcome()
    blocked: set[str] = set()
    done = [n for n in graph.ordered() if settled(n)]
    log.info("study %s: %d unique stage runs: %d done, skipped; %d to run", graph.study.name, len(graph.nodes),
             len(done), len(graph.nodes) - len(done))
    for node in graph.ordered():
        plan = node.plan
        if node.key in blocked:
            out.skipped.append(node.key)
            log.warning("skipping %s run %s: an upstream run failed", node.stage, plan.run_dir)
            continue
        if settled(node):
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
