"""The study's figures (``longcot collect``), from the rows of :mod:`longcot.study.collect`:

* ``fig_sft_scaling.png``: accuracy vs SFT tokens (log x) per CoT style (the paper's Fig. 1), the
  untrained model as a dashed baseline, each RL point as a marker (arrow from its SFT start) in the
  legend; with study seeds, each point's mean over seeds, each seed, and the 95% interval of the mean;
* ``fig_rl_dynamics.png``: training accuracy, response length, exceed rate, reflection keywords,
  "alternatively" per response and the repetition rate over RL steps (each rl run's ``metrics.jsonl``;
  §4's Figs. 2, 4, 10), per RL point, each step faint and a trailing mean bold; with seeds the mean and a
  min-max band;
* ``fig_reward_variants.png``: per RL point, held-out accuracy beside its SFT start and held-out mean
  response tokens (Fig. 9's length per reward variant); with seeds, means, each seed and 95% intervals.

Every figure names the model and the data in its title; every line, bar and marker has a legend
entry; legends sit outside the plotting area, so they hide no data. Each ``*_figure`` function
returns the matplotlib figure (None when the study has nothing to show), :func:`render` writes them.
"""

from __future__ import annotations

import re
import textwrap
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


def _grouped(rows: list["Row"]) -> dict[tuple[Any, ...], list["Row"]]:
    """Rows of the same study point over its seeds (group, benchmark, RL variant), in order."""
    out: dict[tuple[Any, ...], list["Row"]] = {}
    for r in rows:
        out.setdefault((r.group, r.benchmark, r.rl), []).append(r)
    return out


