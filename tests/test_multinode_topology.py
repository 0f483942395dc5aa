"""Multi-node topology without a cluster: SLURM's node lists and per-node task counts read by hand
cases, the rendezvous an srun task derives (head node, port, torchrun's names), the batch-script
lines that export a free port on the head node, per-stage processes (one per GPU for sft/rl; other
stages refused on several processes before anything is submitted), node-local scratch variables,
and the shared-directory check in one process."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from longcot.study.slurm import StudyResources, rendezvous_lines, use_scratch
from longcot.training.distributed import check_shared_dir, derived_port, head_node, slurm_rendezvous, tasks_on_node


@pytest.mark.parametrize("nodelist, head", [
    ("lcnode[1-2]", "lcnode1"), ("gpu[07-09,12],cpu1", "gpu07"), ("a1,b2", "a1"), ("node-[003-010]", "node-003"),
    ("single", "single"), ("rack1-n[5,2]", "rack1-n5"),
])
def test_head_node(nodelist: str, head: str) -> None:
    assert head_node(nodelist) == head


@pytest.mark.parametrize("spec, node, n", [("2(x3),1", 0, 2), ("2(x3),1", 2, 2), ("2(x3),1", 3, 1), ("8", 0, 8), ("4,2(x2)", 2, 2)])
def test_tasks_on_node(spec: str, node: int, n: int) -> None:
    assert tasks_on_node(spec, node) == n


def test_tasks_on_node_bad() -> None:
    with pytest.raises(ValueError, match="node 4 is not in"):
        tasks_on_node("2(x3),1", 4)
    with pytest.raises(ValueError, match="cannot read"):
        tasks_on_node("2x3", 0)


def test_slurm_rendezvous_from_the_allocation() -> None:
    env = {"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1", "SLURM_NODEID": "1",
           "SLURM_STEP_TASKS_PER_NODE": "2(x2)", "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_JOB_ID": "4242"}
    out = slurm_rendezvous(env)
    assert out == {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "1",
                   "MASTER_ADDR": "gpu07", "MASTER_PORT": str(derived_port("4242", 0))}
    # a requeued job (restart count 1) uses another port; the batch script's exports win when present
    assert slurm_rendezvous({**env, "SLURM_RESTART_COUNT": "1"})["MASTER_PORT"] == str(derived_port("4242", 1))
    assert derived_port("4242", 1) != derived_port("4242", 0) and 20000 <= derived_port("4242", 0) < 60000
    given = slurm_rendezvous({**env, "MASTER_ADDR": "10.0.0.7", "MASTER_PORT": "31337"})
    assert given["MASTER_ADDR"] == "10.0.0.7" and given["MASTER_PORT"] == "31337"
    with pytest.raises(ValueError, match="head node"):
        slurm_rendezvous({k: v for k, v in env.items() if k != "SLURM_JOB_NODELIST"})


@pytest.mark.skipif(not shutil.which("scontrol"), reason="scontrol (SLURM's client) is not installed")
def test_rendezvous_lines_export_head_node_and_a_free_port() -> None:
    script = "\n".join(rendezvous_lines()) + '\necho "$MASTER_ADDR $MASTER_PORT"\n'
    out = subprocess.run(["bash", "-c", script], env={**os.environ, "SLURM_JOB_NODELIST": "lcnode[1-2],other"},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    addr, port = out.stdout.split()
    assert addr == "lcnode1" and 1024 <= int(port) < 65536
    with socket.socket() as s:  # free on this (the head) node
        s.bind(("", int(port)))


def _cluster(**extra):
    base = {"name": "slurm", "partition": None, "nodes": 1, "gpus_per_node": 8, "tasks_per_node": None, "cpus_per_task": 8,
            "mem_gb": 64, "timeout_min": 60, "stages": {}}
    return OmegaConf.create({**base, **extra})


def test_processes_per_stage() -> None:
    # one task per GPU for training stages, one process for the others; explicit settings are kept
    assert StudyResources.of(_cluster(), "sft").tasks_per_node == 8
    assert StudyResources.of(_cluster(), "rl").processes == 8
    assert StudyResources.of(_cluster(), "eval").tasks_per_node == 1
    assert StudyResources.of(_cluster(), "distill").processes == 1
    assert StudyResources.of(_cluster(tasks_per_node=2), "sft").tasks_per_node == 2
    res = StudyResources.of(_cluster(stages={"rl": {"nodes": 2, "scratch_dir": "/local"}}), "rl")
    assert (res.nodes, res.tasks_per_node, res.processes, res.scratch_dir) == (2, 8, 16, "/local")
    assert StudyResources.of(_cluster(stages={"rl": {"nodes": 2}}), "eval").nodes == 1  # per stage: eval stays on 1
    assert StudyResources.of(_cluster(gpus_per_node=0), "sft").tasks_per_node == 1


@pytest.mark.parametrize("cluster, stage, message", [
    (dict(nodes=2), "eval", r"^cluster: nodes=2 x tasks_per_node=1 for the eval stage, which runs as one process"),
    (dict(stages={"distill": {"nodes": 2}}), "distill", r"^cluster.stages.distill: nodes=2 x tasks_per_node=1 .* set cluster.stages.distill.nodes=1"),
    (dict(stages={"eval": {"tasks_per_node": 4}}), "eval", r"^cluster.stages.eval: nodes=1 x tasks_per_node=4"),
])
def test_one_process_stages_refuse_several(cluster: dict, stage: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StudyResources.of(_cluster(**cluster), stage)


def test_scratch_variables_point_at_the_node_local_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # setenv first: undo() then restores each variable as it was, absent included (use_scratch sets them
    # outside monkeypatch; a TMPDIR left behind put later tests' vLLM sockets on a too-long path)
    for var in ("TMPDIR", "TORCH_EXTENSIONS_DIR", "TRITON_CACHE_DIR"):
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    monkeypatch.setattr(tempfile, "tempdir", None)
    out = use_scratch(tmp_path, "77", "3")
    assert out == {"TMPDIR": str(tmp_path / "longcot" / "tmp-77.3"), "TORCH_EXTENSIONS_DIR": str(tmp_path / "longcot" / "torch_extensions"),
                   "TRITON_CACHE_DIR": str(tmp_path / "longcot" / "triton")}
    assert all(Path(p).is_dir() and os.environ[v] == p for v, p in out.items())
    assert tempfile.gettempdir() == str(tmp_path / "longcot" / "tmp-77.3")
    monkeypatch.undo()
    assert "TMPDIR" not in os.environ or os.environ["TMPDIR"] != out["TMPDIR"]


def test_shared_dir_check_in_one_process(tmp_path: Path) -> None:
    check_shared_dir(tmp_path / "run")  # one process sees its own file; the probe is removed
    assert (tmp_path / "run").is_dir() and not list((tmp_path / "run").iterdir())


def test_submit_refuses_bad_resources_before_submitting_anything(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``cluster.nodes=2`` for a whole study puts the distillation on 2 nodes: refused with one line
    (config error, exit 2) before any job is submitted."""
    from longcot.study import records
    from longcot.study.cli import main
    from longcot.study.slurm import submit
    from tests.test_multinode import _sft_graph

    cluster = ["cluster=slurm", "cluster.gpus_per_node=0", "cluster.nodes=2"]
    graph, sft = _sft_graph(tmp_path, 2, cluster)
    with pytest.raises(ValueError, match=r"^cluster: nodes=2 x tasks_per_node=1 for the distill stage"):
        submit(graph)
    assert not any(records.slurm_jobs(n.plan) for n in graph.nodes.values())
    conf = tmp_path / "conf"
    argv = [f"hydra.searchpath=[file://{conf}]", "+experiment=mn", f"output_root={tmp_path / 'runs'}", *cluster]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("longcot: config error: cluster: nodes=2 x tasks_per_node=1 for the distill stage")


