"""The study graph on a real SLURM controller (``slurm/setup_local_cluster.sh``; skipped when none
answers): stage runs as jobs with afterok dependencies, shared runs submitted once, a relaunch while
running or after finishing submits nothing new, a failing point is reported by status with its log
and does not stop the others, and a training job requeued while running resumes to the same metrics."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from longcot import runs
from longcot.study import records
from longcot.study.collect import collect
from longcot.study.graph import build_graph
from longcot.study.local import run_local
from longcot.study.slurm import submit, wait
from longcot.study.spec import load_study
from longcot.study.status import run_states
from tests.test_slurm import _slurm_up
from tests.test_study_graph import write_study

pytestmark = [pytest.mark.slurm, pytest.mark.slow,
              pytest.mark.skipif(not _slurm_up(), reason="no SLURM controller answers (run slurm/setup_local_cluster.sh)")]
CLUSTER = ["cluster=slurm", "cluster.cpus_per_task=1", "cluster.mem_gb=2", "cluster.timeout_min=20", "cluster.gpus_per_node=0"]


def _tail(log: str | None) -> str:
    """The end of a job's stdout and stderr (assertion messages)."""
    if not log:
        return ""
    paths = [Path(log), Path(log.replace("_log.out", "_log.err"))]
    return "\n".join(p.read_text()[-3000:] for p in paths if p.is_file())


def _scontrol(job_id: str) -> str:
    return subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30).stdout


def test_study_on_slurm_afterok_once_failing_point_relaunch(tmp_path: Path) -> None:
    overrides = write_study(tmp_path, name="slurmstudy", rl=False) + CLUSTER
    graph = build_graph(load_study(overrides))
    keys = {(p, s): k[0] for (p, s), k in graph.cells.items()}
    sub = submit(graph)
    assert len(sub.submitted) == len(graph.nodes) == 7 and not sub.reused and not sub.done

    # afterok edges, as SLURM sees them
    queue = subprocess.run(["squeue", "-h", "-o", "%i|%E"], capture_output=True, text=True, timeout=30).stdout
    deps = dict(line.split("|", 1) for line in queue.split())
    for node in graph.nodes.values():
        for up in node.upstream:
            want = f"afterok:{sub.submitted[up]}"
            job = sub.submitted[node.key]
            assert want in deps.get(job, "") or f"Dependency={want}" in _scontrol(job), \
                (node.key, want, deps.get(job), _scontrol(job))

    # status while the graph runs: queued/running runs with their job ids
    early = run_states(graph)
    for key, node in graph.nodes.items():
        if node.stage == "eval":
            assert early[key].state in ("pending", "running", "failed", "done") and early[key].job_id == sub.submitted[key]
    assert early[keys[("n2", "eval")]].state in ("pending", "running")  # its SFT cannot be finished this soon

    # a relaunch while the jobs are queued or running submits nothing: their job ids are reused (the
    # broken point is left out: its quickly failed jobs would rightly be resubmitted)
    healthy = write_study(tmp_path, name="slurmstudy", rl=False, broken=False) + CLUSTER
    again = submit(build_graph(load_study(healthy)))
    assert not again.submitted and len(again.reused) + len(again.done) == 5

    final = wait(graph, timeout_s=900)
    broken_sft, broken_eval = keys[("broken", "sft")], keys[("broken", "eval")]
    states = run_states(graph)
    for key, st in states.items():
        if key not in (broken_sft, broken_eval):
            assert st.state == "done", (key, st, final, _tail(st.log))
    assert states[broken_sft].state == "failed" and states[broken_sft].job_id == sub.submitted[broken_sft]
    log = Path(states[broken_sft].log)
    assert log.is_file() and "DataError" in log.read_text() + Path(str(log).replace("_log.out", "_log.err")).read_text()
    assert states[broken_eval].state == "failed" and "upstream" in (states[broken_eval].reason or "")

    # each shared run was one job: one record per run dir, one job folder per submission
    for node in graph.nodes.values():
        assert len(records.slurm_jobs(node.plan)) == 1, node.key
    job_dirs = [p for p in (tmp_path / "runs" / "studies" / "slurmstudy" / "submitit").iterdir() if p.is_dir()]
    assert len(job_dirs) == 7
    distill_job = sub.submitted[keys[("n2", "distill")]]
    assert keys[("n2", "distill")] == keys[("n1", "distill")]
    assert f"stage job {keys[('n2', 'distill')]}" in (tmp_path / "runs" / "studies" / "slurmstudy" / "submitit" / distill_job
                                                       / f"{distill_job}_0_log.err").read_text()

    res = collect(graph)
    text = res["markdown"].read_text()
    for point in ("n2", "n1"):
        summary = runs.read_json(graph.nodes[keys[(point, "eval")]].plan.run_dir / "summary.json")
        assert f"| {point} | toy | long |" in text and f"{100 * summary['accuracy']:.1f}" in text

    # relaunching the finished study (without the broken point) submits nothing
    done = submit(build_graph(load_study(healthy)))
    assert not done.submitted and not done.reused and len(done.done) == 5


