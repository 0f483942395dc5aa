"""Plots of an eval run: response lengths (correct vs wrong, truncation) and reflection keywords
(the quantities of the paper's Fig. 2 / §4 length and reflection analyses)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from longcot.runs import atomic_path


def plot_eval(rows: Sequence[dict[str, Any]], summary: dict[str, Any], path: Path) -> Path:
    """Write a two-panel PNG: length histogram by verdict, and reflection keywords per response."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_len, ax_kw) = plt.subplots(1, 2, figsize=(11, 4))
    correct = [r["tokens"] for r in rows if r["correct"]]
    wrong = [r["tokens"] for r in rows if not r["correct"]]
    top = max([r["tokens"] for r in rows] or [1])
    bins = min(40, max(5, top // 8 or 1))
    ax_len.hist([correct, wrong], bins=bins, range=(0, top), stacked=True, label=[f"correct ({len(correct)})", f"wrong ({len(wrong)})"],
                color=["tab:green", "tab:red"])
    ax_len.set_xlabel("response tokens")
    ax_len.set_ylabel("responses")
    ax_len.set_title(f"{summary['benchmark']}: acc {100 * summary['accuracy']:.1f}%, truncated {100 * summary['truncation_rate']:.1f}%")
    ax_len.legend()
    keywords = list(summary["reflection"])
    ax_kw.bar(keywords, [summary["reflection"][k]["per_response"] for k in keywords], color="tab:blue")
    ax_kw.set_ylabel("occurrences per response")
    ax_kw.set_title("reflection keywords")
    fig.suptitle(f"{summary['model']} on {summary['benchmark']} ({summary['num_problems']} problems x {summary['samples_per_problem']})")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
