"""A tiny study end to end on this machine: distill -> SFT at two N -> RL from one SFT -> eval, plus a
failing point; then status, collect and a relaunch (which runs nothing new)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from longcot import runs
from longcot.study import records
from longcot.study.collect import collect
from longcot.study.dryrun import FILL, GEN_FLOPS, dry_run, estimate, parameters
from longcot.study.graph import build_graph
from longcot.study.local import run_local
from longcot.study.spec import load_study
from longcot.study.status import run_states, table
from tests.test_study_graph import write_study

pytestmark = pytest.mark.slow


def test_tiny_study_end_to_end_status_collect_relaunch(tmp_path: Path, one_torch_thread: None, capsys) -> None:
    graph = build_graph(load_study(write_study(tmp_path)))
    keys = {(p, s): k[0] for (p, s), k in graph.cells.items()}

    # dry run: nothing runs, every run listed with its edges and an estimate
    plan = dry_run(graph)
    assert plan["runs"] == 9 and plan["to_run"] == 9 and len(plan["edges"]) == 7
    assert not any(n.plan.run_dir.exists() for n in graph.nodes.values())
    ev = graph.nodes[keys[("n1", "eval")]]
    est = estimate(graph, ev)  # 4 problems x 1 sample x FILL x 24 new tokens, 2 P FLOPs per token
    assert est.generated == 4 * 1 * FILL * 24
    assert est.gpu_hours == pytest.approx(2 * parameters(ev.plan.cfg.model) * est.generated / GEN_FLOPS / 3600)
    out = capsys.readouterr().out
    assert "9 unique stage runs (9 to run, 0 done) for 4 points (12 stage runs before deduplication); 7 dependency edges" in out
    assert "assumptions: generation 2*P FLOPs/token" in out

    outcome = run_local(graph)
    broken_sft, broken_eval = keys[("broken", "sft")], keys[("broken", "eval")]
    assert set(outcome.failed) == {broken_sft} and outcome.skipped == [broken_eval]
    assert len(outcome.ran) == 7 and not outcome.done_before  # every shared run ran once
    for key, node in graph.nodes.items():
        assert node.plan.done == (key not in (broken_sft, broken_eval))

    # status: done everywhere but the broken point, whose SFT failed with its log
    states = run_states(graph)
    assert states[broken_sft].state == "failed" and states[broken_eval].state == "pending"
    log = Path(states[broken_sft].log)
    assert log.is_file() and "Traceback" in log.read_text() and states[broken_sft].reason
    columns, rows = table(graph)
    assert columns == ["point", "distill", "sft", "rl", "eval"]
    by_point = {r[0]: r for r in rows}
    assert by_point["n2-rl"][1:] == ["done"] * 4 and by_point["n1"][3] == "-"
    assert by_point["broken"][2].startswith("failed (") and str(log) in by_point["broken"][2]

    # collect: our numbers (from each eval's summary.json), the paper's beside them, figures
    res = collect(graph)
    summaries = {k: runs.read_json(graph.nodes[k].plan.run_dir / "summary.json") for (p, s), k in keys.items()
                 if s == "eval" and p != "broken"}
    with open(res["csv"], newline="") as fh:
        table_rows = {r["point"]: r for r in csv.DictReader(fh)}
    for point in ("n2", "n1", "n2-rl"):
        assert table_rows[point]["ours (%)"] == f"{100 * summaries[keys[(point, 'eval')]]['accuracy']:.1f}"
    assert table_rows["broken"]["ours (%)"] == "not run"
    gain = summaries[keys[("n2-rl", "eval")]]["accuracy"] - summaries[keys[("n2", "eval")]]["accuracy"]
    assert table_rows["n2-rl"]["RL gain (pts)"] == f"{100 * gain:+.1f}"
    assert table_rows["n2-rl"]["RL"] == "grpo/classic" and table_rows["n2"]["style"] == "long"
    manifest = runs.read_json(graph.nodes[keys[("n2", "distill")]].plan.run_dir / "manifest.json")
    assert table_rows["n1"]["SFT tokens"] == str(manifest["datasets"]["1"]["sft_tokens"])
    ours_n2 = 100 * summaries[keys[("n2", "eval")]]["accuracy"]
    assert table_rows["n2"]["paper (%)"] == "12.5" and table_rows["n2"]["diff (pts)"] == f"{ours_n2 - 12.5:+.1f}"
    assert table_rows["n1"]["paper (%)"] == "-"  # no paper number for this point
    [finding] = res["findings"]  # "n2 beats n1 on toy"
    assert finding.checks[0].value == ours_n2 - 100 * summaries[keys[("n1", "eval")]]["accuracy"]
    assert "Fig. T" in res["report"].read_text()
    assert f"| n2 | toy | long |" in res["markdown"].read_text()
    assert sorted(p.name for p in res["figures"]) == ["fig_reward_variants.png", "fig_rl_dynamics.png", "fig_sft_scaling.png"]
    assert all(p.stat().st_size > 1000 for p in res["figures"])

    # relaunch: every finished run is skipped (its outputs untouched); only the failed run is retried
    stamps = {k: (n.plan.run_dir / "DONE").stat().st_mtime_ns for k, n in graph.nodes.items() if n.plan.done}
    again = run_local(build_graph(load_study(write_study(tmp_path))))
    assert sorted(again.done_before) == sorted(stamps) and not again.ran
    assert set(again.failed) == {broken_sft}
    assert {k: (graph.nodes[k].plan.run_dir / "DONE").stat().st_mtime_ns for k in stamps} == stamps
    assert records.read(graph.nodes[broken_sft].plan, records.LOCAL)["state"] == "failed"
