"""Our results scored against the paper's (``longcot collect``): the plot statements checked
(:class:`longcot.study.paper.Finding`) and the one-page ``report.md``.

A check's quantity is read from the collected rows (:class:`longcot.study.collect.Row`: eval accuracy in
%, mean tokens; ``avg`` = the mean of the four benchmarks) or from the point's RL run
(``metrics.jsonl``: the mean of the last quarter of the steps, ``of: change`` minus the first
quarter's). With ``study.seeds`` a point's quantity is the mean over its seeds that are done.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from longcot.study.paper import AVG, FOUR, Check, Finding

if TYPE_CHECKING:  # pragma: no cover
    from longcot.study.collect import Row
    from longcot.study.graph import Graph

HOLDS, FAILS, NOT_RUN = "holds", "does not hold", "not run"


@dataclass(frozen=True)
class CheckResult:
    check: Check
    value: Optional[float]  # our quantity (None: not run)

    @property
    def verdict(self) -> str:
        return NOT_RUN if self.value is None else HOLDS if self.check.holds(self.value) else FAILS

    def describe(self) -> str:
        if self.value is None:
            return f"{self.check.describe()}: not run"
        return f"{self.check.describe()}: ours {self.value:.4g} ({self.verdict})"


@dataclass(frozen=True)
class FindingResult:
    finding: Finding
    checks: tuple[CheckResult, ...]

    @property
    def verdict(self) -> str:
        verdicts = {c.verdict for c in self.checks}
        return NOT_RUN if NOT_RUN in verdicts else FAILS if FAILS in verdicts else HOLDS

    def line(self) -> str:
        return (f"{self.finding.cite}: \"{self.finding.statement}\": {self.verdict.upper()} -- "
                + "; ".join(c.describe() for c in self.checks))


def summary_line(findings: Sequence[FindingResult]) -> str:
    """How many of the paper's statements hold, do not, and cannot be checked yet."""
    count = {v: sum(f.verdict == v for f in findings) for v in (HOLDS, FAILS, NOT_RUN)}
    return (f"the paper's {len(findings)} statements: {count[HOLDS]} hold, {count[FAILS]} do not, "
            f"{count[NOT_RUN]} not run yet")


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    done = [v for v in values if v is not None]
    return sum(done) / len(done) if done else None


def eval_value(rows: Sequence["Row"], point: str, benchmark: str, metric: str = "accuracy") -> Optional[float]:
    """Our ``metric`` of ``point`` (a group: the mean over its seeds) on ``benchmark`` (``avg``: the
    mean of the four benchmarks, each needed); accuracy in %."""
    if benchmark == AVG:
        parts = [eval_value(rows, point, b, metric) for b in FOUR]
        return None if any(p is None for p in parts) else sum(parts) / len(parts)  # type: ignore[arg-type]
    values = [getattr(r, metric) for r in rows if r.group == point and r.benchmark == benchmark]
    v = _mean(values)
    return None if v is None else (100 * v if metric == "accuracy" else v)


def rl_value(graph: "Graph", rows: Sequence["Row"], point: str, metric: str, of: str) -> Optional[float]:
    """``metric`` of ``point``'s RL runs (``metrics.jsonl``): last-quarter mean, or its change from the first quarter."""
    keys = list(dict.fromkeys(r.rl_key for r in rows if r.group == point and r.rl_key))
    values = []
    for key in keys:
        path = Path(graph.nodes[key].plan.run_dir) / "metrics.jsonl"
        if not graph.nodes[key].plan.done or not path.is_file():
            continue
        recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        series = [float(r[metric]) for r in recs if isinstance(r.get(metric), (int, float))]
        if not series:
            continue
        q = max(1, math.ceil(len(series) / 4))
        last = sum(series[-q:]) / q
        values.append(last if of == "last" else last - sum(series[:q]) / q)
    return _mean(values)


def evaluate(graph: "Graph", rows: Sequence["Row"]) -> list[FindingResult]:
    """Every finding of ``study.paper`` checked on our results."""
    def quantity(c: Check, point: str) -> Optional[float]:
        if c.rl_metric:
            return rl_value(graph, rows, point, c.rl_metric, c.of)
        return eval_value(rows, point, str(c.benchmark), c.metric)

    out = []
    for f in graph.study.paper.findings:
        results = []
        for c in f.checks:
            v = quantity(c, c.point)
            if v is not None and c.minus:
                other = quantity(c, c.minus)
                v = None if other is None else v - other
            results.append(CheckResult(c, v))
        out.append(FindingResult(f, tuple(results)))
    return out


def _cell(ours: Optional[float], paper: Optional[float]) -> str:
    if ours is None:
        return "not run" if paper is None else f"not run / {paper:.1f}"
    if paper is None:
        return f"{ours:.1f}"
    return f"{ours:.1f} / {paper:.1f} ({ours - paper:+.1f})"


def report_markdown(graph: "Graph", rows: Sequence["Row"], findings: Sequence[FindingResult],
                    figures: Sequence[Path], out: Path, typed: Sequence[str]) -> str:
    """One page: the tables side by side (ours / paper (difference) per benchmark), the findings, the figures;
    ``typed``: the command line's changes (:func:`longcot.study.overrides.written_lines`), under the title."""
    study, paper = graph.study, graph.study.paper
    benches = list(dict.fromkeys(r.benchmark for r in rows))
    if any(AVG in v for v in paper.values.values()):
        benches.append(AVG)
    lines = [f"# {study.name}: our results" + (" beside the paper's" if paper else ""), ""]
    if study.description:
        lines += [study.description, ""]
    lines += list(typed)
    if paper:
        lines += [f"Paper: {paper.source}. Cells: ours / paper (ours - paper), accuracy %; \"not run\": the "
                  "evaluation is not finished.", ""]
    else:
        lines += ["Accuracy %; \"not run\": the evaluation is not finished.", ""]
    lines += ["| point | " + " | ".join(benches) + " |", "|---|" + "---|" * len(benches)]
    for group in study.groups():
        cells = [_cell(eval_value(rows, group, b), paper.value(group, b)) for b in benches]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    if findings:
        lines += ["", f"## The paper's statements, checked ({summary_line(findings)})", ""]
        for fr in findings:
            lines.append(f"- **{fr.verdict}**: {fr.finding.cite}, \"{fr.finding.statement}\"")
            lines += [f"  - {c.describe()}" for c in fr.checks]
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{f.stem}]({f.relative_to(out) if f.is_relative_to(out) else f})" for f in figures]
    return "\n".join(lines) + "\n"


__all__ = ["CheckResult", "FindingResult", "HOLDS", "FAILS", "NOT_RUN", "eval_value", "rl_value", "evaluate",
           "report_markdown", "summary_line"]