def test_identity_device_follows_the_stage_gpus() -> None:
    """A study's per-stage GPUs decide the device in a run's identity (RL on GPU nodes, the rest on CPU)."""
    from longcot.stages.base import identity_device

    def cfg(stage: str, **cluster):
        return OmegaConf.create({"generation": {"device": "auto"}, "stage": {"name": stage},
                                 "cluster": {"name": "slurm", "gpus_per_node": 0, "stages": {}, **cluster}})

    per_stage = {"rl": {"gpus_per_node": 8, "nodes": 2}}
    assert identity_device(cfg("rl", stages=per_stage), "auto") == "cuda"
    assert identity_device(cfg("eval", stages=per_stage)) == "cpu"
    assert identity_device(cfg("eval", gpus_per_node=1, stages={"eval": {"gpus_per_node": 0}})) == "cpu"
    assert identity_device(cfg("distill", gpus_per_node=4)) == "cuda"
    assert identity_device(cfg("rl", stages=per_stage), "cpu") == "cpu"  # as set


def test_one_process_stage_launched_as_several_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """``longcot -m cluster=slurm stage=eval cluster.nodes=2`` (srun starts one task per node): every
    task would run the same evaluation; each refuses with one line instead."""
    from longcot.stages import plan_all

    for key, value in {"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_NODEID": "1"}.items():
        monkeypatch.setenv(key, value)
    for key in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ValueError, match=r"^stage=eval runs as one process, but this is process 1 of 2 \(slurm\)"):
        plan_all(OmegaConf.create({"stage": {"name": "eval"}}))
