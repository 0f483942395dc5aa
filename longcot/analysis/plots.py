"""Plots of an eval run: response lengths (correct vs wrong, truncation) and reflection keywords
(the quantities of the paper's Fig. 2 / §4 length and reflection analyses)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from longcot.runs import atomic_path


def plot_eval(rows: Sequence[dict[str, Any]], summary: dict[str, Any], path: Path) -> Path:
    """Write :func:`eval_figure` as a PNG (atomically)."""
    import matplotlib.pyplot as plt

    fig = eval_figure(rows, summary)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def eval_figure(rows: Sequence[dict[str, Any]], summary: dict[str, Any]) -> Any:
    """Two panels: length histogram by verdict, and reflection keywords per response; the title names
    the model, the checkpoint (``summary["checkpoint"]``: the training run, or untrained) and the data."""
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
    freq = [summary["reflection"][k]["per_response"] for k in keywords]
    ax_kw.bar(keywords, freq, color="tab:blue", label="occurrences per response")
    ax_kw.set_ylabel("occurrences per response")
    ax_kw.set_title("reflection keywords")
    if not any(freq):  # an all-zero panel would get a meaningless -0.04..0.04 axis
        ax_kw.set_ylim(0, 1)
        ax_kw.text(0.5, 0.5, "no reflection keyword in any response", transform=ax_kw.transAxes, ha="center",
                   va="center", color="gray")
    ax_kw.legend(fontsize=8)
    checkpoint = summary.get("checkpoint") or "untrained"
    sampling = summary.get("sampling") or {}
    fig.suptitle(f"{summary['model']} ({checkpoint}) on {summary['benchmark']}: {summary['num_problems']} problems x "
                 f"{summary['samples_per_problem']}" + (f", max {sampling['max_new_tokens']} new tokens"
                                                        if sampling.get("max_new_tokens") else ""), fontsize=10)
    fig.tight_layout()
    return fig
