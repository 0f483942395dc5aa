"""``longcot collect``: our numbers beside the paper's (the paper column on its own benchmark only, the
difference, AVG, "not run"), the plot statements checked, report.md, and a narrow terminal table that
fits 110 columns. The eval/RL runs' outputs are written by hand (what those stages write), nothing is
trained."""

from __future__ import annotations

import json
from pathlib import Path

from longcot import runs
from longcot.study.collect import NARROW, WIDE, collect
from longcot.study.graph import build_graph
from longcot.study.spec import load_study

STUDY = """# @package _global_
defaults:
  - override /data: toy
  - override /benchmark: math500
study:
  name: tcollect
  description: "a collect test"
  base: ["data.toy_size=40", "distill.n=2", "distill.derive_n=[1]", "sft.teacher=synthetic-long",
         "sft.teacher_generation=synthetic", "logger=none"]
  stages:
    distill: ["generation=synthetic", "model=synthetic-long"]
    rl: ["algorithm=grpo", "rl.from_sft=true", "algorithm.rollout_batch_size=2", "algorithm.samples_per_prompt=2",
         "algorithm.train_batch_size=4", "algorithm.micro_train_batch_size=2", "algorithm.max_new_tokens=16"]
    eval: ["benchmark=math500", "eval.benchmarks=[aime24,theoremqa,mmlu_pro_1k]"]
  points:
    - {name: a-point-with-a-rather-long-name, distill: [], sft: ["sft.subset=n2"], eval: []}
    - {name: b, distill: [], sft: ["sft.subset=n1"], eval: []}
    - {name: a-rl, sft: ["sft.subset=n2"], rl: [], eval: []}
  paper:
    source: "a test table"
    values:
      a-point-with-a-rather-long-name: {math500: 54.1, avg: 30.0}
      a-rl: {aime24: 4.0}
    findings:
      - cite: "Fig. X"
        statement: "RL helps on MATH-500 and grows the length"
        checks:
          - {point: a-rl, minus: a-point-with-a-rather-long-name, benchmark: math500, above: 0}
          - {point: a-rl, rl_metric: response_length_mean, of: change, above: 0}
      - cite: "Fig. Y"
        statement: "b stays below 10%"
        checks:
          - {point: b, benchmark: math500, below: 10}
      - cite: "Fig. Z"
        statement: "the four-benchmark mean of a is about 40"
        checks:
          - {point: a-point-with-a-rather-long-name, benchmark: avg, about: 40, tol: 1}
"""
A = "a-point-with-a-rather-long-name"
ACC = {"math500": 0.60, "aime24": 0.10, "theoremqa": 0.20, "mmlu_pro_1k": 0.30}  # a: mean 30.0
ACC_RL = {"math500": 0.65, "aime24": 0.05, "theoremqa": 0.20, "mmlu_pro_1k": 0.30}


def _finish(run_dir: Path, summary: dict) -> None:
    runs.write_json(Path(run_dir) / "summary.json", summary)
    runs.mark_done(Path(run_dir))


