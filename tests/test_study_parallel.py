"""``cluster.local_workers``: a study's independent parts run in spawned processes, at most N at a time,
each run exactly once, with the sequential runner's bookkeeping (failed / skipped / force), a killed
worker stopping only its own part, and Ctrl-C / SIGTERM / SIGKILL of the study leaving no worker behind."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from longcot import runs
from longcot.study import records
from longcot.study.cli import main
from longcot.study.graph import build_graph
from longcot.study.parallel import _died, parts, run_parallel, subgraph
from longcot.study.spec import load_study
from tests.test_processes import _alive
from tests.test_study_graph import write_study

ROOT = Path(__file__).resolve().parents[1]


def _local(graph, key: str) -> dict:
    return runs.read_json(records.location(graph.nodes[key].plan) / records.LOCAL)


def test_parts_split_the_graph_where_no_run_reads_another(tmp_path: Path) -> None:
    graph = build_graph(load_study(write_study(tmp_path)))
    got = parts(graph)
    # the distillation feeds n1, n2 and n2-rl (7 runs); the broken point (sft from a file, its eval) stands alone
    assert [len(p) for p in got] == [7, 2]  # most runs to run first
    assert sorted(k for p in got for k in p) == sorted(graph.nodes)
    for p in got:
        for k in p:  # closed under upstream, and in dependency order
            assert all(u in p and p.index(u) < p.index(k) for u in graph.nodes[k].upstream)
    sub = subgraph(graph, got[1])
    assert set(sub.nodes) == set(got[1]) and {c[0] for c in sub.cells} == {"broken"}
    with pytest.raises(ValueError, match="no run sft-000000000000"):
        subgraph(graph, ["sft-000000000000"])


def test_seeds_are_parts_of_their_own_and_the_unfinished_go_first(tmp_path: Path) -> None:
    graph = build_graph(load_study([*write_study(tmp_path, rl=False, broken=False), "study.seeds=[3,4]"]))
    got = parts(graph)
    assert len(got) == 2
    assert sorted({p.split("@")[1] for k in part for p in graph.nodes[k].points} for part in got) == [{"s3"}, {"s4"}]
    # order is by runs still to run: mark every run of the first part done, and it goes last
    for key in got[0]:
        graph.nodes[key].plan.run_dir.mkdir(parents=True)
        runs.mark_done(graph.nodes[key].plan.run_dir)
    assert all(graph.nodes[k].plan.done for k in got[0])
    assert parts(graph) == [got[1], got[0]]


def test_whole_study_settings_are_refused_per_stage_and_with_slurm(tmp_path: Path, capsys) -> None:
    study = load_study([*write_study(tmp_path), "cluster.local_workers=3"])
    assert study.local_workers == 3 and load_study(write_study(tmp_path)).local_workers == 1
    conf = tmp_path / "conf" / "experiment" / "tstudy.yaml"
    conf.write_text(conf.read_text().replace('"logger=none"]', '"logger=none", "cluster.local_workers=2"]'))
    select = [f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "+experiment=tstudy"]
    with pytest.raises(ValueError, match=r"study.base: 'cluster.local_workers=2' sets how the whole study runs"):
        load_study(select)
    conf.write_text(conf.read_text().replace('"logger=none", "cluster.local_workers=2"]', '"logger=none"]')
                    .replace('"sft.save_every_steps=1"]', '"sft.save_every_steps=1", "cluster.local_workers=2"]'))
    with pytest.raises(ValueError, match=r"study.stages.sft: 'cluster.local_workers=2' sets how the whole study"):
        load_study(select)
    conf.write_text(conf.read_text().replace(', "cluster.local_workers=2"]', ']')
                    .replace('sft: ["sft.subset=n1"]', 'sft: ["sft.subset=n1", "+cluster.local_workers=2"]'))
    with pytest.raises(ValueError, match=r"study.points \(n1\).sft: '\+cluster.local_workers=2' sets how the whole"):
        load_study(select)
    other = tmp_path / "other"
    assert main([*write_study(other), "cluster=slurm", "cluster.local_workers=2"]) == 2
    err = capsys.readouterr().err
    assert "cluster.local_workers=2: runs a local study's parts in processes; with cluster=slurm" in err


def _wait_for(cond, timeout: float = 120.0, step: float = 0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(step)
    raise AssertionError("timed out waiting")


@pytest.mark.slow  # spawned workers, each importing torch; about a minute on 2 cores
def test_two_workers_through_the_cli_then_force_reruns_every_part(tmp_path: Path, one_torch_thread: None,
                                                                  capsys) -> None:
    overrides = [*write_study(tmp_path), "cluster.local_workers=2", "torch_threads=1"]
    assert main(overrides) == 1  # the broken point fails: not every run is done
    out = capsys.readouterr().out
    assert "0 done, skipped; 7 ran; 1 failed; 1 not run (an upstream run failed)" in out
    graph = build_graph(load_study(overrides))
    (broken_sft, broken_eval), big = sorted(parts(graph), key=len)  # the broken part is unfinished: it goes first now
    pids = {k: _local(graph, k)["pid"] for k in [*big, broken_sft]}
    assert len({pids[k] for k in big}) == 1 and pids[broken_sft] != pids[big[0]]  # one process per part
    assert os.getpid() not in pids.values()
    assert _local(graph, broken_sft)["state"] == "failed" and not (records.location(graph.nodes[broken_eval].plan)
                                                                   / records.LOCAL).exists()
    # force=true runs the finished part again (not "done, skipped"), in a worker again
    assert main([*overrides, "force=true"]) == 1
    out = capsys.readouterr().out
    assert "0 done, skipped; 7 ran; 1 failed; 1 not run" in out
    assert all(_local(graph, k)["pid"] != pids[k] for k in big)


@pytest.mark.slow  # two parts of 2 SFTs x 100 steps each; about a minute on 2 cores
def test_a_killed_worker_stops_only_its_own_part_and_a_relaunch_resumes(tmp_path: Path, one_torch_thread: None) -> None:
    overrides = [*write_study(tmp_path, rl=False, broken=False, sft_steps=100, sft_epochs=50), "study.seeds=[3,4]",
                 "torch_threads=1"]
    graph = build_graph(load_study(overrides))
    first, second = parts(graph)
    result: dict = {}

    def run() -> None:
        try:
            result["out"] = run_parallel(graph, 2)
        except BaseException as exc:  # shown by the assertion below
            result["error"] = exc

    runner = threading.Thread(target=run, daemon=True)
    runner.start()

    def running_sft():
        for key in first:
            if key.startswith("sft-"):
                path = records.location(graph.nodes[key].plan) / records.LOCAL
                if path.is_file() and runs.read_json(path)["state"] == "running":
                    return key
        return None

    victim = _wait_for(running_sft)
    os.kill(_local(graph, victim)["pid"], signal.SIGKILL)
    runner.join(300)
    assert not runner.is_alive() and "error" not in result, result.get("error")
    out = result["out"]
    assert list(out.failed) == [victim] and "died with exit code -9; a relaunch resumes it" in out.failed[victim]
    assert _local(graph, victim)["state"] == "failed"
    after = first[first.index(victim) + 1:]
    assert sorted(out.skipped) == sorted(after) and not any(graph.nodes[k].plan.done for k in [victim, *after])
    assert all(graph.nodes[k].plan.done for k in second) and set(second) <= set(out.ran)  # the other part finished
    again = run_parallel(build_graph(load_study(overrides)), 2)  # one part left: runs in this process
    assert again.ok and sorted(again.ran) == sorted([victim, *after])


@pytest.mark.slow  # a study process with two workers, stopped; about a minute on 2 cores
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_stopping_the_study_leaves_no_worker_behind(sig: int, tmp_path: Path) -> None:
    overrides = [*write_study(tmp_path, rl=False, broken=False, sft_steps=400, sft_epochs=200), "study.seeds=[3,4,5]",
                 "torch_threads=1", "cluster.local_workers=2"]
    graph = build_graph(load_study(overrides))
    study = subprocess.Popen([sys.executable, "-m", "longcot", *overrides], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        def two_sfts_running():
            pids = {}
            for key, node in graph.nodes.items():
                path = records.location(node.plan) / records.LOCAL
                if key.startswith("sft-") and path.is_file() and runs.read_json(path)["state"] == "running":
                    pids[key] = runs.read_json(path)["pid"]
            return pids if len(set(pids.values())) == 2 else None

        workers = set(_wait_for(two_sfts_running, timeout=240).values())
        assert study.pid not in workers
        study.send_signal(sig)
        study.wait(60)
        assert study.returncode == (128 + 15 if sig == signal.SIGTERM else -signal.SIGKILL)

        def gone():
            return not any(_alive(pid) for pid in workers)

        _wait_for(gone, timeout=30, step=0.1)
        # the third part never started
        started = [any((records.location(graph.nodes[k].plan) / records.LOCAL).exists() for k in p) for p in parts(graph)]
        assert sorted(started) == [False, True, True]
    finally:
        if study.poll() is None:
            study.kill()


def test_a_part_travels_pickled_whole(tmp_path: Path) -> None:
    graph = build_graph(load_study(write_study(tmp_path)))
    big = parts(graph)[0]
    sub = pickle.loads(pickle.dumps(subgraph(graph, big)))
    assert list(sub.nodes) == big and sub.study == graph.study and sub.cells == subgraph(graph, big).cells
    assert all(sub.nodes[k].plan.identity == graph.nodes[k].plan.identity for k in big)
    assert [n.key for n in sub.ordered()] == [n.key for n in subgraph(graph, big).ordered()]


def test_a_dead_workers_part_is_read_from_the_records_it_wrote(tmp_path: Path) -> None:
    """What ran, failed or did not run in a part whose worker died comes from the records with that
    worker's pid; a record of another process (an earlier launch) says nothing about this one."""
    graph = build_graph(load_study(write_study(tmp_path, rl=False, broken=False)))
    [part] = parts(graph)
    distill, sft_a, sft_b, eval_a, eval_b = part  # dependency order: distill, 2 SFTs, 2 evals
    worker, earlier = 4242, 1717
    plan = lambda k: graph.nodes[k].plan  # noqa: E731
    records.write_local(plan(distill), "done", pid=worker)
    plan(distill).run_dir.mkdir(parents=True)
    runs.mark_done(plan(distill).run_dir)
    records.write_local(plan(sft_a), "failed", "ValueError: bad", pid=worker)
    records.write_local(plan(sft_b), "running", pid=worker)  # the run it died in
    records.write_local(plan(eval_a), "running", pid=earlier)  # stale: a launch before this one
    out = _died(graph, part, set(), worker, -9, "part 1/1")
    assert out.ran == [distill] and out.failed[sft_a] == "ValueError: bad"
    assert out.failed[sft_b] == "its worker process (part 1/1) died with exit code -9; a relaunch resumes it"
    assert sorted(out.skipped) == sorted([eval_a, eval_b])
    assert _local(graph, sft_b)["state"] == "failed" and _local(graph, sft_b)["pid"] == worker
    assert _local(graph, eval_a) == {**_local(graph, eval_a), "state": "running", "pid": earlier}  # untouched
    # a run finished before the launch (settled) is not counted again
    assert distill not in _died(graph, part, {distill}, worker, -9, "part 1/1").ran