def _x(rows: list["Row"]) -> float:
    """A point's SFT tokens over its seeds (each seed's budget selection differs by a few tokens)."""
    xs = sorted(r.sft_tokens for r in rows if r.sft_tokens is not None)
    return float(xs[len(xs) // 2])


ACCURACY_RANGE = (0.0, 100.0)  # where an accuracy (%) interval is drawn
EPOCHS_SPREAD = 1.06  # a style's second epoch count sits this factor right of the first, at the same budget


def _seed_marks(ax: Any, xs: list[float], groups: list[list["Row"]], name: str, color: Any, values: Any,
                bounds: tuple[float, float] | None = None) -> None:
    """With seeds: each seed as a faint dot and the Student-t 95% interval of the mean as a bar, drawn
    within ``bounds`` (an accuracy's 0-100%: with 3 seeds the interval can pass them; the legend says so
    and ``seeds.md`` keeps the interval as computed)."""
    from longcot.study.seeds import Interval

    if not any(len(g) > 1 for g in groups):
        return
    ax.scatter([x for x, g in zip(xs, groups) for _ in g], [v for g in groups for v in values(g)], color=color,
               alpha=0.35, s=14, zorder=2, label=f"{name}: each seed")
    spans = [(x, iv.mean, iv.half_width) for x, iv in ((x, Interval(tuple(values(g)))) for x, g in zip(xs, groups))
             if iv.half_width is not None]
    if spans:
        lo, hi = bounds or (float("-inf"), float("inf"))
        clipped = any(m - hw < lo or m + hw > hi for _, m, hw in spans)
        label = f"{name}: 95% CI of the mean over seeds" + (f" (drawn within {lo:g}-{hi:g})" if clipped else "")
        ax.vlines([x for x, _, _ in spans], [max(m - hw, lo) for _, m, hw in spans], [min(m + hw, hi) for _, m, hw in spans],
                  color=color, alpha=0.8, linewidth=2, label=label)


RL_BESIDE = 1.12  # an RL point sits this factor right of its SFT start on the log axis, not on top of it
RL_SPREAD = 1.08  # and each further RL series this factor further right


def rl_series(rows: list["Row"]) -> list[tuple[str, list[list["Row"]]]]:
    """The RL points as legend series: one per RL variant (algorithm/reward), its points over the SFT
    starts; a variant with two points from the same start (e.g. only the window differs) is split into
    one series per point, named after it, so no two points of a series coincide or share a label."""
    out: list[tuple[str, list[list["Row"]]]] = []
    for variant in sorted({r.rl for r in rows if r.rl is not None}):
        groups = list(_grouped([r for r in rows if r.rl == variant]).values())
        starts = [(g[0].style, _x(g)) for g in groups]
        if len(set(starts)) == len(starts):
            out.append((f"+RL {variant}", groups))
        else:
            out += [(f"+RL {variant} ({g[0].group})", [g]) for g in groups]
    return out


def token_count(x: float) -> str:
    """A token count as an axis label: 128000 -> 128K, 1000123 -> 1M, 999999 -> 1M, 2.5e9 -> 2.5B.
    Rounded to 3 significant digits before the unit is picked, so a count just under a unit takes it."""
    rounded = float(f"{x:.3g}")
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if rounded >= div:
            return f"{rounded / div:.3g}{suffix}"
    return f"{rounded:.0f}"


def _budget_ticks(ax: Any, xs: list[float]) -> None:
    """One labelled tick per SFT budget (the styles' token counts at a budget differ by a few %, so ticks
    within 20% are one), no labelled minor ticks: log axes' default minor labels (2x10^5, 3x10^5, ...)
    collide between budgets a decade apart."""
    from matplotlib.ticker import NullFormatter

    ticks: list[float] = []
    for x in sorted(xs):
        if not ticks or x > ticks[-1] * 1.2:
            ticks.append(x)
    if ticks:
        ax.set_xticks(ticks, [token_count(x) for x in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())


def sft_scaling_figure(graph: Graph, result: list["Row"]) -> Optional[Any]:
    """Accuracy vs SFT tokens (log x) per style; the untrained baseline; RL points with arrows from their
    start. With study seeds each point is the mean over its seeds, beside each seed and the 95% interval."""
    scaling = [r for r in result if r.accuracy is not None and r.sft_tokens is not None]
    if not scaling:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4.8))
    acc = lambda g: [100 * r.accuracy for r in g]  # noqa: E731
    mean = lambda vs: sum(vs) / len(vs)  # noqa: E731
    shift: dict[tuple[str, Optional[float]], float] = {}  # (style, epochs) -> x factor of its series
    for style in sorted({r.style or "?" for r in scaling}):
        of_style = [r for r in scaling if (r.style or "?") == style and r.rl is None]
        # one series per epoch count where a style's SFT runs differ in it (twin_fig1_epochs), drawn side by side
        epochs = sorted({r.sft_epochs for r in of_style}, key=lambda e: (e is None, e or 0.0))
        for j, ep in enumerate(epochs):
            groups = sorted(_grouped([r for r in of_style if r.sft_epochs == ep]).values(), key=_x)
            name = style + (f", {ep:g} epochs" if len(epochs) > 1 and ep is not None else "")
            shift[(style, ep)] = EPOCHS_SPREAD ** j
            xs, means = [_x(g) * shift[(style, ep)] for g in groups], [mean(acc(g)) for g in groups]
            n = max(len(g) for g in groups)
            (line,) = ax.plot(xs, means, marker="o", label=f"{name} CoT SFT" + (f" (mean of {n} seeds)" if n > 1 else ""))
            _seed_marks(ax, xs, groups, name, line.get_color(), acc, ACCURACY_RANGE)
    from longcot.stages.base import trained_by

    base = [r for r in result if r.accuracy is not None and trained_by(graph.nodes[r.eval_key].plan.upstream) is None]
    for (group, bench, _), g in _grouped(base).items():  # evals of a model no run of the study trained
        ax.axhline(mean(acc(g)), color="gray", linestyle="--",
                   label=f"untrained ({group}, {bench})" + (f", mean of {len(g)} seeds" if len(g) > 1 else ""))
    for i, (name, groups) in enumerate(rl_series(scaling)):
        starts = [_x(g) * shift.get((g[0].style or "?", g[0].sft_epochs), 1.0) for g in groups]
        # each series one step further right, so RL points from the same start do not hide each other
        xs, means = [x * RL_BESIDE * RL_SPREAD ** i for x in starts], [mean(acc(g)) for g in groups]
        gains = [[100 * r.rl_gain for r in g if r.rl_gain is not None] for g in groups]
        shown = ", ".join(f"{g[0].style or '?'} {mean(v):+.1f}" for g, v in zip(groups, gains) if v)
        sc = ax.scatter(xs, means, marker=MARKERS[i % len(MARKERS)], s=60, zorder=3,
                        label=name + (f" ({shown} pts)" if shown else ""))
        _seed_marks(ax, xs, groups, name, sc.get_facecolor()[0], acc, ACCURACY_RANGE)
        for x0, x, m, v in zip(starts, xs, means, gains):
            if v:
                ax.annotate("", xy=(x, m), xytext=(x0, m - mean(v)),
                            arrowprops={"arrowstyle": "->", "color": "tab:red", "alpha": 0.6})
    lo, hi = min(r.sft_tokens for r in scaling), max(r.sft_tokens for r in scaling)
    if lo > 0:
        ax.set_xscale("log")
        if hi < 4 * lo:  # one budget (or close ones): a decade around them, not ticks crowded on a sliver
            ax.set_xlim(lo / 3, hi * 3)
        _budget_ticks(ax, [_x(g) for g in _grouped([r for r in scaling if r.rl is None]).values()])
    ax.set_xlabel("SFT tokens (log scale)" if ax.get_xscale() == "log" else "SFT tokens")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
    ax.set_title(f"{graph.study.name}: accuracy vs SFT tokens\n{subject(graph)}", fontsize=10)
    _legend_outside(ax)
    fig.tight_layout()
    return fig


RL_PANELS = (  # (metrics.jsonl key or None for the keyword sum, y label); §4's Figs. 2, 4 and 10
    ("accuracy", "training accuracy (rollouts)"),
    ("response_length_mean", "mean response tokens"),
    ("truncation_ratio", "exceed rate (truncated share)"),
    (None, "reflection keywords per response"),
    ("reflection/alternatively", '"alternatively" per response'),
    ("repetition/rate_{ngram}gram", "repetition rate (share of rollouts\nrepeating an N-gram; N = {ngram})"),
)


def rolling(values: list[float], window: int) -> list[float]:
    """Trailing mean over the last ``window`` values (fewer at the start): one step's batch of prompts
    moves a small model's rollout metrics by more than RL does, so trends need a window."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


REPETITION_KEY = re.compile(r"repetition/rate_(\d+)gram")  # the repetition rate, its N in the name


def logged_ngram(runs_of_arm: list[list[dict[str, Any]]], wanted: int) -> Optional[int]:
    """The N of the repetition rate to draw for an arm: ``wanted`` when some run holds it in every record
    (the runs that do not are left out of that panel, and named), else the smallest N every record of
    every run holds, else None (not logged: runs from before the metric)."""
    held_by_run = []
    for recs in runs_of_arm:
        held: Optional[set[int]] = None
        for r in recs:
            ns = {int(m.group(1)) for k in r if (m := REPETITION_KEY.fullmatch(k))}
            held = ns if held is None else held & ns
        held_by_run.append(held or set())
    if any(wanted in h for h in held_by_run):
        return wanted
    common = set.intersection(*held_by_run) if held_by_run else set()
    return min(common) if common else None


def rl_dynamics_figure(graph: Graph) -> Optional[Any]:
    """Training accuracy, response length, exceed rate, reflection keywords, "alternatively" and the
    repetition rate over RL steps (train rollouts), one colour per RL point: each step faint, a trailing
    mean over a tenth of the steps bold; with study seeds the mean over the seeds' runs and a band from
    their minimum to their maximum. A metric some run did not log is not drawn for that run (never as 0):
    the panel names the points it leaves out, and those it draws over fewer seeds than the others."""
    nodes = [n for n in graph.ordered() if n.stage == "rl" and n.plan.done and (n.plan.run_dir / "metrics.jsonl").is_file()]
    if not nodes:
        return None
    group_of = {p.name: p.group or p.name for p in graph.study.points}
    arms: dict[str, list[list[dict[str, Any]]]] = {}
    wanted: dict[str, int] = {}  # the study's rl.repetition_metric_ngram per point
    for n in nodes:
        groups = ", ".join(dict.fromkeys(group_of.get(p, p) for p in n.points))
        label = f"{n.plan.cfg.algorithm.name}/{n.plan.cfg.reward.name} ({groups})"
        arms.setdefault(label, []).append(runs.read_jsonl(n.plan.run_dir / "metrics.jsonl"))
        wanted[label] = n.plan.cfg.rl.repetition_metric_ngram
    # The N is not identity, so a reused run may have logged another one: draw the N its records hold
    # (the study's when they hold it), and say which.
    arm_ngram = {label: logged_ngram(recs_of_arm, wanted[label]) for label, recs_of_arm in arms.items()}
    ngram = "/".join(str(v) for v in sorted({v for v in arm_ngram.values() if v is not None})) or str(
        sorted(set(wanted.values()))[0])
    plt = _plt()
    fig, axes = plt.subplots(3, 2, figsize=(12, 10.5))
    reflection = lambda r: sum(v for k, v in r.items() if k.startswith("reflection/"))  # noqa: E731
    not_logged: dict[int, list[str]] = {}
    partly: dict[int, list[str]] = {}  # panel -> arms drawn over only the seeds whose runs logged its metric
    for label, runs_of_arm in arms.items():
        seeds = [{r["step"]: r for r in recs} for recs in runs_of_arm]  # each seed's records by step
        steps = sorted(set.intersection(*[set(by_step) for by_step in seeds]))
        window = max(1, len(steps) // 10)
        seeds_note = f", mean of {len(seeds)} seeds" if len(seeds) > 1 else ""
        color = None
        for i, (ax, (key, ylabel)) in enumerate(zip(axes.flat, RL_PANELS)):
            ax.set_xlabel("RL step")
            ax.set_ylabel(ylabel.format(ngram=ngram))
            key = key and key.format(ngram=arm_ngram[label] or wanted[label])
            drawn = seeds if key is None else [by_step for by_step in seeds if all(key in by_step[s] for s in steps)]
            if not drawn:
                not_logged.setdefault(i, []).append(label)  # an older run: this metric was not logged
                continue
            note = seeds_note
            if len(drawn) < len(seeds):  # some seeds' runs are older: drawn over those that logged it, said so
                partly.setdefault(i, []).append(f"{label}: {len(drawn)} of {len(seeds)} seeds")
                note = f", mean of {len(drawn)} of {len(seeds)} seeds"
            value = reflection if key is None else (lambda r, k=key: r[k] or 0.0)
            per_seed = [[float(value(by_step[s])) for s in steps] for by_step in drawn]
            smooth_seeds = [rolling(v, window) for v in per_seed]
            (raw,) = ax.plot(steps, [sum(v) / len(v) for v in zip(*per_seed)], color=color, alpha=0.3, linewidth=0.8,
                             label=f"{label}: each step{note}")
            color = raw.get_color()
            ax.plot(steps, [sum(v) / len(v) for v in zip(*smooth_seeds)], color=color, linewidth=2,
                    label=f"{label}: trailing mean of {window} steps{note}")
            if len(drawn) > 1:
                ax.fill_between(steps, [min(v) for v in zip(*smooth_seeds)], [max(v) for v in zip(*smooth_seeds)],
                                color=color, alpha=0.15, label=f"{label}: min-max of the seeds' trailing means")
    rep_panel = next(i for i, (k, _) in enumerate(RL_PANELS) if k and k.startswith("repetition/"))
    per_arm_n = {label: n for label, n in arm_ngram.items() if n is not None and label not in not_logged.get(rep_panel, [])}
    mixed = len(set(per_arm_n.values())) > 1  # arms that logged different N: say which is which
    for i in sorted({*not_logged, *partly, *([rep_panel] if mixed else [])}):  # above the panel: hides no data
        notes = ([f"not logged by these runs: {'; '.join(not_logged[i])}"] if i in not_logged else []) + \
                ([f"drawn over the seeds that logged it: {'; '.join(partly[i])}"] if i in partly else []) + \
                ([f"N per arm: {'; '.join(f'{lab}: {n}' for lab, n in per_arm_n.items())}"]
                 if i == rep_panel and mixed else [])
        axes.flat[i].set_title("\n".join(textwrap.fill(n, 100) for n in notes), fontsize=7)  # within the panel's width
    entries: dict[str, Any] = {}  # every panel's series (one drawn over fewer seeds has a label of its own)
    for ax in axes.flat:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(text, handle)
    labels, handles = list(entries), list(entries.values())
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(f"{graph.study.name}: RL dynamics (train rollouts)\n{subject(graph)}", fontsize=10)
    fig.tight_layout(rect=(0, 0.02 + 0.02 * ((len(labels) + 1) // 2), 1, 1))
    return fig


def reward_variants_figure(graph: Graph, result: list["Row"]) -> Optional[Any]:
    """Per RL point (the paper's Fig. 9 reads length per reward variant): held-out accuracy and held-out
    mean response tokens, each with its SFT start as a black mark where the study evaluates the SFT; with
    study seeds each value is the mean over the point's seeds, beside each seed and the 95% interval."""
    groups = list(_grouped([r for r in result if r.rl is not None and r.accuracy is not None]).values())
    if not groups:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(max(9, 2.6 * len(groups) + 5), 4.4))
    labels = [f"{g[0].group}\n{g[0].rl}" for g in groups]
    xs = list(range(len(groups)))
    mean = lambda vals: sum(vals) / len(vals)  # noqa: E731
    seeds = " (mean over seeds)" if any(len(g) > 1 for g in groups) else ""
    acc = lambda g: [100 * r.accuracy for r in g]  # noqa: E731
    axes[0].bar(xs, [mean(acc(g)) for g in groups], color="tab:blue", alpha=0.7, label=f"after RL{seeds}")
    _seed_marks(axes[0], [float(x) for x in xs], groups, "after RL", "tab:blue", acc, ACCURACY_RANGE)
    starts = [(x, mean([100 * (r.accuracy - r.rl_gain) for r in g])) for x, g in zip(xs, groups)
              if all(r.rl_gain is not None for r in g)]
    if starts:
        axes[0].scatter([x for x, _ in starts], [y for _, y in starts], color="black", marker="_", s=600,
                        linewidths=2, zorder=3, label=f"SFT start{seeds}")
    axes[0].set_ylabel("held-out accuracy (%)")
    axes[0].set_ylim(0, max(5.0, 1.15 * max([v for g in groups for v in acc(g)] + [y for _, y in starts])))
    sized = [(x, g) for x, g in zip(xs, groups) if all(r.mean_tokens is not None for r in g)]
    tok = lambda g: [r.mean_tokens for r in g]  # noqa: E731
    if sized:
        # markers, not bars from 0: a few tokens apart is the twin's effect size
        axes[1].scatter([x for x, _ in sized], [mean(tok(g)) for _, g in sized], color="tab:orange", marker="D",
                        s=60, zorder=3, label=f"mean response tokens{seeds}")
        _seed_marks(axes[1], [float(x) for x, _ in sized], [g for _, g in sized], "tokens", "tab:orange", tok)
        token_starts = [(x, mean([r.start_tokens for r in g])) for x, g in sized
                        if all(r.start_tokens is not None for r in g)]
        if token_starts:
            axes[1].scatter([x for x, _ in token_starts], [y for _, y in token_starts], color="black", marker="_",
                            s=600, linewidths=2, zorder=3, label=f"SFT start, tokens{seeds}")
    axes[1].set_ylabel("held-out mean response tokens")
    axes[1].set_xlim(-0.5, len(groups) - 0.5)
    for ax in axes:
        ax.set_xticks(xs, labels)
        ax.tick_params(axis="x", labelsize=8)
    handles, names = [sum(pair, []) for pair in zip(*(ax.get_legend_handles_labels() for ax in axes))]
    fig.legend(handles, names, loc="lower center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(f"{graph.study.name}: reward variants\n{subject(graph)}", fontsize=10)
    fig.tight_layout(rect=(0, 0.04 + 0.035 * ((len(names) + 2) // 3), 1, 1))
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
