"""``rl_progress.png``: the quantities the paper's §4 figures follow over RL steps -- response length
(mean, max), accuracy and reward, and reflection-keyword frequency per response."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from longcot.analysis.reflection import REFLECTION_KEYWORDS
from longcot.runs import atomic_path


def plot_rl_progress(records: Sequence[dict[str, Any]], path: Path, *, title: str = "RL") -> Path:
    """Three panels over steps: lengths, accuracy/reward, reflection keywords (atomic PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_len, ax_acc, ax_kw) = plt.subplots(1, 3, figsize=(15, 4))
    steps = [r["step"] for r in records]
    if records:
        ax_len.plot(steps, [r["response_length_mean"] for r in records], label="mean")
        ax_len.plot(steps, [r["response_length_max"] for r in records], label="max", alpha=0.6)
        ax_acc.plot(steps, [r["accuracy"] for r in records], label="accuracy", color="tab:green")
        ax_acc.plot(steps, [r["truncation_ratio"] for r in records], label="truncated", color="tab:red", alpha=0.6)
        ax_r = ax_acc.twinx()
        ax_r.plot(steps, [r["reward"] for r in records], label="reward", color="tab:purple", alpha=0.6)
        ax_r.set_ylabel("mean reward")
        for kw in REFLECTION_KEYWORDS:
            ax_kw.plot(steps, [r.get(f"reflection/{kw}", 0.0) for r in records], label=kw)
    ax_len.set_title("response length (tokens)")
    ax_acc.set_title("accuracy, truncation ratio (train rollouts)")
    ax_kw.set_title("reflection keywords per response")
    for ax in (ax_len, ax_acc, ax_kw):
        ax.set_xlabel("RL step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)