def test_collect_scores_our_numbers_against_the_papers(tmp_path: Path, capsys) -> None:
    conf = tmp_path / "conf" / "experiment"
    conf.mkdir(parents=True)
    (conf / "tcollect.yaml").write_text(STUDY)
    graph = build_graph(load_study([f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "+experiment=tcollect",
                                    f"output_root={tmp_path / 'runs'}"]))
    for point, acc in ((A, ACC), ("a-rl", ACC_RL)):  # b's evaluations are not run
        for key in graph.cells[(point, "eval")]:
            node = graph.nodes[key]
            _finish(node.plan.run_dir, {"accuracy": acc[node.plan.cfg.benchmark.name], "mean_tokens": 100.0})
    rl = graph.nodes[graph.cells[("a-rl", "rl")][0]].plan.run_dir
    rl.mkdir(parents=True, exist_ok=True)
    lengths = [100, 110, 120, 130, 200, 210, 220, 230]  # first quarter 105, last quarter 225: +120
    (rl / "metrics.jsonl").write_text("".join(json.dumps({"step": i + 1, "response_length_mean": v}) + "\n"
                                              for i, v in enumerate(lengths)))
    runs.mark_done(rl)

    out = collect(graph, figures=False)
    wide = {(r[0], r[1]): dict(zip(WIDE, r)) for r in out["wide_body"]}
    assert wide[(A, "math500")]["ours (%)"] == "60.0" and wide[(A, "math500")]["paper (%)"] == "54.1"
    assert wide[(A, "math500")]["diff (pts)"] == "+5.9"
    assert wide[(A, "aime24")]["paper (%)"] == "-" and wide[(A, "aime24")]["diff (pts)"] == "-"  # own benchmark only
    assert wide[(A, "avg")]["ours (%)"] == "30.0" and wide[(A, "avg")]["paper (%)"] == "30.0"
    assert wide[("a-rl", "aime24")]["paper (%)"] == "4.0" and wide[("a-rl", "aime24")]["diff (pts)"] == "+1.0"
    assert wide[("a-rl", "math500")]["paper (%)"] == "-" and wide[("a-rl", "math500")]["RL gain (pts)"] == "+5.0"
    assert wide[("b", "math500")]["ours (%)"] == "not run" and ("b", "avg") not in wide
    assert out["columns"] == NARROW and all(len(r) == len(NARROW) for r in out["body"])

    verdicts = [(f.finding.cite, f.verdict) for f in out["findings"]]
    assert verdicts == [("Fig. X", "holds"), ("Fig. Y", "not run"), ("Fig. Z", "does not hold")]
    x = out["findings"][0]
    assert [round(c.value, 6) for c in x.checks] == [5.0, 120.0]
    assert "the paper's 3 statements: 1 hold, 1 do not, 1 not run yet" in out["footer"]

    report = out["report"].read_text()
    assert f"| {A} | 60.0 / 54.1 (+5.9) | 10.0 | 20.0 | 30.0 | 30.0 / 30.0 (+0.0) |" in report
    assert "| b | not run | not run | not run | not run | not run |" in report
    assert "- **holds**: Fig. X" in report and "- **not run**: Fig. Y" in report
    assert (out["markdown"].read_text().count("\n") == len(out["wide_body"]) + 4)  # title, blank, header, rule
    assert out["csv"].read_text().splitlines()[0] == ",".join(WIDE)

    # the narrow table fits a 110-column terminal: no cell wraps (one line per row)
    from longcot.stages.base import print_table

    capsys.readouterr()
    print_table("t", out["columns"], out["body"])
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 110
    assert len(lines) == len(out["body"]) + 5  # title, top, header, rule, rows, bottom


def test_a_report_written_under_typed_changes_says_so_at_its_top(tmp_path: Path) -> None:
    """A collect of a point subset with a changed setting lists both under the title (and the terminal says
    where), in a folder of its own under variants/, so the study's own report (written first here) is not
    replaced; a plain collect lists none but the output root, and output_root / torch_threads alone make no
    variant."""
    conf = tmp_path / "conf" / "experiment"
    conf.mkdir(parents=True)
    (conf / "tcollect.yaml").write_text(STUDY)
    common = [f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "+experiment=tcollect", f"output_root={tmp_path / 'runs'}"]
    own = tmp_path / "runs" / "studies" / "tcollect"
    first = collect(build_graph(load_study([*common, "torch_threads=1"])), figures=False)
    assert first["report"] == own / "report.md"
    before = first["report"].read_text()
    typed = collect(build_graph(load_study([*common, "study.only=[b]", "sft.learning_rate=0.001"])), figures=False)
    assert typed["report"].parent.parent == own / "variants" and len(typed["report"].parent.name) == 10
    assert (own / "report.md").read_text() == before  # the study's own report is untouched
    again = collect(build_graph(load_study([*common, "sft.learning_rate=0.001", "study.only=[b]"])), figures=False)
    assert again["report"] == typed["report"]  # the same changes, in any order: the same folder
    other = collect(build_graph(load_study([*common, "study.only=[b]"])), figures=False)
    assert other["report"].parent != typed["report"].parent
    head = typed["report"].read_text().split("| point |")[0]
    assert "Written under these command-line changes to the study file:" in head
    assert "study.only=['b'] (study: null)" in head
    sft = [line for line in head.splitlines() if line.startswith("- sft-")]
    assert len(sft) == 1 and sft[0].endswith(": sft.learning_rate=0.001 (study: 5e-06)")
    assert any("written under the command line's changes" in line for line in typed["footer"])

    plain = collect(build_graph(load_study(common)), figures=False)
    head = plain["report"].read_text().split("| point |")[0]
    assert "learning_rate" not in head and "study.only" not in head
    assert f"- in every stage run: output_root={tmp_path / 'runs'} (study: runs)" in head
