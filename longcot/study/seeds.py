"""Seeds as a study axis: per point the mean and a 95% interval over its seeds, and the paired
difference between compared arms (``study.compare``) with its interval and whether its sign is the
paper's.

``study.seeds: [0, 1, 2]`` repeats every point once per seed (:mod:`longcot.study.spec`). A comparison::

    compare:
      - {cite: "Fig. 1", a: long-64K, b: short-64K, expect: ">", benchmark: twin}      # accuracy (%)
      - {cite: "Fig. 2", a: classic, b: cosine, expect: ">", rl_metric: response_length_mean, of: change}

is ``a - b`` per seed (the two points of the same seed), then over seeds its mean and a Student-t 95%
interval (n - 1 degrees of freedom; none with one seed). It *reproduces* the paper's direction when the
interval excludes 0 on the ``expect`` side; the sign *matches* when the mean is on that side. Every seed
that finished is reported; none is dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from longcot.study.collect import Row
    from longcot.study.graph import Graph

# two-sided 95% Student-t quantiles t_{0.975, df}
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}
EXPECT = (">", "<")


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (the next lower tabulated df)."""
    if df < 1:
        raise ValueError("t975: needs at least 1 degree of freedom")
    if df > 30:
        return 1.96
    return _T975[max(k for k in _T975 if k <= df)]


@dataclass(frozen=True)
class Interval:
    values: tuple[float, ...]  # per seed, in seed order

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / self.n

    @property
    def half_width(self) -> Optional[float]:
        if self.n < 2:
            return None
        m = self.mean
        sd = math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1))
        return t975(self.n - 1) * sd / math.sqrt(self.n)

    def describe(self, digits: int = 1) -> str:
        hw = self.half_width
        ci = "no interval (1 seed)" if hw is None else \
            f"95% CI [{self.mean - hw:.{digits}f}, {self.mean + hw:.{digits}f}]"
        return f"{self.mean:.{digits}f} ({ci}; n={self.n})"


@dataclass(frozen=True)
class Compare:
    """One comparison of two arms of a study (see the module doc)."""

    a: str
    b: str
    expect: str
    cite: str = ""
    benchmark: Optional[str] = None
    metric: str = "accuracy"
    rl_metric: Optional[str] = None
    of: str = "last"

    def quantity(self) -> str:
        return f"{self.rl_metric} ({self.of})" if self.rl_metric else f"{self.metric} on {self.benchmark}"


def parse_compare(raw: Any, groups: Sequence[str]) -> tuple[Compare, ...]:
    """``study.compare`` checked against the study's point names (one line per error)."""
    if not raw:
        return ()
    out = []
    keys = ("a", "b", "expect", "cite", "benchmark", "metric", "rl_metric", "of")
    for i, c in enumerate(raw):
        where = f"study.compare[{i}]"
        if not isinstance(c, Mapping):
            raise ValueError(f"{where}: must be a mapping with a, b, expect and benchmark or rl_metric")
        bad = [k for k in c if k not in keys]
        if bad:
            raise ValueError(f"{where}.{bad[0]}: unknown key; valid: {', '.join(keys)}")
        for k in ("a", "b"):
            if c.get(k) not in groups:
                raise ValueError(f"{where}.{k}={c.get(k)!r}: not a point of the study; valid: {', '.join(groups)}")
        if c.get("expect") not in EXPECT:
            raise ValueError(f"{where}.expect={c.get('expect')!r}: valid: {', '.join(EXPECT)} (the paper's direction of a - b)")
        if not c.get("rl_metric") and not c.get("benchmark"):
            raise ValueError(f"{where}: give a benchmark (eval {c.get('metric', 'accuracy')}) or an rl_metric")
        if c.get("metric", "accuracy") not in ("accuracy", "mean_tokens", "truncation"):
            raise ValueError(f"{where}.metric={c.get('metric')!r}: valid: accuracy, mean_tokens, truncation")
        if c.get("of", "last") not in ("last", "change"):
            raise ValueError(f"{where}.of={c.get('of')!r}: valid: last, change")
        out.append(Compare(str(c["a"]), str(c["b"]), str(c["expect"]), str(c.get("cite", "")), c.get("benchmark"),
                           str(c.get("metric", "accuracy")), c.get("rl_metric"), str(c.get("of", "last"))))
    return tuple(out)


