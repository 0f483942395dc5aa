"""The study's figures (``longcot collect``), from the rows of :mod:`longcot.study.collect`:

* ``fig_sft_scaling.png``: accuracy vs SFT tokens per CoT style (the paper's Fig. 1), the untrained
  model as a dashed baseline, each RL point as a marker (arrow from its SFT start) in the legend;
* ``fig_rl_dynamics.png``: response length and reflection keywords per response over RL steps (each
  rl run's ``metrics.jsonl``: ``response_length_mean``, ``reflection/<keyword>``; §4);
* ``fig_reward_variants.png``: accuracy of each RL point beside its SFT start.

Every figure names the model and the data in its title; every line, bar and marker has a legend
entry; legends sit outside the plotting area, so they hide no data. Each ``*_figure`` function
returns the matplotlib figure (None when the study has nothing to show), :func:`render` writes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from longcot import runs
from longcot.study.graph import Graph

if TYPE_CHECKING:
    from longcot.study.collect import Row

MARKERS = ("^", "v", "D", "s", "P", "X", "*")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def subject(graph: Graph) -> str:
    """What a figure shows: the model trained and evaluated, the training data, the eval benchmark(s)."""
    models, data, benches = [], [], []
    for node in graph.ordered():
        cfg = node.plan.cfg
        if node.stage == "eval":
            b = cfg.benchmark
            benches.append(f"{b.name}" + (f" ({b.limit} problems)" if b.limit else ""))
            models.append(cfg.model.name)
        elif node.stage in ("sft", "rl"):
            data.append(cfg.data.name)
    uniq = lambda xs: ", ".join(dict.fromkeys(xs)) or "-"  # noqa: E731
    return f"model {uniq(models)}; data {uniq(data)}; eval {uniq(benches)}"


def _legend_outside(ax: Any) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8)


def sft_scaling_figure(graph: Graph, result: list["Row"]) -> Optional[Any]:
    """Accuracy vs SFT tokens per style; the untrained baseline; RL points with arrows from their start."""
    scaling = [r for r in result if r.accuracy is not None and r.sft_tokens is not None]
    if not scaling:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4.8))
    for style in sorted({r.style or "?" for r in scaling}):
        pts = sorted((r.sft_tokens, r.accuracy) for r in scaling if (r.style or "?") == style and r.rl is None)
        if pts:
            ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", label=f"{style} CoT SFT")
    from longcot.stages.base import trained_by

    for r in result:  # evals of a model no run of the study trained: the untrained baseline
        if r.accuracy is not None and trained_by(graph.nodes[r.eval_key].plan.upstream) is None:
            ax.axhline(100 * r.accuracy, color="gray", linestyle="--", label=f"untrained ({r.point}, {r.benchmark})")
    variants = sorted({r.rl for r in scaling if r.rl is not None})
    for i, variant in enumerate(variants):
        pts = [r for r in scaling if r.rl == variant]
        gains = ", ".join(f"{100 * r.rl_gain:+.1f}" for r in pts if r.rl_gain is not None)
        ax.scatter([r.sft_tokens for r in pts], [100 * r.accuracy for r in pts], marker=MARKERS[i % len(MARKERS)],
                   s=60, zorder=3, label=f"+RL {variant}" + (f" ({gains} pts)" if gains else ""))
        for r in pts:
            if r.rl_gain is not None:
                ax.annotate("", xy=(r.sft_tokens, 100 * r.accuracy), xytext=(r.sft_tokens, 100 * (r.accuracy - r.rl_gain)),
                            arrowprops={"arrowstyle": "->", "color": "tab:red", "alpha": 0.6})
    ax.set_xlabel("SFT tokens")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
    ax.set_title(f"{graph.study.name}: accuracy vs SFT tokens\n{subject(graph)}", fontsize=10)
    _legend_outside(ax)
    fig.tight_layout()
    return fig


def rl_dynamics_figure(graph: Graph) -> Optional[Any]:
    """Response length and reflection keywords per response over RL steps, one line per RL run."""
    nodes = [n for n in graph.ordered() if n.stage == "rl" and n.plan.done and (n.plan.run_dir / "metrics.jsonl").is_file()]
    if not nodes:
        return None
    plt = _plt()
    fig, (ax_len, ax_ref) = plt.subplots(1, 2, figsize=(12, 4.2))
    for n in nodes:
        recs = runs.read_jsonl(n.plan.run_dir / "metrics.jsonl")
        label = f"{n.plan.cfg.algorithm.name}/{n.plan.cfg.reward.name} ({', '.join(n.points)})"
        steps = [r["step"] for r in recs]
        ax_len.plot(steps, [r.get("response_length_mean") for r in recs], marker=".", label=label)
        ax_ref.plot(steps, [sum(v for k, v in r.items() if k.startswith("reflection/")) for r in recs], marker=".",
                    label=label)
    ax_len.set_xlabel("RL step")
    ax_len.set_ylabel("mean response tokens")
    ax_ref.set_xlabel("RL step")
    ax_ref.set_ylabel("reflection keywords per response")
    ax_len.legend(fontsize=8)
    ax_ref.legend(fontsize=8)
    fig.suptitle(f"{graph.study.name}: RL dynamics (train rollouts)\n{subject(graph)}", fontsize=10)
    fig.tight_layout()
    return fig


def reward_variants_figure(graph: Graph, result: list["Row"]) -> Optional[Any]:
    """Accuracy after RL per RL point, its SFT start as a marker beside the bar."""
    variants = [r for r in result if r.rl is not None and r.accuracy is not None]
    if not variants:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(variants) + 4), 4.2))
    labels = [f"{r.point}\n{r.rl}" for r in variants]
    ax.bar(labels, [100 * r.accuracy for r in variants], color="tab:blue", label="after RL")
    starts = [(lab, 100 * (r.accuracy - r.rl_gain)) for lab, r in zip(labels, variants) if r.rl_gain is not None]
    if starts:
        ax.scatter([s[0] for s in starts], [s[1] for s in starts], color="black", marker="_", s=600, linewidths=2,
                   zorder=3, label="SFT start")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, max(5.0, 1.15 * max([100 * r.accuracy for r in variants] + [s[1] for s in starts])))
    ax.tick_params(axis="x", labelsize=8)
    ax.set_title(f"{graph.study.name}: reward variants\n{subject(graph)}", fontsize=10)
    _legend_outside(ax)
    fig.tight_layout()
    return fig


def render(graph: Graph, result: list["Row"], out: Path) -> list[Path]:
    """Write the study's figures into ``out``; return their paths."""
    plt = _plt()
    written = []
    for name, fig in (("fig_sft_scaling.png", sft_scaling_figure(graph, result)),
                      ("fig_rl_dynamics.png", rl_dynamics_figure(graph)),
                      ("fig_reward_variants.png", reward_variants_figure(graph, result))):
        if fig is not None:
            written.append(_save(fig, out / name))
            plt.close(fig)
    return written


def _save(fig: Any, path: Path) -> Path:
    with runs.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    return path
