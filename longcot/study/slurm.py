"""Submit a study's graph to SLURM through submitit: one job per stage run that is not done, each with
``--dependency=afterok:<its upstream jobs>`` (``--kill-on-invalid-dep=yes``: a failed upstream cancels
its downstream), so SLURM schedules the graph and nothing runs twice. The submitting process returns
once everything is submitted.

* A run already ``DONE`` is not submitted; a run whose recorded job (``slurm.json``, see :mod:`longcot.study.records`) is still queued
  or running is not submitted again: its job id serves as the dependency of its downstream.
* Preemption / time limit: the job is a checkpointable callable (``checkpoint`` returns a
  ``DelayedSubmission`` of itself) with ``max_num_timeout`` > 0, so submitit requeues it on USR2; an
  administrator's ``scontrol requeue`` restarts the same pickle. Either way the stage's ``run`` finds
  its own latest checkpoint and resumes; ``DONE`` makes a rerun a no-op.
* Resources: ``cluster.*``, overridden per stage by ``cluster.stages.<stage>.*`` (:class:`StudyResources`).
* Several processes (``nodes`` x ``tasks_per_node`` > 1, sft / rl only): one job over the nodes, srun
  starts one task per GPU on each; the batch script (on the head node) exports ``MASTER_ADDR`` (the
  head node) and ``MASTER_PORT`` (a port free there), from which every task joins the process group
  (:func:`longcot.training.distributed.slurm_rendezvous`). On USR2 only task 0 requeues the job; SLURM
  then stops every task and the requeued job resumes from the run's latest checkpoint on all nodes.
* ``scratch_dir``: a node-local directory (the same path on every node): each task's ``TMPDIR`` and
  compile / JIT caches go under it, per node; outputs always go to the (shared) run directory.
"""

from __future__ import annotations

import getpass
import logging
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from longcot.stages.base import TRAINING_STAGES, Plan
from longcot.study import records
from longcot.study.graph import Graph, Node

log = logging.getLogger(__name__)
ACTIVE = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING", "REQUEUE_HOLD",
          "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "PREEMPTED")


@dataclass
class StudyResources:
    """What one stage run asks SLURM for (``cluster.*``, then ``cluster.stages.<stage>.*``)."""

    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: Optional[int] = None  # None: one per GPU for sft / rl, 1 for the others (vLLM TP / eval)
    cpus_per_task: int = 2
    mem_gb: int = 16
    timeout_min: int = 60
    max_num_timeout: int = 3  # requeues after a time limit / preemption (submitit's USR2 checkpoint)
    setup: list[str] = field(default_factory=list)  # shell lines before the job (modules, conda)
    additional_parameters: dict[str, Any] = field(default_factory=dict)  # any other #SBATCH key
    scratch_dir: Optional[str] = None  # node-local: TMPDIR and caches of each task (never outputs)

    @property
    def processes(self) -> int:
        return self.nodes * (self.tasks_per_node or 1)

    @classmethod
    def of(cls, cluster: Any, stage: str) -> "StudyResources":
        names = {f.name for f in fields(cls)}
        values = {k: cluster[k] for k in names if k in cluster and cluster[k] is not None}
        per_stage = (cluster.get("stages") or {}).get(stage) or {}
        for key in per_stage:
            if key not in names:
                raise ValueError(f"cluster.stages.{stage}.{key}: unknown key; valid: {', '.join(sorted(names))}")
            values[key] = per_stage[key]
        for key in ("setup", "additional_parameters"):
            if key in values and not isinstance(values[key], (list, dict)):
                from omegaconf import OmegaConf

                values[key] = OmegaConf.to_container(values[key], resolve=True)
        res = cls(**values)
        where = f"cluster.stages.{stage}" if ("nodes" in per_stage or "tasks_per_node" in per_stage) else "cluster"
        if res.tasks_per_node is None:
            res.tasks_per_node = max(1, res.gpus_per_node) if stage in TRAINING_STAGES else 1
        if res.processes > 1 and stage not in TRAINING_STAGES:
            raise ValueError(f"{where}: nodes={res.nodes} x tasks_per_node={res.tasks_per_node} for the {stage} stage, "
                             f"which runs as one process (its engine uses the GPUs of one node); only "
                             f"{' / '.join(TRAINING_STAGES)} span several processes: set cluster.stages.{stage}.nodes=1 "
                             f"and cluster.stages.{stage}.tasks_per_node=1")
        return res


