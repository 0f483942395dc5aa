"""Jobs over two SLURM nodes (``slurm/setup_two_node_cluster.sh``: two slurmd nodes, each in its own
network namespace with its own address and its own node-local scratch; skipped when no two-node
cluster answers). One task per node, the rendezvous from the allocation (the head node, a port free
there), ranks from ``SLURM_PROCID`` / ``SLURM_LOCALID`` / ``SLURM_NODEID``:

* a study's SFT on ``cluster.stages.sft.nodes=2`` trains like one process (losses, weights), while its
  distillation runs on one node; each node writes its part of every checkpoint into the shared run
  directory and its temporary files / model cache into its own scratch;
* a run directory that is node-local (not shared) is refused with one line naming the blind node;
* ``scancel --signal=USR2`` of a running 2-node SFT job requeues it; it resumes on both nodes to the
  uninterrupted single-process losses;
* RL (torch DDP, and DeepSpeed ZeRO-2 where installed) over 2 srun-launched nodes equals 1 process;
* 2 nodes x 2 tasks: every task's global / local / node rank and per-node count, one group;
* a plain stage run (Hydra's submitit launcher) with ``cluster.nodes=2`` trains over both nodes;
* without SLURM: two ``torchrun --nnodes=2`` agents, one per node namespace, equal 1 process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from longcot import runs
from longcot.study import records
from longcot.study.graph import build_graph
from longcot.study.local import run_local
from longcot.study.slurm import rendezvous_lines, submit, wait
from longcot.study.spec import load_study
from longcot.training.checkpoint import latest_checkpoint
from tests.launch import clean_env, run_ok

NODES = ("lcnode1", "lcnode2")
SCRATCH = "/var/tmp/longcot-scratch"  # node-local inside the nodes (bind-mounted per node)
NODE_SCRATCH = Path("/var/lib/longcot-cluster/{node}/scratch")  # where each node's scratch lives on this machine


def _two_nodes_up() -> bool:
    if not shutil.which("sbatch") or not shutil.which("sinfo"):
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True, timeout=10)
    except (subprocess.TimeoutExpired, OSError):
        return False
    up = {line.split()[0] for line in out.stdout.splitlines() if line.split()[1:2] and
          line.split()[1].rstrip("*~#") in ("idle", "mix", "alloc", "mixed", "allocated")}
    return out.returncode == 0 and set(NODES) <= up


pytestmark = [pytest.mark.slurm, pytest.mark.multinode, pytest.mark.slow,
              pytest.mark.skipif(not _two_nodes_up(), reason="no two-node SLURM cluster (run slurm/setup_two_node_cluster.sh)")]
CLUSTER = ["cluster=slurm", "cluster.cpus_per_task=1", "cluster.mem_gb=2", "cluster.timeout_min=20", "cluster.gpus_per_node=0"]
TWO_NODE_SFT = "+cluster.stages.sft={nodes: 2, tasks_per_node: 1, mem_gb: 3, scratch_dir: " + SCRATCH + "}"


def _scontrol(job_id: str) -> str:
    return subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30).stdout


def _logs(job: dict) -> str:
    """stdout + stderr of every task of a submitit job (``<id>_<task>_log.err``)."""
    folder = Path(job["stderr"]).parent
    return "\n".join(p.read_text() for p in sorted(folder.glob("*_log.*")))


STUDY = """# @package _global_
defaults:
  - override /scale: full
  - override /data: toy
  - override /benchmark: toy
study:
  name: mn
  base: ["data.toy_size=40", "distill.n=2", "distill.max_new_tokens=512", "distill.temperature=1.0", "distill.top_p=0.95",
         "sft.teacher=synthetic-long", "sft.teacher_generation=synthetic", "logger=none"]
  stages:
    distill: ["generation=synthetic", "model=synthetic-long"]
    sft: ["sft.global_batch_sequences=8", "sft.max_length=384", "sft.max_tokens_per_micro_batch=1536",
          "sft.learning_rate=3.0e-3", "sft.warmup_ratio=0.0", "sft.epochs=8", "sft.max_steps={steps}", "sft.save_every_steps=1"]
  points:
    - name: n2
      distill: []
      sft: ["sft.subset=n2"]
