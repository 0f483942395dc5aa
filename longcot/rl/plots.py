"""``rl_progress.png``: the quantities the paper's §4 figures follow over RL steps -- response length
(mean, max), accuracy and reward, and reflection-keyword frequency per response."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from longcot.analysis.reflection import REFLECTION_KEYWORDS
from longcot.runs import atomic_path


def plot_rl_progress(records: Sequence[dict[str, Any]], path: Path, *, title: str = "RL") -> Path:
    """Write :func:`rl_progress_figure` as a PNG (atomically)."""
    import matplotlib.pyplot as plt

    fig = rl_progress_figure(records, title)
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def rl_progress_figure(records: Sequence[dict[str, Any]], title: str = "RL") -> Any:
    """Three panels over steps: lengths, accuracy/truncation with the reward on a second axis (one
    legend for both), reflection keywords."""
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
    for ax in (ax_len, ax_kw):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    middle = [ax for ax in fig.axes if ax not in (ax_len, ax_kw)]  # accuracy and its reward twin: one legend
    handles = [h for ax in middle for h in ax.get_legend_handles_labels()[0]]
    if handles:
        middle[-1].legend(handles, [h.get_label() for h in handles], fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def progress_title(algorithm: str, reward: str, model: Any, problems: Sequence[Any]) -> str:
    """The figure's title: algorithm and reward, the policy (its starting checkpoint: the training run
    whose ``final/`` it is, else untrained) and the training prompts."""
    path = Path(str(model.path))
    start = f"from {path.parents[1].name}" if path.parent.name == "final" else "untrained start"
    kinds = ", ".join(dict.fromkeys(p.kind for p in problems)) or "no"
    return f"{algorithm} / {reward}: policy {model.name} ({start}); {len(problems)} {kinds} training prompts"