class StageJob:
    """The callable a SLURM job runs: the stage's ``run`` on one plan (a no-op when DONE). In a job of
    several tasks every task runs it: they join one process group (sft / rl) through the rendezvous
    the batch script exported."""

    def __init__(self, plan: Plan, scratch_dir: Optional[str] = None) -> None:
        self.plan = plan
        self.scratch_dir = scratch_dir

    def __call__(self) -> str:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        if os.environ.get("SLURM_CPUS_PER_TASK"):  # the CPUs SLURM gave the task, not every core of the node
            import torch

            torch.set_num_threads(int(os.environ["SLURM_CPUS_PER_TASK"]))
        from longcot.study.graph import node_key
        from longcot.study.local import run_node

        p = self.plan
        log.info("stage job %s: %s run %s", node_key(p), p.stage, p.run_dir)
        scratch = {}
        if self.scratch_dir:
            scratch = use_scratch(Path(self.scratch_dir), os.environ.get("SLURM_JOB_ID", "local"),
                                  os.environ.get("SLURM_PROCID", "0"))
            log.info("node-local scratch on %s: TMPDIR=%s", socket.gethostname(), scratch["TMPDIR"])
        try:
            if p.done and not _forced_again(p):
                log.info("%s is DONE: nothing to do", p.run_dir)
                return str(p.run_dir)
            run_node(Node(node_key(p), p, ()))
            return str(p.run_dir)
        finally:
            if scratch:  # this task's own temporary directory (the caches stay for later jobs)
                shutil.rmtree(scratch["TMPDIR"], ignore_errors=True)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Requeue this same job (USR2 on preemption / time limit); the stage resumes from its checkpoint."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(StageJob(self.plan, self.scratch_dir))


SCRATCH_VARS = {"TMPDIR": "tmp-{job}.{task}", "TORCH_EXTENSIONS_DIR": "torch_extensions", "TRITON_CACHE_DIR": "triton"}


def use_scratch(scratch: Path, job_id: str, task: str = "0") -> dict[str, str]:
    """Point this task's temporary files (``TMPDIR``: ``tmp-<job id>.<task>``, its own, removed when the
    task ends) and JIT / kernel caches (DeepSpeed's op builds, Triton; kept for later jobs) at the
    node-local ``scratch/longcot``: each node fills its own; nothing there is an output or read by
    another node."""
    import tempfile

    base = scratch / "longcot"
    out = {var: str(base / sub.format(job=job_id, task=task)) for var, sub in SCRATCH_VARS.items()}
    for path in out.values():
        Path(path).mkdir(parents=True, exist_ok=True)
    os.environ.update(out)
    tempfile.tempdir = None  # re-read TMPDIR
    return out


def _forced_again(plan: Plan) -> bool:
    """``force=true`` redoes a DONE run once: not when its DONE is newer than this job's submission."""
    if not plan.cfg.get("force", False):
        return False
    jobs = records.slurm_jobs(plan)
    submitted = jobs[-1]["submitted_at"] if jobs else 0.0
    return (plan.run_dir / "DONE").stat().st_mtime < submitted


# --------------------------------------------------------------------------- job states
def _run(cmd: list[str]) -> Optional[str]:
    if not shutil.which(cmd[0]):
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def job_states(job_ids: list[str]) -> dict[str, str]:
    """SLURM state of each job id: ``squeue`` (queued / running), else ``sacct`` (accounting), else
    ``scontrol show job`` (finished jobs within MinJobAge); missing ids are unknown."""
    states: dict[str, str] = {}
    if not job_ids:
        return states
    out = _run(["squeue", "-h", "-u", getpass.getuser(), "-o", "%i|%T"])
    for line in (out or "").splitlines():
        jid, _, state = line.strip().partition("|")
        if jid in job_ids:
            states[jid] = state
    missing = [j for j in job_ids if j not in states]
    if missing:
        out = _run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(missing)])
        for line in (out or "").splitlines():
            jid, _, state = line.strip().partition("|")
            if jid in missing and state:
                states[jid] = state.split()[0]
    for jid in [j for j in job_ids if j not in states]:
        out = _run(["scontrol", "show", "job", "-o", jid])
        if out and "JobState=" in out:
            states[jid] = out.split("JobState=")[1].split()[0]
    return states


def result_of(job: dict[str, Any]) -> Optional[str]:
    """``success`` / ``error`` from submitit's result pickle of a finished job, else None."""
    path = Path(job.get("result", ""))
    if not path.is_file():
        return None
    import pickle

    try:
        with path.open("rb") as fh:
            outcome = pickle.load(fh)
        return str(outcome[0])
    except Exception:  # a half-written pickle: treat as unknown
        return None


# --------------------------------------------------------------------------- submission
@dataclass
class Submission:
    """What one launch did: new job ids per run key, runs reused from earlier jobs, runs already done."""

    submitted: dict[str, str] = field(default_factory=dict)
    reused: dict[str, str] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)

    @property
    def job_ids(self) -> dict[str, str]:
        return {**self.reused, **self.submitted}


