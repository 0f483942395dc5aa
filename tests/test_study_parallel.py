"""``cluster.local_workers``: a study's independent parts run in spawned processes at once, each run
exactly once, with the same outcome bookkeeping (failed / skipped) as the sequential runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from longcot import runs
from longcot.study import records
from longcot.study.graph import build_graph
from longcot.study.local import parts, run_parallel, subgraph
from longcot.study.spec import load_study
from tests.test_study_graph import write_study


def test_parts_split_the_graph_where_no_run_reads_another(tmp_path: Path) -> None:
    graph = build_graph(load_study(write_study(tmp_path)))
    got = parts(graph)
    # the distillation feeds n1, n2 and n2-rl (7 runs); the broken point (sft from a file, its eval) stands alone
    assert sorted(len(p) for p in got) == [2, 7] and len(got[0]) == 7  # most runs to run first
    assert sorted(k for p in got for k in p) == sorted(graph.nodes)
    for p in got:
        keys = set(p)
        for k in p:  # closed under upstream, and in dependency order
            assert set(graph.nodes[k].upstream) <= keys
            assert all(p.index(u) < p.index(k) for u in graph.nodes[k].upstream)
    sub = subgraph(graph, got[1])
    assert set(sub.nodes) == set(got[1]) and {c[0] for c in sub.cells} == {"broken"}
    with pytest.raises(RuntimeError, match="not in the study as planned again"):
        subgraph(graph, ["sft-000000000000"])


def test_seeds_are_parts_of_their_own(tmp_path: Path) -> None:
    graph = build_graph(load_study([*write_study(tmp_path, rl=False, broken=False), "study.seeds=[3,4]"]))
    got = parts(graph)
    assert len(got) == 2
    assert [{p.split("@")[1] for k in part for p in graph.nodes[k].points} for part in got] in ([{"s3"}, {"s4"}],
                                                                                                  [{"s4"}, {"s3"}])


@pytest.mark.slow  # two spawned processes, each importing torch and planning the study (~1 min on 2 cores)
def test_two_workers_run_each_part_once_in_its_own_process(tmp_path: Path, one_torch_thread: None) -> None:
    overrides = [*write_study(tmp_path), "cluster.local_workers=2", "torch_threads=1"]
    graph = build_graph(load_study(overrides))
    assert graph.ordered()[0].plan.cfg.cluster.local_workers == 2
    big, small = parts(graph)
    outcome = run_parallel(graph, 2)
    broken_sft, broken_eval = small
    assert outcome.failed.keys() == {broken_sft} and outcome.skipped == [broken_eval]
    assert sorted(outcome.ran) == sorted(big) and not outcome.done_before
    pids = {k: runs.read_json(records.location(graph.nodes[k].plan) / records.LOCAL)["pid"] for k in [*big, broken_sft]}
    assert len({pids[k] for k in big}) == 1 and pids[broken_sft] != pids[big[0]]  # one process per part
    assert os.getpid() not in pids.values()
    assert all(graph.nodes[k].plan.done for k in big)
    # a relaunch runs nothing new: the finished part is done, the broken one is tried again and fails again
    again = run_parallel(build_graph(load_study(overrides)), 2)
    assert sorted(again.done_before) == sorted(big) and again.failed.keys() == {broken_sft}
