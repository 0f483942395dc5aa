"""``longcot collect +experiment=NAME``: our numbers beside the paper's, as Markdown and CSV, and the
figures (written to ``<output_root>/studies/<name>/``):

* ``results.md`` / ``results.csv``: one row per grid point and benchmark: CoT style (the distill
  teacher's), SFT tokens (the distill manifest's count of the SFT subset), the RL algorithm and reward,
  accuracy, mean response length, the RL gain (accuracy minus that of the eval of the SFT checkpoint
  the RL started from, when the study evaluates it), and ``study.paper[point]``'s numbers (null:
  "to copy from the PDF"; never filled in here);
* ``fig_sft_scaling.png``: accuracy vs SFT tokens per style (the paper's Fig. 1), RL points as arrows
  from their SFT point;
* ``fig_rl_dynamics.png``: response length and reflection keywords per response over RL steps (each
  rl run's ``metrics.jsonl``: ``response_length_mean``, ``reflection/<keyword>``; §4);
* ``fig_reward_variants.png``: accuracy of each RL point, grouped by reward, beside its SFT start.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from longcot import runs
from longcot.study.graph import Graph, Node

TO_COPY = "to copy from the PDF"


@dataclass
class Row:
    point: str
    benchmark: str
    style: Optional[str]
    sft_tokens: Optional[int]
    rl: Optional[str]
    accuracy: Optional[float]
    mean_tokens: Optional[float]
    rl_gain: Optional[float]
    eval_key: str
    rl_key: Optional[str]


def _upstream_of(graph: Graph, key: str, stage: str) -> Optional[Node]:
    """The nearest run of ``stage`` upstream of ``key`` (or ``key`` itself)."""
    frontier = [key]
    while frontier:
        node = graph.nodes[frontier.pop(0)]
        if node.stage == stage:
            return node
        frontier.extend(node.upstream)
    return None


def _style(node: Optional[Node]) -> Optional[str]:
    """The CoT style of the data: the synthetic teacher's style, else the teacher model's name."""
    if node is None:
        return None
    gen = node.plan.cfg.generation
    return gen.style if gen.backend == "synthetic" else node.plan.cfg.model.name


def _sft_tokens(graph: Graph, sft: Optional[Node]) -> Optional[int]:
    """SFT tokens of the subset the SFT run trained on (from the finished distill run's manifest)."""
    if sft is None or sft.plan.cfg.sft.source != "distill":
        return None
    dist = _upstream_of(graph, sft.key, "distill")
    if dist is None or not dist.plan.done:
        return None
    manifest = runs.read_json(dist.plan.run_dir / "manifest.json")
    subset = sft.plan.cfg.sft.subset
    if "/" in subset:
        entry = manifest["budgets"].get(subset, {})
        unit = entry.get("unit", "sft")
        return entry.get(f"{unit}_tokens")
    return manifest["datasets"].get(subset[1:], {}).get("sft_tokens")


def rows(graph: Graph) -> list[Row]:
    """One row per (point, eval run); accuracy None where the eval is not finished."""
    summaries: dict[str, dict[str, Any]] = {}
    for node in graph.nodes.values():
        if node.stage == "eval" and node.plan.done:
            summaries[node.key] = runs.read_json(node.plan.run_dir / "summary.json")
    out = []
    for point in graph.study.points:
        for key in graph.cells.get((point.name, "eval"), []):
            node = graph.nodes[key]
            s = summaries.get(key, {})
            sft = _upstream_of(graph, key, "sft")
            rl = _upstream_of(graph, key, "rl")
            bench = node.plan.cfg.benchmark.name
            gain = None
            if rl is not None and s:
                base = [k for k, n in graph.nodes.items() if n.stage == "eval" and sft is not None and n.upstream == (sft.key,)
                        and n.plan.cfg.benchmark.name == bench and k in summaries]
                if base:
                    gain = s["accuracy"] - summaries[base[0]]["accuracy"]
            rl_label = f"{rl.plan.cfg.algorithm.name}/{rl.plan.cfg.reward.name}" if rl is not None else None
            out.append(Row(point.name, bench, _style(_upstream_of(graph, key, "distill")), _sft_tokens(graph, sft), rl_label,
                           s.get("accuracy"), s.get("mean_tokens"), gain, key, rl.key if rl else None))
    return out


def _paper_columns(graph: Graph) -> list[str]:
    cols: list[str] = []
    for metrics in graph.study.paper.values():
        for m in metrics or {}:
            if m not in cols:
                cols.append(m)
    return cols


def table(graph: Graph, result: list[Row]) -> tuple[list[str], list[list[str]]]:
    """Columns and formatted rows (percentages for accuracy and gain)."""
    paper = _paper_columns(graph)
    columns = ["point", "benchmark", "style", "SFT tokens", "RL", "accuracy (%)", "mean tokens", "RL gain (pts)",
               *[f"paper: {m}" for m in paper]]
    body = []
    for r in result:
        pv = graph.study.paper.get(r.point) or {}
        body.append([r.point, r.benchmark, r.style or "-", "-" if r.sft_tokens is None else str(r.sft_tokens),
                     r.rl or "-", "not run" if r.accuracy is None else f"{100 * r.accuracy:.1f}",
                     "-" if r.mean_tokens is None else f"{r.mean_tokens:.0f}",
                     "-" if r.rl_gain is None else f"{100 * r.rl_gain:+.1f}",
                     *[("-" if m not in pv else TO_COPY if pv[m] is None else str(pv[m])) for m in paper]])
    return columns, body


def markdown(title: str, columns: list[str], body: list[list[str]]) -> str:
    lines = [f"# {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def _figures(graph: Graph, result: list[Row], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    # Fig. 1 style: accuracy vs SFT tokens per style, RL gains as arrows
    scaling = [r for r in result if r.accuracy is not None and r.sft_tokens is not None]
    if scaling:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for style in sorted({r.style or "?" for r in scaling}):
            pts = sorted((r.sft_tokens, r.accuracy) for r in scaling if (r.style or "?") == style and r.rl is None)
            if pts:
                ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", label=f"{style} CoT SFT")
        for r in scaling:
            if r.rl is not None and r.rl_gain is not None:
                base = 100 * (r.accuracy - r.rl_gain)
                ax.annotate("", xy=(r.sft_tokens, 100 * r.accuracy), xytext=(r.sft_tokens, base),
                            arrowprops={"arrowstyle": "->", "color": "tab:red"})
                ax.text(r.sft_tokens, 100 * r.accuracy, f" +RL {r.rl} ({100 * r.rl_gain:+.1f})", fontsize=7)
        ax.set_xlabel("SFT tokens")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{graph.study.name}: accuracy vs SFT tokens")
        ax.legend()
        written.append(_save(fig, out / "fig_sft_scaling.png"))
        plt.close(fig)
    # RL dynamics: response length and reflection keywords over steps
    rl_nodes = [n for n in graph.ordered() if n.stage == "rl" and n.plan.done and (n.plan.run_dir / "metrics.jsonl").is_file()]
    if rl_nodes:
        fig, (ax_len, ax_ref) = plt.subplots(1, 2, figsize=(11, 4))
        for n in rl_nodes:
            recs = runs.read_jsonl(n.plan.run_dir / "metrics.jsonl")
            label = f"{n.plan.cfg.algorithm.name}/{n.plan.cfg.reward.name}"
            steps = [r["step"] for r in recs]
            ax_len.plot(steps, [r.get("response_length_mean") for r in recs], marker=".", label=label)
            ax_ref.plot(steps, [sum(v for k, v in r.items() if k.startswith("reflection/")) for r in recs], marker=".", label=label)
        ax_len.set_xlabel("RL step")
        ax_len.set_ylabel("mean response tokens")
        ax_ref.set_xlabel("RL step")
        ax_ref.set_ylabel("reflection keywords per response")
        ax_len.legend()
        fig.suptitle(f"{graph.study.name}: RL dynamics")
        written.append(_save(fig, out / "fig_rl_dynamics.png"))
        plt.close(fig)
    # reward variants: accuracy per RL point beside its SFT start
    variants = [r for r in result if r.rl is not None and r.accuracy is not None]
    if variants:
        fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(variants) + 2), 4))
        labels = [f"{r.point}\n{r.rl}" for r in variants]
        ax.bar(labels, [100 * r.accuracy for r in variants], color="tab:blue", label="after RL")
        starts = [100 * (r.accuracy - r.rl_gain) if r.rl_gain is not None else float("nan") for r in variants]
        ax.scatter(labels, starts, color="black", marker="_", s=400, zorder=3, label="SFT start")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{graph.study.name}: reward variants")
        ax.legend()
        fig.tight_layout()
        written.append(_save(fig, out / "fig_reward_variants.png"))
        plt.close(fig)
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    with runs.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def out_dir(graph: Graph) -> Path:
    return Path(graph.study.output_root) / "studies" / graph.study.name


def collect(graph: Graph, figures: bool = True) -> dict[str, Any]:
    """Write ``results.md``, ``results.csv`` and the figures; return the paths and the rows."""
    result = rows(graph)
    columns, body = table(graph, result)
    out = out_dir(graph)
    title = f"{graph.study.name}: our numbers" + (" beside the paper's" if graph.study.paper else "")
    md = markdown(title, columns, body)
    runs.write_text(out / "results.md", md)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    writer.writerows(body)
    runs.write_text(out / "results.csv", buf.getvalue())
    figs = _figures(graph, result, out) if figures else []
    return {"markdown": out / "results.md", "csv": out / "results.csv", "figures": figs, "rows": result,
            "columns": columns, "body": body}
