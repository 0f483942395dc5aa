"""tests/perf/bench_twin_studies.py --from: reads the driver's log of each stage run a study plans
(first and last timestamped record) and sums them per stage; runs without a log are counted, not
guessed, and runs the study does not plan (another study's, in the same folder) are not summed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from longcot.study import records
from longcot.study.graph import build_graph
from longcot.study.spec import load_study

REPO = Path(__file__).resolve().parents[1]
STUDY = ["+experiment=twin_fig1_sft_scaling", "study.only=[long-1M]", "study.seeds=[0]"]


def test_bench_from_reads_each_planned_runs_log(tmp_path: Path) -> None:
    graph = build_graph(load_study([*STUDY, f"output_root={tmp_path}"]))
    nodes = {n.stage: n for n in graph.ordered()}
    assert set(nodes) == {"distill", "sft", "eval"}
    logs = {"distill": ("2026-12-04 01:00:00,000", "2026-12-04 01:01:30,500"),  # 90.5 s
            "sft": ("2026-12-04 01:02:00,000", "2026-12-04 01:12:00,000")}  # 600 s; eval: no log
    for stage, (first, last) in logs.items():
        log = records.local_log(nodes[stage].plan)
        log.parent.mkdir(parents=True)
        log.write_text(f"{first} [x][INFO] - start\nnot a record\n{last} [x][INFO] - done\n")
    # another study's run in the same folder: not summed (the run mode sums through the same planned_seconds)
    foreign = tmp_path / "jobs" / "rl" / "0123456789ab" / "local.log"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("2026-12-04 02:00:00,000 [x][INFO] - start\n2026-12-04 03:00:00,000 [x][INFO] - done\n")
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "perf" / "bench_twin_studies.py"), "--from",
                           str(tmp_path), "twin_fig1_sft_scaling", "--", "study.only=[long-1M]", "study.seeds=[0]"],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("twin_fig1_sft_scaling: 3 stage runs, 2 logged, 1 without a log; logged 11.5 min = ")
    assert "distill 1.5 min (13%), sft 10.0 min (87%), rl 0.0 min (0%), eval 0.0 min (0%)" in line


def test_bench_rejects_a_bad_study_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "perf" / "bench_twin_studies.py"), "--from",
                           str(tmp_path), "no_such_study"], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("no_such_study: config error:") and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("extra", [["--from", "ROOT"], ["twin_all"], ["FILE"], ["FULL"]])
def test_bench_keep_wants_one_study_and_a_new_or_empty_folder(extra: list[str], tmp_path: Path) -> None:
    keep = tmp_path / "keep"
    if extra == ["FILE"]:
        keep.write_text("x")
    if extra == ["FULL"]:
        keep.mkdir()
        (keep / "old").write_text("x")
    extra = [str(tmp_path) if e == "ROOT" else e for e in extra if e not in ("FILE", "FULL")]
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "perf" / "bench_twin_studies.py"), "--keep", str(keep),
                           *extra, "demo"], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 2 and not proc.stdout
    assert proc.stderr.strip() == f"--keep {keep}: must be a new or empty folder, for one study, without --from"
