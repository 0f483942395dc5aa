"""``longcot collect +experiment=NAME``: our numbers beside the paper's, as Markdown and CSV, the
paper's plot statements checked, and the figures (written to ``<output_root>/studies/<name>/``; a run with
command-line changes to what the study computes, to ``.../<name>/variants/<key>/``, see :func:`out_dir`):

* ``results.md`` / ``results.csv`` (the wide table): one row per grid point and benchmark: CoT style
  (the distill teacher's), SFT tokens (the distill manifest's count of the SFT subset), the RL algorithm
  and reward, our accuracy, the paper's on that same benchmark (``study.paper.values``; "-" where the
  paper reports none), the difference, mean response length, and the RL gain (accuracy minus that of
  the eval of the SFT checkpoint the RL started from, when the study evaluates it); a point whose
  paper row has an AVG gets an ``avg`` row (the mean of the four benchmarks). "not run": the eval is
  not finished;
* ``report.md``: one page -- the table side by side (ours / paper (difference) per benchmark), each
  plot statement with its checks and whether it holds (:mod:`longcot.study.report`), the figures;
* the terminal gets the narrow table (point, benchmark, ours, paper, difference, RL gain, tokens: fits
  110 columns) and the statements' verdicts;
* the figures: see :mod:`longcot.study.figures`;
* one line saying under which environments (torch version, CPU kernels, GPU; :mod:`longcot.environment`)
  the study's finished SFT, RL and eval runs were computed, so runs from two machines are not read as one.

Rows are :class:`Row` (one per point and eval run; ``group`` is the point's name in the study file,
shared by its seeds), so aggregations over seeds work on the same list.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from longcot import environment, runs
from longcot.study.figures import render as _figures
from longcot.study.graph import Graph, Node
from longcot.study.overrides import variant, written_lines
from longcot.study.seeds import compare_all, seeds_markdown

NOT_RUN = "not run"
WIDE = ["point", "benchmark", "style", "SFT tokens", "RL", "ours (%)", "paper (%)", "diff (pts)", "mean tokens",
        "truncated (%)", "RL gain (pts)"]
# "trunc %": the share of responses that hit the generation limit (at 100%, "tokens" is that limit)
NARROW = ["point", "benchmark", "ours %", "paper %", "diff", "RL gain", "tokens", "trunc %"]


@dataclass
class Row:
    """One evaluation of one grid point (accuracy and mean tokens None while it is not finished)."""

    point: str
    benchmark: str
    style: Optional[str]
    sft_tokens: Optional[int]
    rl: Optional[str]
    accuracy: Optional[float]
    mean_tokens: Optional[float]
    rl_gain: Optional[float]
    eval_key: str
    rl_key: Optional[str]
    group: str = ""  # the point's name in the study file (== point without seeds)
    truncation: Optional[float] = None  # share of responses that hit the generation limit
    start_tokens: Optional[float] = None  # an RL point's SFT start: its mean tokens on this benchmark
    sft_epochs: Optional[float] = None  # the SFT run's sft.epochs (None: no SFT upstream)
    sft_key: Optional[str] = None  # the SFT run upstream (None: no SFT upstream)

    def __post_init__(self) -> None:
        self.group = self.group or self.point


def _upstream_of(graph: Graph, key: str, stage: str) -> Optional[Node]:
    """The nearest run of ``stage`` upstream of ``key`` (or ``key`` itself)."""
    frontier = [key]
    while frontier:
        node = graph.nodes[frontier.pop(0)]
        if node.stage == stage:
            return node
        frontier.extend(node.upstream)
    return None


def _style(node: Optional[Node]) -> Optional[str]:
    """The CoT style of the data: the synthetic teacher's style, else the teacher model's name."""
    if node is None:
        return None
    gen = node.plan.cfg.generation
    return gen.style if gen.backend == "synthetic" else node.plan.cfg.model.name


def _sft_tokens(graph: Graph, sft: Optional[Node]) -> Optional[int]:
    """SFT tokens of the subset the SFT run trained on (from the finished distill run's manifest)."""
    if sft is None or sft.plan.cfg.sft.source != "distill":
        return None
    dist = _upstream_of(graph, sft.key, "distill")
    if dist is None or not dist.plan.done:
        return None
    manifest = runs.read_json(dist.plan.run_dir / "manifest.json")
    subset = sft.plan.cfg.sft.subset
    if "/" in subset:
        entry = manifest["budgets"].get(subset, {})
        unit = entry.get("unit", "sft")
        return entry.get(f"{unit}_tokens")
    return manifest["datasets"].get(subset[1:], {}).get("sft_tokens")


def rows(graph: Graph) -> list[Row]:
    """One row per (point, eval run); accuracy None where the eval is not finished."""
    summaries: dict[str, dict[str, Any]] = {}
    for node in graph.nodes.values():
        if node.stage == "eval" and node.plan.done:
            summaries[node.key] = runs.read_json(node.plan.run_dir / "summary.json")
    out = []
    for point in graph.study.points:
        for key in graph.cells.get((point.name, "eval"), []):
            node = graph.nodes[key]
            s = summaries.get(key, {})
            sft = _upstream_of(graph, key, "sft")
            rl = _upstream_of(graph, key, "rl")
            bench = node.plan.cfg.benchmark.name
            gain = start_tokens = None
            if rl is not None and s:
                base = [k for k, n in graph.nodes.items() if n.stage == "eval" and sft is not None and n.upstream == (sft.key,)
                        and n.plan.cfg.benchmark.name == bench and k in summaries]
                if base:
                    gain = s["accuracy"] - summaries[base[0]]["accuracy"]
                    start_tokens = summaries[base[0]].get("mean_tokens")
            rl_label = f"{rl.plan.cfg.algorithm.name}/{rl.plan.cfg.reward.name}" if rl is not None else None
            out.append(Row(point.name, bench, _style(_upstream_of(graph, key, "distill")), _sft_tokens(graph, sft), rl_label,
                           s.get("accuracy"), s.get("mean_tokens"), gain, key, rl.key if rl else None,
                           point.group or point.name, truncation=s.get("truncation_rate"), start_tokens=start_tokens,
                           sft_epochs=float(sft.plan.cfg.sft.epochs) if sft is not None else None,
                           sft_key=sft.key if sft is not None else None))
    return out


def _pct(x: Optional[float], signed: bool = False) -> str:
    return "-" if x is None else (f"{x:+.1f}" if signed else f"{x:.1f}")


def table(graph: Graph, result: list[Row]) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    """The wide table (file) and the narrow one (terminal): columns and formatted rows, accuracy in %.
    The paper column holds the paper's number for the row's own point and benchmark only."""
    from longcot.study.paper import AVG
    from longcot.study.report import eval_value

    paper = graph.study.paper
    wide, narrow = [], []

    def add(r: Optional[Row], point: str, group: str, bench: str, ours: Optional[float]) -> None:
        pv = paper.value(group, bench)
        diff = None if ours is None or pv is None else ours - pv
        gain = None if r is None or r.rl_gain is None else 100 * r.rl_gain
        tokens = "-" if r is None or r.mean_tokens is None else f"{r.mean_tokens:.0f}"
        trunc = "-" if r is None or r.truncation is None else f"{100 * r.truncation:.0f}"
        shown = NOT_RUN if ours is None else f"{ours:.1f}"
        wide.append([point, bench, (r.style if r else None) or "-",
                     "-" if r is None or r.sft_tokens is None else str(r.sft_tokens), (r.rl if r else None) or "-",
                     shown, "-" if pv is None else f"{pv:.1f}", _pct(diff, True), tokens, trunc, _pct(gain, True)])
        narrow.append([point, bench, shown, "-" if pv is None else f"{pv:.1f}", _pct(diff, True), _pct(gain, True), tokens,
                       trunc])

    by_point: dict[str, list[Row]] = {}
    for r in result:
        by_point.setdefault(r.point, []).append(r)
    for point, rs in by_point.items():
        for r in rs:
            add(r, point, r.group, r.benchmark, None if r.accuracy is None else 100 * r.accuracy)
        group = rs[0].group
        if paper.value(group, AVG) is not None:  # the paper's AVG column: the mean of the four benchmarks
            add(None, point, group, AVG, eval_value([r for r in rs], group, AVG))
    if not paper.values:  # nothing to compare with (a study of ours): no empty paper columns on the terminal
        keep = [i for i, c in enumerate(NARROW) if c not in ("paper %", "diff")]
        return WIDE, wide, [NARROW[i] for i in keep], [[row[i] for i in keep] for row in narrow]
    return WIDE, wide, NARROW, narrow


def markdown(title: str, columns: list[str], body: list[list[str]]) -> str:
    lines = [f"# {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def environments_line(graph: Graph) -> str:
    """Where the finished SFT, RL and eval runs were computed, grouped by the settings that decide the
    arithmetic (a run (re)started under several counts as "mixed"); "" when none is finished."""
    seen: Counter[str] = Counter()
    for node in graph.nodes.values():
        if node.stage in ("sft", "rl", "eval") and node.plan.done:
            kinds = list(dict.fromkeys(environment.kernels(e) for e in environment.read(node.plan.run_dir)))
            seen["mixed: " + " + ".join(kinds) if len(kinds) > 1 else
                 kinds[0] if kinds else "not recorded (run before environment.json)"] += 1
    if not seen:
        return ""
    parts = ", ".join(f"{k} ({n} run{'s' if n > 1 else ''})" for k, n in seen.most_common())
    warn = "" if len(seen) == 1 else "; not one environment: compare them before reading the runs as one"
    return f"computed under: {parts}{warn}"


def out_dir(graph: Graph) -> Path:
    """``<output_root>/studies/<name>/``, or ``.../variants/<key>/`` when the command line changed what the
    study computes (seeds, points, settings: :func:`longcot.study.overrides.variant`), so the study's own
    report and figures are never replaced by those of an ad-hoc rerun."""
    base = Path(graph.study.output_root) / "studies" / graph.study.name
    key = variant(graph.changes)
    return base / "variants" / key if key else base


def collect(graph: Graph, figures: bool = True) -> dict[str, Any]:
    """Write ``results.md`` / ``results.csv`` (wide), ``report.md`` and the figures; return the paths, the
    rows, the narrow table for the terminal (``columns``, ``body``), the wide one and the findings."""
    from longcot.study.report import evaluate, report_markdown, summary_line

    result = rows(graph)
    wide_cols, wide, columns, body = table(graph, result)
    findings = evaluate(graph, result)
    out = out_dir(graph)
    title = f"{graph.study.name}: our numbers" + (" beside the paper's" if graph.study.paper else "")
    runs.write_text(out / "results.md", markdown(title, wide_cols, wide))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(wide_cols)
    writer.writerows(wide)
    runs.write_text(out / "results.csv", buf.getvalue())
    figs = _figures(graph, result, out) if figures else []
    compared = compare_all(graph, result)
    typed = written_lines(graph.study, graph.changes)
    if graph.study.seeds or compared:
        runs.write_text(out / "seeds.md", seeds_markdown(graph, result, compared, typed))
    computed = environments_line(graph)
    runs.write_text(out / "report.md", report_markdown(graph, result, findings, figs, out, typed)
                    + (f"\n{computed}\n" if computed else ""))
    footer = [f"written under the command line's changes, listed in {out / 'report.md'}" if typed else "",
              summary_line(findings) if findings else "", *[f.line() for f in findings], *[c.line() for c in compared],
              f"over seeds: {out / 'seeds.md'}" if graph.study.seeds or compared else "", computed,
              f"written: {out / 'report.md'}, {out / 'results.md'} (wide table), {out / 'results.csv'}",
              *[f"figure: {f}" for f in figs]]
    return {"markdown": out / "results.md", "csv": out / "results.csv", "report": out / "report.md", "figures": figs,
            "rows": result, "columns": columns, "body": body, "wide_columns": wide_cols, "wide_body": wide,
            "findings": findings, "footer": [line for line in footer if line]}