"""


def _sft_graph(root: Path, steps: int, cluster: list[str]):
    """A study of one point (distill -> SFT of the tiny model on 2 x 40 toy problems): its graph and SFT node."""
    conf = root / "conf" / "experiment"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "mn.yaml").write_text(STUDY.format(steps=steps))
    overrides = [f"hydra.searchpath=[file://{conf.parent}]", "+experiment=mn", f"output_root={root / 'runs'}"]
    graph = build_graph(load_study(overrides + cluster))
    sft = graph.nodes[graph.cells[("n2", "sft")][0]]
    for key in list(graph.nodes):
        if key not in (sft.key, *sft.upstream):
            del graph.nodes[key]
    return graph, sft


def _reference(tmp: Path, steps: int) -> tuple[str, list, Path]:
    """The same SFT uninterrupted in this process: (its key, its metrics, its run dir)."""
    graph, sft = _sft_graph(tmp, steps, [])
    assert run_local(graph).ok
    return sft.key, runs.read_jsonl(sft.plan.run_dir / "metrics.jsonl"), sft.plan.run_dir


def _assert_same_losses(metrics: list, reference: list, steps: int) -> None:
    assert [m["step"] for m in metrics] == [m["step"] for m in reference] == list(range(1, steps + 1))
    for got, want in zip(metrics, reference):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5, abs=1e-7)
        assert got["grad_norm"] == pytest.approx(want["grad_norm"], rel=1e-4)


def test_two_node_sft_equals_one_process_and_keeps_scratch_apart(tmp_path: Path, one_torch_thread: None,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    steps = 4
    ref_key, reference, ref_dir = _reference(tmp_path / "ref", steps)
    # the tiny model's cache on node-local scratch: each node must build (and read) its own copy
    cache = f"cache-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("LONGCOT_CACHE", f"{SCRATCH}/{cache}")
    graph, sft = _sft_graph(tmp_path / "slurm", steps, CLUSTER + [TWO_NODE_SFT])
    assert sft.key == ref_key
    sub = submit(graph)
    distill = next(k for k in graph.nodes if k != sft.key)
    job = sub.submitted[sft.key]
    info = _scontrol(job)
    assert "NumNodes=2" in info and "NumTasks=2" in info, info
    assert "NumNodes=1" in _scontrol(sub.submitted[distill])  # per-stage resources: the distillation on one node
    wait(graph, timeout_s=900)
    rec = records.slurm_jobs(sft.plan)[-1]
    assert sft.plan.done, _logs(rec)[-4000:]
    logs = _logs(rec)
    # two tasks, one per node, ranks from SLURM_PROCID / SLURM_NODEID, one head node for both
    assert "rank 0 / 2, node 0 / 2, local rank 0 / 1 (slurm, head lcnode1:" in logs, logs[-3000:]
    assert "rank 1 / 2, node 1 / 2, local rank 0 / 1 (slurm, head lcnode1:" in logs
    _assert_same_losses(runs.read_jsonl(sft.plan.run_dir / "metrics.jsonl"), reference, steps)
    a = load_file(str(ref_dir / "final" / "model" / "model.safetensors"))
    b = load_file(str(sft.plan.run_dir / "final" / "model" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=2e-5, rtol=1e-4)

    # the shared run directory holds every rank's part (rank 1 ran on lcnode2), nothing else per node
    last = latest_checkpoint(sft.plan.run_dir)
    assert last is not None and last.name == f"step-{steps - 1:08d}"  # the last step writes final/ instead
    assert sorted(p.name for p in (last / "rng").iterdir()) == ["rank-0.pt", "rank-1.pt"]
    assert not list(sft.plan.run_dir.rglob(".shared-check-*"))  # the shared-directory probe is cleaned up
    if not all(NODE_SCRATCH.parent.parent.joinpath(n).is_dir() for n in NODES):
        return  # not our cluster script: its node scratch is not readable from here
    for node in NODES:
        scratch = Path(str(NODE_SCRATCH).format(node=node))
        # each node built its own tiny model, and its task's TMPDIR is per job, on the node
        assert list((scratch / cache / "models").glob("tiny-*/model.safetensors")), node
        # each task's TMPDIR was its own directory on its node's scratch, removed when the task ended;
        # the JIT / kernel cache directories stay for later jobs
        assert not list((scratch / "longcot").glob(f"tmp-{job}.*")), node
        assert (scratch / "longcot" / "torch_extensions").is_dir() and (scratch / "longcot" / "triton").is_dir(), node
        # no run output on scratch
        assert not [p for p in scratch.rglob("*") if p.name in ("metrics.jsonl", "DONE", "checkpoints", "summary.json")], node
        shutil.rmtree(scratch / cache, ignore_errors=True)
    for task, node in enumerate(NODES):
        assert f"node-local scratch on {node}: TMPDIR={SCRATCH}/longcot/tmp-{job}.{task}" in logs, logs[-3000:]
    shutil.rmtree(Path(SCRATCH, cache), ignore_errors=True)  # this machine's (planning builds the model here too)


def test_node_local_run_directory_is_refused(tmp_path: Path) -> None:
    """A run directory on node-local scratch: rank 0's files are invisible on the other node. The job
    fails on both nodes with one line naming the blind node, instead of two ranks training into two
    directories that each look like the run."""
    if not Path(str(NODE_SCRATCH).format(node=NODES[0])).is_dir():
        pytest.skip("not the cluster of slurm/setup_two_node_cluster.sh (no node-local scratch)")
    from tests.test_training_ddp import SCRIPT

    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    run_dir = f"{SCRATCH}/refused-{tmp_path.name}"
    rc, text = _sbatch_two_nodes(tmp_path, [sys.executable, str(script), run_dir], "refused", ok=False)
    assert rc != 0
    assert f"{run_dir} is not one shared directory for this job: rank 0's file there is not visible on lcnode2" in text, text[-3000:]
    for node in NODES:  # neither node trained: no metrics, no checkpoint
        local = Path(str(NODE_SCRATCH).format(node=node)) / run_dir.removeprefix(SCRATCH + "/")
        assert not (local / "metrics.jsonl").exists() and not (local / "checkpoints").exists(), node
        shutil.rmtree(local, ignore_errors=True)


def _sbatch_two_nodes(tmp: Path, command: list[str], name: str, mem_gb: int = 4, ok: bool = True,
                      tasks_per_node: int = 1) -> tuple[int, str]:
    """A batch job over both nodes, one srun task each, with the study jobs' rendezvous lines; waits
    for it and returns (exit code, output); with ``ok`` the test fails with the output unless it succeeded."""
    script = tmp / f"{name}.sbatch"
    out = tmp / f"{name}.out"
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", "#SBATCH --nodes=2", f"#SBATCH --ntasks-per-node={tasks_per_node}",
             "#SBATCH --cpus-per-task=1", f"#SBATCH --mem={mem_gb}G", f"#SBATCH --output={out}", "#SBATCH --time=20",
             *rendezvous_lines(), "srun --kill-on-bad-exit=1 " + " ".join(command)]
    script.write_text("\n".join(lines) + "\n")
    proc = subprocess.run(["sbatch", "--wait", str(script)], capture_output=True, text=True, timeout=1500,
                          env=clean_env())
    text = out.read_text() if out.is_file() else ""
    assert proc.returncode == 0 or not ok, (proc.stdout + proc.stderr + text)[-4000:]
    return proc.returncode, text


TOPOLOGY = """
import json, os, socket, sys
from longcot.training.distributed import all_gather_objects, init_distributed
info = init_distributed(backend="gloo", shared_dir=sys.argv[1])
views = all_gather_objects([info.rank, info.local_rank, info.node_rank, info.local_world_size, info.world_size,
                            socket.gethostname(), os.environ["MASTER_ADDR"]])