STEPS = 40  # ~20 s of training: SLURM's KillWait (5 s) after the requeue's SIGTERM cannot finish it


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None) -> tuple[str, list]:
    """The SFT run of the requeue tests, uninterrupted, in this process: (its key, its metrics)."""
    tmp = tmp_path_factory.mktemp("ref")
    graph = build_graph(load_study(write_study(tmp, name="rq", rl=False, broken=False, sft_steps=STEPS, sft_epochs=8)))
    sft = graph.nodes[graph.cells[("n2", "sft")][0]]
    for key in list(graph.nodes):
        if key not in (sft.key, *sft.upstream):
            del graph.nodes[key]
    assert run_local(graph).ok
    return sft.key, runs.read_jsonl(sft.plan.run_dir / "metrics.jsonl")


@pytest.mark.parametrize("how", ["scontrol requeue", "USR2"])
def test_requeued_training_job_resumes_to_the_same_metrics(tmp_path: Path, uninterrupted: tuple[str, list], how: str) -> None:
    """An administrator's ``scontrol requeue`` (SIGTERM, then SIGKILL: the same pickle restarts) or
    submitit's USR2 (preemption / time limit: ``StageJob.checkpoint`` pickles a fresh submission and
    submitit requeues the job): either way the SFT resumes from its own latest checkpoint."""
    ref_key, reference = uninterrupted

    graph = build_graph(load_study(write_study(tmp_path / "slurm", name="rq", rl=False, broken=False, sft_steps=STEPS, sft_epochs=8) + CLUSTER))
    sft = graph.nodes[graph.cells[("n2", "sft")][0]]
    assert sft.key == ref_key  # the same identity: output_root is not part of it
    for key in list(graph.nodes):
        if key not in (sft.key, *sft.upstream):
            del graph.nodes[key]
    sub = submit(graph)
    job = sub.submitted[sft.key]
    ckpts = sft.plan.run_dir / "checkpoints"
    t0 = time.monotonic()
    while not (ckpts.is_dir() and len([p for p in ckpts.iterdir() if p.name.startswith("step-")]) >= 1
               and len(runs.read_jsonl(sft.plan.run_dir / "metrics.jsonl")) >= 3):
        assert time.monotonic() - t0 < 600, "the SFT job did not reach a checkpoint"
        assert not sft.plan.done, "the SFT finished before it could be requeued; raise its steps"
        time.sleep(0.5)
    assert not sft.plan.done
    if how == "USR2":
        subprocess.run(["scancel", "--signal=USR2", job], check=True, timeout=30)
    else:
        subprocess.run(["scontrol", "requeue", job], check=True, timeout=30)
    t0 = time.monotonic()
    while "JobState=PENDING" not in _scontrol(job):
        assert time.monotonic() - t0 < 120 and not sft.plan.done, _scontrol(job)
        time.sleep(0.5)
    # SLURM delays a requeued job (~2 min) so the node can clean up; start it sooner, but not within the
    # requeue's second (a launch then is refused: "Job credential revoked")
    time.sleep(3)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True, timeout=30)
    wait(graph, timeout_s=900)
    assert sft.plan.done
    assert "Restarts=1" in _scontrol(job)
    log = Path(records.slurm_jobs(sft.plan)[-1]["stderr"]).read_text()
    assert log.count(f"stage job {sft.key}") == 2 and "resumed from" in log  # two starts, the second resumed
    metrics = runs.read_jsonl(sft.plan.run_dir / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [m["step"] for m in reference] == list(range(1, STEPS + 1))
    for got, want in zip(metrics, reference):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5, abs=1e-7)
    assert len(records.slurm_jobs(sft.plan)) == 1  # requeued in place, not resubmitted