def _executor(folder: Path, res: StudyResources, name: str, dependency: list[str]) -> Any:
    import submitit

    ex = submitit.SlurmExecutor(folder=str(folder), max_num_timeout=res.max_num_timeout)
    extra = dict(res.additional_parameters)
    if dependency:
        extra["dependency"] = "afterok:" + ":".join(dependency)
        extra["kill-on-invalid-dep"] = "yes"
    params: dict[str, Any] = dict(job_name=name, time=res.timeout_min, nodes=res.nodes, ntasks_per_node=res.tasks_per_node,
                                  cpus_per_task=res.cpus_per_task, mem=f"{res.mem_gb}GB",
                                  setup=list(res.setup) + (rendezvous_lines() if res.processes > 1 else []),
                                  additional_parameters=extra)
    if res.gpus_per_node:
        params["gpus_per_node"] = res.gpus_per_node
    for key in ("partition", "account", "qos"):
        if getattr(res, key):
            params[key] = getattr(res, key)
    ex.update_parameters(**params)
    return ex


def rendezvous_lines(python: str = sys.executable) -> list[str]:
    """Batch-script lines (run on the job's head node, before srun) exporting the process group's
    rendezvous to every task: the head node's name and a port free on it, new at every (re)start."""
    free_port = "import socket; s = socket.socket(); s.bind(('', 0)); print(s.getsockname()[1])"
    return ['export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
            f'export MASTER_PORT="$({shlex.quote(python)} -c {shlex.quote(free_port)})"']


def study_resources(graph: Graph) -> dict[str, StudyResources]:
    """Every run's SLURM resources (``cluster`` and ``cluster.stages.<stage>``); a ValueError names the
    first bad one (e.g. eval on 2 nodes). A config check: it needs no SLURM."""
    return {n.key: StudyResources.of(n.plan.cfg.cluster, n.stage) for n in graph.nodes.values()}


def submit(graph: Graph) -> Submission:
    """Submit every run of ``graph`` that is neither DONE nor queued/running, in dependency order."""
    sub = Submission()
    # every run's resources first: a bad one (e.g. eval on 2 nodes) fails before any job is submitted
    resources = study_resources(graph)
    recorded = {n.key: records.slurm_jobs(n.plan) for n in graph.nodes.values()}
    last_ids = [jobs[-1]["job_id"] for jobs in recorded.values() if jobs]
    states = job_states(last_ids)
    folder = Path(graph.study.output_root).resolve() / "studies" / graph.study.name / "submitit" / "%j"
    for node in graph.ordered():
        plan = node.plan
        if plan.done and not plan.cfg.get("force", False):
            sub.done.append(node.key)
            continue
        jobs = recorded[node.key]
        if jobs and states.get(jobs[-1]["job_id"], "") in ACTIVE:
            sub.reused[node.key] = jobs[-1]["job_id"]
            continue
        deps = [sub.job_ids[u] for u in node.upstream if u in sub.job_ids]
        res = resources[node.key]
        ex = _executor(folder, res, f"{graph.study.name}-{node.key}", deps)
        job = ex.submit(StageJob(plan, res.scratch_dir))
        sub.submitted[node.key] = str(job.job_id)
        paths = job.paths
        records.add_slurm_job(plan, {"job_id": str(job.job_id), "stage": node.stage, "study": graph.study.name,
                                             "points": list(node.points), "dependency": deps,
                                             "stdout": str(paths.stdout), "stderr": str(paths.stderr),
                                             "result": str(paths.result_pickle)})
        log.info("submitted %s run %s as job %s%s", node.stage, plan.run_dir, job.job_id,
                 f" (afterok:{':'.join(deps)})" if deps else "")
    return sub


def wait(graph: Graph, timeout_s: float = 600.0, poll_s: float = 2.0) -> dict[str, str]:
    """Block until no run of ``graph`` has a queued or running job (tests, ``--wait``); return the
    last job's state per run key."""
    t0 = time.monotonic()
    while True:
        last = {n.key: records.slurm_jobs(n.plan) for n in graph.nodes.values()}
        ids = {k: jobs[-1]["job_id"] for k, jobs in last.items() if jobs}
        states = job_states(list(ids.values()))
        now = {k: states.get(j, "UNKNOWN") for k, j in ids.items()}
        if not any(s in ACTIVE for s in now.values()):
            return now
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"study {graph.study.name}: jobs still active after {timeout_s:.0f}s: "
                               + ", ".join(f"{k}={s}" for k, s in now.items() if s in ACTIVE))
        time.sleep(poll_s)