if info.is_main:
    print("TOPOLOGY", json.dumps(views), flush=True)
"""


def test_two_nodes_two_tasks_each_rank_local_rank_node_rank(tmp_path: Path) -> None:
    """2 nodes x 2 tasks: LOCAL_RANK != RANK on the second node; every task joins one group at the
    head node, and each reports its global rank, local rank, node rank and the per-node count."""
    script = tmp_path / "topology.py"
    script.write_text(TOPOLOGY)
    _, text = _sbatch_two_nodes(tmp_path, [sys.executable, str(script), str(tmp_path / "run")], "topology",
                                tasks_per_node=2)
    line = next(x for x in text.splitlines() if x.startswith("TOPOLOGY "))
    assert json.loads(line.split(" ", 1)[1]) == [[0, 0, 0, 2, 4, "lcnode1", "lcnode1"], [1, 1, 0, 2, 4, "lcnode1", "lcnode1"],
                                                 [2, 0, 1, 2, 4, "lcnode2", "lcnode1"], [3, 1, 1, 2, 4, "lcnode2", "lcnode1"]]


@pytest.mark.parametrize("backend", ["torch", "deepspeed"])
def test_two_node_rl_equals_one_process(tmp_path: Path, backend: str) -> None:
    if backend == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        pytest.skip("deepspeed is not installed")
    from tests.test_rl_distributed import SCRIPT, _assert_adam_close, _records, _weights, script_args, warm_model

    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    model = warm_model(tmp_path)
    algos = ("ppo",) if backend == "torch" else ("grpo",)
    args = dict(backend=backend, zero=2, algos=algos)
    run_ok([sys.executable, str(script), *script_args(tmp_path / "one", model, **{**args, "backend": "torch"})], clean_env())
    _sbatch_two_nodes(tmp_path, [sys.executable, str(script), *script_args(tmp_path / "two", model, **args)], f"rl-{backend}")
    for name in algos:
        one, two = tmp_path / "one" / name, tmp_path / "two" / name
        _assert_adam_close(_weights(one / "final" / "actor"), _weights(two / "final" / "actor"))
        ra, rb = _records(one), _records(two)
        assert [r["step"] for r in rb] == [1, 2]
        for x, y in zip(ra, rb):
            for key in ("reward", "accuracy", "response_length_mean", "response_length_max"):
                assert y[key] == pytest.approx(x[key], rel=1e-9, abs=1e-12), (name, key)
            rel = 1e-4 if x["step"] == 1 else 2e-3
            for key in ("kl", "entropy", "actor_grad_norm"):
                assert y[key] == pytest.approx(x[key], rel=rel, abs=1e-6), (name, key)
        assert (two / "checkpoints" / "step-00000002" / "rng" / "rank-1.pt").is_file()
        if name == "ppo":
            for x, y in zip(ra, rb):
                rel = 1e-4 if x["step"] == 1 else 2e-3
                for key in ("value_loss", "critic_grad_norm"):
                    assert y[key] == pytest.approx(x[key], rel=rel, abs=1e-6), key


USR2_STEPS = 30  # ~1 s a step here; a faster machine still has steps left when the signal comes


def test_usr2_of_a_two_node_job_resumes_to_the_same_losses(tmp_path: Path, one_torch_thread: None) -> None:
    """submitit's preemption path on 2 nodes: USR2 reaches both tasks, task 0 pickles a fresh
    submission and requeues the job, SLURM stops both tasks; the requeued job (a new batch script: a
    new free port) resumes on both nodes from the run's latest checkpoint."""
    ref_key, reference, _ = _reference(tmp_path / "ref", USR2_STEPS)
    graph, sft = _sft_graph(tmp_path / "slurm", USR2_STEPS, CLUSTER + [TWO_NODE_SFT])
    assert sft.key == ref_key
    sub = submit(graph)
    job = sub.submitted[sft.key]
    ckpts = sft.plan.run_dir / "checkpoints"
    t0 = time.monotonic()
    while not (ckpts.is_dir() and any(p.name.startswith("step-") for p in ckpts.iterdir())
               and len(runs.read_jsonl(sft.plan.run_dir / "metrics.jsonl")) >= 3):
        assert time.monotonic() - t0 < 600, "the SFT job did not reach a checkpoint"
        assert not sft.plan.done, "the SFT finished before it could be signalled; raise its steps"
        time.sleep(0.5)
    assert "NumNodes=2" in _scontrol(job)
    subprocess.run(["scancel", "--signal=USR2", job], check=True, timeout=30)
    t0 = time.monotonic()
    while "JobState=PENDING" not in _scontrol(job):
        assert time.monotonic() - t0 < 120 and not sft.plan.done, _scontrol(job)
        time.sleep(0.5)
    time.sleep(3)  # see test_study_slurm: not within the requeue's second
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True, timeout=30)
    wait(graph, timeout_s=900)
    rec = records.slurm_jobs(sft.plan)[-1]
    assert sft.plan.done, _logs(rec)[-4000:]
    assert "Restarts=1" in _scontrol(job) and "NumNodes=2" in _scontrol(job)
    logs = _logs(rec)
    assert logs.count(f"stage job {sft.key}") == 4  # two tasks, two starts
    assert "resumed from" in logs
    _assert_same_losses(runs.read_jsonl(sft.plan.run_dir / "metrics.jsonl"), reference, USR2_STEPS)
    assert len(records.slurm_jobs(sft.plan)) == 1  # requeued in place, not resubmitted


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/run/netns/lcnode1").exists(), reason="needs root and the cluster's namespaces")
def test_torchrun_two_agents_in_two_namespaces_equal_one_process(tmp_path: Path) -> None:
    """The same launch without SLURM: one ``torchrun --nnodes=2`` agent per node (network namespace),
    rendezvous at node 1's address; ranks from torchrun's RANK / LOCAL_RANK / GROUP_RANK."""
    from tests.launch import free_port
    from tests.test_training_ddp import SCRIPT

    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = clean_env()
    run_ok([sys.executable, str(script), str(tmp_path / "one")], env)
    port = free_port()
    # gloo binds to the address its host name resolves to: here (one UTS namespace) the interface names it
    env["GLOO_SOCKET_IFNAME"] = "eth0"
    procs = [subprocess.Popen(["nsenter", f"--net=/run/netns/{node}", sys.executable, "-m", "torch.distributed.run",
                               "--nnodes=2", "--nproc-per-node=1", f"--node-rank={k}", "--master-addr=10.77.0.11",
                               f"--master-port={port}", str(script), str(tmp_path / "two")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
             for k, node in enumerate(NODES)]
    try:
        outs = [p.communicate(timeout=600)[0] for p in procs]
    finally:
        for p in procs:  # an agent (and its worker) left behind by a failure
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-3000:] for o in outs)
    a = load_file(str(tmp_path / "one" / "final" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "final" / "model" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=2e-5, rtol=1e-4)
    ra, rb = runs.read_jsonl(tmp_path / "one" / "metrics.jsonl"), runs.read_jsonl(tmp_path / "two" / "metrics.jsonl")
    assert [r["step"] for r in rb] == [1, 2, 3]
    for x, y in zip(ra, rb):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-5)
    assert (tmp_path / "two" / "checkpoints" / "step-00000002" / "rng" / "rank-1.pt").is_file()


