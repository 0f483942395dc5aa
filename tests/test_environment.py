"""Every run directory keeps the environment that computed it (longcot/environment.py): appended at each
(re)start, never part of the identity, and not enough on its own to keep a failed run's directory."""

from __future__ import annotations

from pathlib import Path

import torch

from longcot import environment, runs
from tests.stage_helpers import distill_run, eval_run
from tests.test_trust import SYNTH, _cfg


def test_each_start_appends_what_computed_the_run(tmp_path: Path) -> None:
    first = environment.record(tmp_path)
    assert first["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert first["packages"]["torch"] == torch.__version__ and first["torch_threads"] == torch.get_num_threads()
    torch_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        environment.record(tmp_path)
    finally:
        torch.set_num_threads(torch_threads)
    both = environment.read(tmp_path)
    assert [e["torch_threads"] for e in both] == [torch_threads, 1] and both[0] == first
    gpu = f" {first['cuda']}" if first["cuda"] else ""
    assert environment.kernels(first) == f"torch {torch.__version__} {torch.backends.cpu.get_cpu_capability()}{gpu}"
    assert environment.read(tmp_path / "absent") == []


def test_stage_runs_record_it_and_their_identity_does_not_hold_it(tmp_path: Path) -> None:
    summary = eval_run(_cfg(tmp_path, *SYNTH, "benchmark.limit=3"))["toy"]
    [run_dir] = [p.parent for p in tmp_path.glob("eval/**/summary.json")]
    [env] = environment.read(run_dir)
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and runs.is_done(run_dir)
    assert "cpu_capability" not in (run_dir / "config.yaml").read_text() and summary["num_problems"] == 3
    manifest = distill_run(_cfg(tmp_path, "stage=distill", "data=toy", "model=synthetic-long",
                                "generation=synthetic", "data.toy_size=8", "distill.n=2", "distill.derive_n=[]"))
    assert len(environment.read(Path(manifest["dir"]).parent)) == 1


def test_a_run_that_fails_before_writing_anything_leaves_no_directory(tmp_path: Path) -> None:
    """The environment snapshot, like the config snapshot, does not make a failed run look like a real one."""
    from longcot.stages.base import remove_if_unused

    run_dir = tmp_path / "eval" / "x" / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("identity: {}\n")
    environment.record(run_dir)
    remove_if_unused(run_dir, existed=False, root=tmp_path)
    assert not (tmp_path / "eval").exists()


def test_collect_says_under_which_environments_the_runs_were_computed(tmp_path: Path) -> None:
    from longcot.study.collect import collect
    from longcot.study.graph import build_graph
    from tests.test_study_seeds import _load

    graph = build_graph(_load(tmp_path))
    evals = [graph.nodes[graph.cells[(p.name, "eval")][0]].plan.run_dir for p in graph.study.points]
    assert not any(line.startswith("computed under") for line in collect(graph, figures=False)["footer"])
    for run_dir in evals:
        runs.write_json(Path(run_dir) / "summary.json", {"accuracy": 0.5, "mean_tokens": 50.0})
        runs.mark_done(Path(run_dir))
    here = environment.record(evals[0])
    line = next(x for x in collect(graph, figures=False)["footer"] if x.startswith("computed under"))
    assert line == (f"computed under: not recorded (run before environment.json) (5 runs), {environment.kernels(here)} "
                    "(1 run); not one environment: compare them before reading the runs as one")
    for run_dir in evals[1:]:
        runs.write_json(Path(run_dir) / environment.FILE, [here])
    out = collect(graph, figures=False)
    assert f"computed under: {environment.kernels(here)} (6 runs)" in out["footer"]
    assert f"computed under: {environment.kernels(here)} (6 runs)" in out["report"].read_text()


def test_a_waiter_that_finds_the_run_done_records_nothing_and_force_does(tmp_path: Path) -> None:
    """The last entry is the process that computed the run, not one that waited on its lock and read it."""
    from omegaconf import OmegaConf

    from longcot.stages.base import Plan, running

    run_dir = tmp_path / "eval" / "run"
    run_dir.mkdir(parents=True)
    runs.mark_done(run_dir)
    for force, entries in ((False, 0), (True, 1)):
        cfg = OmegaConf.create({"output_root": str(tmp_path), "force": force, "torch_threads": None})
        with running(Plan("eval", cfg, {}, run_dir)):
            pass
        assert len(environment.read(run_dir)) == entries


def test_an_unreadable_file_is_a_warning_not_a_failure(tmp_path: Path, caplog) -> None:
    (tmp_path / environment.FILE).write_text("[{not json")
    with caplog.at_level("WARNING"):
        assert environment.read(tmp_path) == []
    assert "unreadable" in caplog.text
    environment.record(tmp_path)
    assert len(environment.read(tmp_path)) == 1


def test_a_run_resumed_under_other_kernels_is_counted_as_mixed(tmp_path: Path) -> None:
    from longcot.study.collect import environments_line
    from longcot.study.graph import build_graph
    from tests.test_study_seeds import _load

    graph = build_graph(_load(tmp_path, extra=("study.seeds=[0]",)))
    evals = [graph.nodes[graph.cells[(p.name, "eval")][0]].plan.run_dir for p in graph.study.points]
    here = environment.describe()
    other = {**here, "cpu_capability": "AVX2"}
    for run_dir, envs in zip(evals, ([here], [here, other])):
        runs.write_json(Path(run_dir) / environment.FILE, envs)
        runs.mark_done(Path(run_dir))
    assert environments_line(graph) == (f"computed under: {environment.kernels(here)} (1 run), mixed: "
                                        f"{environment.kernels(here)} + {environment.kernels(other)} (1 run); "
                                        "not one environment: compare them before reading the runs as one")


def test_status_reads_a_run_with_only_its_snapshots_as_nothing_written(tmp_path: Path) -> None:
    from longcot.study.status import progress

    (tmp_path / "config.yaml").write_text("identity: {}\n")
    environment.record(tmp_path)
    assert progress(tmp_path) is None
    (tmp_path / "chunk-0.jsonl").write_text("{}\n")
    assert progress(tmp_path) == "partial outputs, resumes from them"