def per_seed(graph: "Graph", rows: Sequence["Row"], group: str, c: Compare) -> dict[Optional[int], float]:
    """The compared quantity of ``group`` per seed (seeds whose runs are not finished are absent)."""
    from longcot.study.report import rl_value

    seeds = {p.name: p.seed for p in graph.study.points}
    out: dict[Optional[int], float] = {}
    for r in rows:
        if r.group != group or seeds.get(r.point) in out:
            continue
        if c.rl_metric:
            v = rl_value(graph, [r], group, c.rl_metric, c.of)
        else:
            if r.benchmark != c.benchmark:
                continue
            v = getattr(r, c.metric)
            v = None if v is None else (100 * v if c.metric in ("accuracy", "truncation") else v)
        if v is not None:
            out[seeds.get(r.point)] = float(v)
    return out


def why_absent(graph: "Graph", rows: Sequence["Row"], group: str, seed: Optional[int], c: Compare) -> str:
    """Why ``group`` has no value of ``c``'s quantity for ``seed``: its run is not finished (or not in the
    study: ``study.only``), or it finished without logging the RL metric (``rl.repetition_metric_ngram``
    is not identity, so a run that finished before it was asked for keeps the N it logged)."""
    seeds = {p.name: p.seed for p in graph.study.points}
    mine = [r for r in rows if r.group == group and seeds.get(r.point) == seed]
    if not mine:
        return "not in this study's points"
    if c.rl_metric:
        keys = [r.rl_key for r in mine if r.rl_key]
        if not keys:
            return "no RL run"
        if all(graph.nodes[k].plan.done for k in keys):
            return f"{c.rl_metric} not logged"
    return "not finished"


@dataclass(frozen=True)
class CompareResult:
    compare: Compare
    a: dict[Optional[int], float]
    b: dict[Optional[int], float]
    # the study's seeds with no paired value, and why (arm: reason), shown beside the verdict
    unpaired: Mapping[Optional[int], str] = field(default_factory=dict)

    @property
    def diff(self) -> Optional[Interval]:
        both = [s for s in self.a if s in self.b]
        return Interval(tuple(self.a[s] - self.b[s] for s in both)) if both else None

    @property
    def verdict(self) -> str:
        d = self.diff
        if d is None:
            return "not run"
        sign = 1 if self.compare.expect == ">" else -1
        hw = d.half_width
        if hw is not None and sign * d.mean - hw > 0:
            return "reproduced"
        if hw is not None and sign * d.mean + hw < 0:
            return "opposite"
        if hw is None:  # one seed: no interval to test, only a sign
            return "sign matches, one seed (no interval)" if sign * d.mean > 0 else "sign does not match, one seed"
        return "sign matches, interval includes 0" if sign * d.mean > 0 else "sign does not match"

    def line(self) -> str:
        c = self.compare
        head = f"{c.cite + ': ' if c.cite else ''}{c.a} {c.expect} {c.b} in {c.quantity()}"
        d = self.diff
        if d is None:
            return f"{head}: not run{self._unpaired()}"
        digits = 3 if fine_metric(c.rl_metric) else 1  # a share or a per-response rate needs more than one decimal
        seeds = ", ".join(f"s{s}: {self.a[s] - self.b[s]:+.{digits}f}" for s in self.a if s in self.b)
        return f"{head}: {self.verdict.upper()} -- difference {d.describe(digits)}; per seed {seeds}{self._unpaired()}"

    def _unpaired(self) -> str:
        """The seeds left out of the interval, named with why, so n below the study's seeds is never silent."""
        if not self.unpaired:
            return ""
        reasons = set(self.unpaired.values())
        if len(self.unpaired) > 1 and len(reasons) == 1 and not self.a.keys() & self.b.keys():
            return f"; left out (no pair): every seed ({reasons.pop()})"  # one reason for all: said once
        return "; left out (no pair): " + ", ".join(f"s{s} ({why})" for s, why in self.unpaired.items())


# RL metrics shown with three decimals: shares of responses (0..1), and per-response rates of keywords
# (reflection/<keyword>) and repetition (repetition/rate_<N>gram, repetition/token_share_<N>gram)
FRACTIONS = ("truncation_ratio", "accuracy", "clip_frac")
FINE_PREFIXES = ("reflection/", "repetition/")


def fine_metric(rl_metric: Optional[str]) -> bool:
    """Whether an RL metric's values are small enough (0 to a few) that one decimal would hide them."""
    return rl_metric is not None and (rl_metric in FRACTIONS or rl_metric.startswith(FINE_PREFIXES))


def compare_all(graph: "Graph", rows: Sequence["Row"]) -> list[CompareResult]:
    out = []
    for c in graph.study.compare:
        a, b = per_seed(graph, rows, c.a, c), per_seed(graph, rows, c.b, c)
        unpaired = {}
        for seed in dict.fromkeys(p.seed for p in graph.study.points):
            why = [f"{g}: {why_absent(graph, rows, g, seed, c)}" for g, v in ((c.a, a), (c.b, b)) if seed not in v]
            if why:
                unpaired[seed] = "; ".join(why)
        out.append(CompareResult(c, a, b, unpaired))
    return out