def test_plain_stage_run_over_two_nodes(tmp_path: Path) -> None:
    """``longcot -m cluster=slurm stage=sft cluster.nodes=2`` (Hydra's submitit launcher, no study):
    one job, one task per node, rendezvous at the head node with the port derived from the job id."""
    import json as _json

    data = tmp_path / "mine.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"Compute {i} + 1."},
                          {"role": "assistant", "content": f"{i} + 1 = {i + 1}. \\\\boxed{{{i + 1}}}"}]} for i in range(16)]
    data.write_text("".join(_json.dumps(r) + "\n" for r in rows))
    cmd = [sys.executable, "-m", "longcot", "-m", "cluster=slurm", "stage=sft", "sft.source=dataset", f"sft.dataset={data}",
           "sft.global_batch_sequences=8", "sft.max_length=512", "sft.max_tokens_per_micro_batch=1024", "sft.epochs=2",
           "sft.save_every_steps=1", "sft.eval_benchmarks=[]", "scale=full", "logger=none", "cluster.gpus_per_node=0",
           "cluster.cpus_per_task=1", "cluster.mem_gb=2", "cluster.nodes=2", f"output_root={tmp_path / 'runs'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=clean_env())
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    (run,) = (tmp_path / "runs" / "sft" / "tiny").iterdir()
    assert (run / "DONE").is_file() and [r["step"] for r in runs.read_jsonl(run / "metrics.jsonl")] == [1, 2, 3, 4]
    assert (run / "checkpoints" / "step-00000003" / "rng" / "rank-1.pt").is_file()  # the second node's rank
    logs = "\n".join(p.read_text() for p in (tmp_path / "runs" / "submitit").rglob("*_log.*"))
    assert "joined process group: rank 0 / 2, node 0 / 2" in logs and "head lcnode1:" in logs
