"""The paper's numbers and statements in a study file (``study.paper``), parsed and checked.

A study's ``paper:`` section has three keys::

    paper:
      source: "arXiv:2502.03373v1, Table 1"     # where every number below comes from
      values:                                   # point -> benchmark -> accuracy (%), copied exactly;
        emergent: {math500: 54.1, avg: 27.9}    #   ``avg``: the paper's mean of its four benchmarks
      findings:                                 # statements of the paper's plots (only text exists),
        - cite: "Fig. 1"                        #   each checked qualitatively on our results
          statement: "long CoT SFT > 70% on MATH-500 at >= 3.5B tokens"
          checks:
            - {point: long-n256, benchmark: math500, above: 70}

A check compares one of our quantities with a bound: ``above`` / ``below`` a number, or ``about`` it
within ``tol`` (required: the tolerance is ours, not the paper's). The quantity is the point's
``metric`` on ``benchmark`` (``accuracy`` in %, the default, or ``mean_tokens``; ``benchmark: avg`` is
the mean over the four benchmarks), or an ``rl_metric`` of the point's RL run (a ``metrics.jsonl`` key:
``of: last`` = the mean of its last quarter of steps, ``of: change`` = that minus the first quarter's);
with ``minus: <point>`` it is the difference to the same quantity of another point. A finding holds
when every check holds; it is "not run" while any quantity is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

AVG = "avg"
FOUR = ("math500", "aime24", "theoremqa", "mmlu_pro_1k")  # the paper's benchmarks, its AVG's columns
EVAL_METRICS = ("accuracy", "mean_tokens")
RL_OF = ("last", "change")
OPS = ("above", "below", "about")


@dataclass(frozen=True)
class Check:
    """One comparison of our results with a bound (see the module doc)."""

    point: str
    op: str  # above | below | about
    bound: float
    tol: Optional[float] = None
    benchmark: Optional[str] = None
    metric: str = "accuracy"
    rl_metric: Optional[str] = None
    of: str = "last"
    minus: Optional[str] = None

    def describe(self) -> str:
        what = (f"{self.rl_metric} ({self.of}) of {self.point}" if self.rl_metric
                else f"{self.metric} {self.benchmark} of {self.point}")
        if self.minus:
            what += f" - {self.minus}"
        bound = f"{self.bound:g}" + (f" +- {self.tol:g}" if self.op == "about" else "")
        return f"{what} {self.op} {bound}"

    def holds(self, value: float) -> bool:
        if self.op == "above":
            return value > self.bound
        if self.op == "below":
            return value < self.bound
        assert self.tol is not None
        return abs(value - self.bound) <= self.tol


@dataclass(frozen=True)
class Finding:
    cite: str
    statement: str
    checks: tuple[Check, ...]


@dataclass(frozen=True)
class Paper:
    """A parsed ``study.paper``: cited values per point and benchmark, and the plot statements."""

    source: str = ""
    values: dict[str, dict[str, float]] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.values or self.findings)

    def value(self, point: str, benchmark: str) -> Optional[float]:
        return self.values.get(point, {}).get(benchmark)


def _number(x: Any, where: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"{where}: must be a number, got {x!r}")
    return float(x)


def parse_paper(raw: Optional[Mapping[str, Any]], points: Sequence[str]) -> Paper:
    """``study.paper`` (a plain mapping) checked against the study's point names; one line per error."""
    if not raw:
        return Paper()
    names = set(points)
    valid = ", ".join(sorted(names))
    unknown = [k for k in raw if k not in ("source", "values", "findings")]
    if unknown:
        raise ValueError(f"study.paper.{unknown[0]}: unknown key; valid: source, values, findings")
    values: dict[str, dict[str, float]] = {}
    for point, row in (raw.get("values") or {}).items():
        if point not in names:
            raise ValueError(f"study.paper.values.{point}: not a point of the study; valid: {valid}")
        if not isinstance(row, Mapping):
            raise ValueError(f"study.paper.values.{point}: must map benchmarks to numbers, got {row!r}")
        values[point] = {str(b): _number(v, f"study.paper.values.{point}.{b}") for b, v in row.items()}
    if values and not raw.get("source"):
        raise ValueError("study.paper.source: say where the numbers come from (e.g. 'arXiv:2502.03373v1, Table 1')")
    findings = []
    for i, f in enumerate(raw.get("findings") or []):
        where = f"study.paper.findings[{i}]"
        if not isinstance(f, Mapping) or not f.get("statement") or not f.get("cite") or not f.get("checks"):
            raise ValueError(f"{where}: needs cite, statement and a list of checks")
        findings.append(Finding(str(f["cite"]), str(f["statement"]),
                                tuple(_check(c, f"{where}.checks[{j}]", names, valid) for j, c in enumerate(f["checks"]))))
    return Paper(str(raw.get("source") or ""), values, tuple(findings))


def _check(c: Any, where: str, names: set[str], valid: str) -> Check:
    keys = ("point", "minus", "benchmark", "metric", "rl_metric", "of", "tol", *OPS)
    if not isinstance(c, Mapping):
        raise ValueError(f"{where}: must be a mapping with point and one of {', '.join(OPS)}")
    bad = [k for k in c if k not in keys]
    if bad:
        raise ValueError(f"{where}.{bad[0]}: unknown key; valid: {', '.join(keys)}")
    for k in ("point", "minus"):
        if k in c and c[k] not in names:
            raise ValueError(f"{where}.{k}={c[k]!r}: not a point of the study; valid: {valid}")
    if "point" not in c:
        raise ValueError(f"{where}.point: missing")
    ops = [k for k in OPS if k in c]
    if len(ops) != 1:
        raise ValueError(f"{where}: give exactly one of {', '.join(OPS)}")
    op = ops[0]
    tol = _number(c["tol"], f"{where}.tol") if "tol" in c else None
    if op == "about" and tol is None:
        raise ValueError(f"{where}.tol: 'about' needs a tolerance (ours, stated in the file)")
    rl_metric = c.get("rl_metric")
    metric = str(c.get("metric", "accuracy"))
    if rl_metric is None:
        if metric not in EVAL_METRICS:
            raise ValueError(f"{where}.metric={metric!r}: unknown; valid: {', '.join(EVAL_METRICS)} (or rl_metric)")
        if not c.get("benchmark"):
            raise ValueError(f"{where}.benchmark: missing (a benchmark name or {AVG})")
    of = str(c.get("of", "last"))
    if of not in RL_OF:
        raise ValueError(f"{where}.of={of!r}: unknown; valid: {', '.join(RL_OF)}")
    return Check(str(c["point"]), op, _number(c[op], f"{where}.{op}"), tol, c.get("benchmark"), metric,
                 None if rl_metric is None else str(rl_metric), of, c.get("minus"))


__all__ = ["AVG", "FOUR", "Check", "Finding", "Paper", "parse_paper"]
