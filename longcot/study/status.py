"""``longcot status +experiment=NAME``: grid points x stages, each cell done / running / interrupted /
pending / failed, then one row per unique stage run with its state, SLURM job id (or ``local``) and log
path; from the ``DONE`` markers, the run directories (a killed run's latest checkpoint), the records of
the study driver (:mod:`longcot.study.records`) and SLURM (``squeue``, ``sacct``, ``scontrol``)."""

from __future__ import annotations

import fcntl
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from longcot.stages.base import LOCK
from longcot.study import records
from longcot.study.graph import Graph
from longcot.study.spec import STAGE_ORDER

STATES = ("done", "running", "interrupted", "pending", "failed")


@dataclass(frozen=True)
class RunState:
    """A stage run's state, its latest SLURM job (if any), its log and (failed) the reason or
    (interrupted) how far it got."""

    state: str
    job_id: Optional[str] = None
    log: Optional[str] = None
    reason: Optional[str] = None


def _locked(run_dir: Path) -> bool:
    """Whether a process holds the run's lock (a local run in progress)."""
    path = run_dir / LOCK
    if not path.is_file():
        return False
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


def progress(run_dir: Path) -> Optional[str]:
    """How far an unfinished run got: its latest checkpoint's step, or that it wrote partial outputs;
    None when it wrote nothing (no directory, or only its config and environment snapshots and lock)."""
    from longcot.stages.base import SNAPSHOTS
    from longcot.training.checkpoint import periodic_checkpoints

    if not run_dir.is_dir():
        return None
    found = periodic_checkpoints(run_dir)
    if found:
        return f"at step {int(found[-1].name.split('-')[1])}, resumes there"
    if {p.name for p in run_dir.iterdir()} - set(SNAPSHOTS):
        return "partial outputs, resumes from them"
    return None


def run_states(graph: Graph) -> dict[str, RunState]:
    """The state of every run of ``graph``."""
    from longcot.study.slurm import ACTIVE, job_states, result_of

    jobs = {k: records.slurm_jobs(n.plan) for k, n in graph.nodes.items()}
    slurm = job_states([j[-1]["job_id"] for j in jobs.values() if j])
    out: dict[str, RunState] = {}
    for key, node in graph.nodes.items():
        run_dir = node.plan.run_dir
        last = jobs[key][-1] if jobs[key] else None
        local = records.read(node.plan, records.LOCAL)
        job_id, log = (last["job_id"], last["stdout"]) if last else (None, local and local.get("log"))
        if node.plan.done:
            out[key] = RunState("done", job_id, log)
            continue
        if _locked(run_dir):  # a process holds the run's lock: in progress
            out[key] = RunState("running", job_id, log)
            continue
        if last is not None:
            state = slurm.get(last["job_id"])
            if state in ACTIVE:
                out[key] = RunState("pending" if state == "PENDING" else "running", job_id, log, state)
                continue
            # not queued or running, and no DONE: the job ended without finishing the run
            outcome = result_of(last)
            why = f"SLURM {state}" if state else "job ended without finishing (no longer known to SLURM)"
            if outcome == "error":
                why = "the stage raised (see the log)"
            elif state == "CANCELLED" and last.get("dependency"):
                why = "cancelled: an upstream job failed"
            out[key] = RunState("failed", job_id, log, why)
            continue
        if local is not None and local.get("state") == "failed":
            out[key] = RunState("failed", job_id, log, local.get("error"))
            continue
        reached = progress(run_dir)
        if reached is not None or (local is not None and local.get("state") == "running"):
            # started and no longer running (killed): it resumes from what it wrote
            out[key] = RunState("interrupted", job_id, log, reached or "nothing written yet")
        else:
            out[key] = RunState("pending", job_id, log)
    return out


def cell_state(graph: Graph, states: dict[str, RunState], keys: list[str]) -> RunState:
    """One table cell (several runs for an eval of several benchmarks): the worst state wins."""
    worst = max((states[k] for k in keys), key=lambda s: ("done", "pending", "interrupted", "running", "failed").index(s.state))
    return worst


def table(graph: Graph) -> tuple[list[str], list[list[str]]]:
    """The status table: one row per grid point, one column per stage of the study."""
    states = run_states(graph)
    stages = [s for s in STAGE_ORDER if any((p.name, s) in graph.cells for p in graph.study.points)]
    rows = []
    for point in graph.study.points:
        row = [point.name]
        for stage in stages:
            keys = graph.cells.get((point.name, stage))
            if not keys:
                row.append("-")
                continue
            st = cell_state(graph, states, keys)
            text = st.state + (f" [job {st.job_id}]" if st.job_id else "")
            if st.state == "interrupted":
                text += f" ({st.reason})"
            elif st.state == "failed":
                text += f" ({st.reason}; log: {st.log})"
            row.append(text)
        rows.append(row)
    return ["point", *stages], rows


def run_table(graph: Graph, states: dict[str, RunState]) -> tuple[list[str], list[list[str]]]:
    """One row per unique stage run: its key, state (and why / how far), job and log."""
    rows = []
    for node in graph.ordered():
        st = states[node.key]
        state = st.state + (f" ({st.reason})" if st.reason and st.state in ("failed", "interrupted") else "")
        job = st.job_id or ("local" if st.log else "-")
        rows.append([node.key, ", ".join(node.points), state, job, st.log or "-"])
    return ["run", "points", "state", "job", "log"], rows


def print_status(graph: Graph) -> dict[str, RunState]:
    """Print the status table and a per-state count of the unique runs; return every run's state."""
    from longcot.stages.base import print_table

    columns, rows = table(graph)
    states = run_states(graph)
    counts = {s: sum(st.state == s for st in states.values()) for s in STATES}
    footer = [f"{len(states)} unique stage runs: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)]
    footer += [f"failed: {graph.nodes[k].stage} {graph.nodes[k].plan.run_dir}: {st.reason} (log: {st.log})"
               for k, st in states.items() if st.state == "failed"]
    print_table(f"longcot study {graph.study.name}: status", columns, rows)
    run_columns, run_rows = run_table(graph, states)  # plain lines: paths stay whole and copyable
    widths = [max(len(r[i]) for r in [run_columns, *run_rows]) for i in range(len(run_columns) - 1)]
    for row in [run_columns, *run_rows]:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)) + "  " + row[-1])
    for line in footer:
        print(line)
    return states
