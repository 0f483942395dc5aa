"""Does a longer response win within its own problem? §4.1's premise as a group-level quantity.

§4.1 (Fig. 2): under a correctness-only reward "longer reasoning is more often right", so RL lengthens
responses. A group-relative reward (GRPO, RLOO) only compares samples of the same prompt, so what pushes
length is the length difference between the right and the wrong samples *of one problem*, not the pooled
``mean_tokens_correct`` vs ``mean_tokens_wrong`` (pooled, hard problems make wrong answers look long even
where, per problem, the longer attempt is the one that wins). Over the problems with at least one right
and one wrong sample ("mixed"):

* ``right_minus_wrong``: the mean over mixed problems of (mean tokens of its right samples - mean tokens
  of its wrong samples); > 0: within a problem the right attempts are the longer ones;
* ``share_right_longer``: the share of mixed problems where that difference is > 0 (ties count as not);
* ``mixed``: how many problems are mixed (all-right and all-wrong groups carry no group advantage).

Usage on finished eval runs: ``python -m longcot.analysis.length <eval run dir>...`` (reads each
``samples.jsonl``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence


def length_gap(groups: Iterable[Sequence[tuple[bool, int]]]) -> Optional[dict[str, float]]:
    """``groups``: per problem, its samples as (correct, tokens). None when no group is mixed."""
    diffs: list[float] = []
    for group in groups:
        right = [t for ok, t in group if ok]
        wrong = [t for ok, t in group if not ok]
        if right and wrong:
            diffs.append(sum(right) / len(right) - sum(wrong) / len(wrong))
    if not diffs:
        return None
    return {
        "mixed": float(len(diffs)),
        "right_minus_wrong": sum(diffs) / len(diffs),
        "share_right_longer": sum(d > 0 for d in diffs) / len(diffs),
    }


def length_gap_of_rows(rows: Iterable[dict[str, Any]]) -> Optional[dict[str, float]]:
    """:func:`length_gap` over eval sample rows (``problem_id``, ``correct``, ``tokens``), grouped by problem."""
    by_problem: dict[str, list[tuple[bool, int]]] = {}
    for r in rows:
        by_problem.setdefault(str(r["problem_id"]), []).append((bool(r["correct"]), int(r["tokens"])))
    return length_gap(by_problem.values())


def main(argv: Sequence[str]) -> int:
    if not argv:
        print("usage: python -m longcot.analysis.length <eval run dir>...", file=sys.stderr)
        return 2
    for arg in argv:
        path = Path(arg) / "samples.jsonl"
        if not path.is_file():
            print(f"{arg}: no samples.jsonl (not an eval run directory, or not finished)", file=sys.stderr)
            return 1
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        gap = length_gap_of_rows(rows)
        problems = len({r["problem_id"] for r in rows})
        if gap is None:
            print(f"{arg}: 0 of {problems} problems mixed (every problem all right or all wrong)")
        else:
            print(f"{arg}: {gap['mixed']:.0f} of {problems} problems mixed; right - wrong tokens within a problem "
                  f"{gap['right_minus_wrong']:+.1f}; right longer in {100 * gap['share_right_longer']:.0f}% of them")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