def point_intervals(rows: Sequence["Row"]) -> list[tuple[str, str, Optional[Interval], Optional[Interval], int]]:
    """Per (group, benchmark): accuracy (%) and mean tokens over the finished seeds, and how many seeds ran."""
    keys = list(dict.fromkeys((r.group, r.benchmark) for r in rows))
    out = []
    for g, b in keys:
        rs = [r for r in rows if r.group == g and r.benchmark == b]
        acc = [100 * r.accuracy for r in rs if r.accuracy is not None]
        tok = [r.mean_tokens for r in rs if r.mean_tokens is not None]
        out.append((g, b, Interval(tuple(acc)) if acc else None, Interval(tuple(tok)) if tok else None, len(rs)))
    return out


def seeds_markdown(graph: "Graph", rows: Sequence["Row"], results: Sequence[CompareResult],
                   typed: Sequence[str]) -> str:
    """``seeds.md``: per point the mean and 95% interval over seeds, then each comparison; ``typed`` as in
    :func:`longcot.study.report.report_markdown`."""
    s = graph.study
    lines = [f"# {s.name}: over seeds {list(s.seeds)}", "", *typed,
             "Mean over the seeds that finished, Student-t 95% interval; every seed is reported.", "",
             "| point | benchmark | seeds done | accuracy % per seed | accuracy % | mean tokens |", "|---|---|---|---|---|---|"]
    for g, b, acc, tok, n in point_intervals(rows):
        per = "-" if acc is None else ", ".join(f"{v:.1f}" for v in acc.values)
        lines.append(f"| {g} | {b} | {0 if acc is None else acc.n}/{n} | {per} | "
                     f"{'not run' if acc is None else acc.describe()} | {'-' if tok is None else tok.describe(0)} |")
    if results:
        lines += ["", "## Comparisons (a - b, paired by seed)", ""]
        lines += [f"- {r.line()}" for r in results]
    lines += sft_starts_markdown(graph, rows)
    return "\n".join(lines) + "\n"


def sft_starts_markdown(graph: "Graph", rows: Sequence["Row"]) -> list[str]:
    """The ``## SFT starts`` section: per SFT run the points start from (by seed), where its training ended
    (mean loss over the last 10% of steps, :func:`longcot.training.metrics.tail_loss`) and its own eval's
    accuracy, so a comparison that misses on one seed can be read against that seed's start (a student
    that has not learned the task ends higher and RL moves it little). Nothing is dropped or chosen by it."""
    from longcot.training.metrics import METRICS, MetricsLog, tail_loss

    seeds = {p.name: p.seed for p in graph.study.points}
    starts: dict[str, list[str]] = {}
    own: dict[str, str] = {}
    seed_of: dict[str, Optional[int]] = {}
    for r in rows:
        if r.sft_key is None:
            continue
        seed_of[r.sft_key] = seeds.get(r.point)
        groups = starts.setdefault(r.sft_key, [])
        if r.group not in groups:
            groups.append(r.group)
        if r.rl_key is None and r.accuracy is not None and r.sft_key not in own:
            own[r.sft_key] = f"{100 * r.accuracy:.1f} ({r.benchmark})"
    if not starts:
        return []
    lines = ["", "## SFT starts", "",
             "Where each SFT run the points start from ended, by seed: a student that has not learned the task ends",
             "with a higher training loss and a lower accuracy, and RL moves it little. Shown to read the comparisons",
             "against their starts; every seed stays in every number above.", "",
             "| SFT run of | seed | steps | training loss, last 10% of steps | its own eval: accuracy % |",
             "|---|---|---|---|---|"]
    for key, groups in starts.items():
        plan = graph.nodes[key].plan
        recs = MetricsLog(plan.run_dir / METRICS).records()
        loss = tail_loss(recs)
        state = "" if plan.done else (" (not finished)" if recs else "")
        lines.append(f"| {', '.join(groups)} | {'-' if seed_of[key] is None else seed_of[key]} | "
                     f"{len(recs) if recs else 'not run'}{state} | {'-' if loss is None else f'{loss:.3f}'} | "
                     f"{own.get(key, '-')} |")
    return lines


__all__ = ["Compare", "CompareResult", "Interval", "compare_all", "why_absent", "parse_compare", "point_intervals",
           "seeds_markdown", "sft_starts_markdown", "t975"]
