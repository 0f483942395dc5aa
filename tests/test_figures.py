"""Every figure longcot draws, rendered from a small finished study (distill -> SFT at two N -> RL ->
eval, and the untrained model as a baseline point) and checked through its matplotlib artists: every
line, bar and marker has a legend entry, no text lies outside its axes (annotations) or the figure
(titles, labels, legends), and the title names the model and the data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from longcot import runs

pytestmark = pytest.mark.slow


def check_figure(fig: Any, *names: str) -> None:
    """The artist checks of the module docstring on a drawn figure; ``names`` must be in its titles."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + list(fig.legends)
    in_legend = {t.get_text() for leg in legends for t in leg.get_texts()}
    for ax in fig.axes:
        shown = [ln for ln in ax.get_lines() if len(ln.get_xdata())] + list(ax.containers) + list(ax.collections)
        for artist in shown:
            label = artist.get_label()
            if label.startswith("_") and getattr(artist, "patches", None):  # hist labels its first bar, not the container
                label = artist.patches[0].get_label()
            assert label in in_legend, f"{artist!r} ({label!r}) has no legend entry"
        box = ax.get_window_extent(renderer)
        for axis, lo, hi, mid in ((ax.xaxis, box.x0, box.x1, lambda e: (e.x0 + e.x1) / 2),
                                  (ax.yaxis, box.y0, box.y1, lambda e: (e.y0 + e.y1) / 2)):
            exts = [(t.get_window_extent(renderer), t.get_text()) for t in axis.get_ticklabels(which="both")
                    if t.get_visible() and t.get_text()]
            exts = [(e, t) for e, t in exts if lo - 1 <= mid(e) <= hi + 1]  # drawn: within the axes' span
            for i, (a, ta) in enumerate(exts):
                for b, tb in exts[i + 1:]:
                    assert not a.overlaps(b), f"tick labels {ta!r} and {tb!r} overlap"
        for text in ax.texts:
            if text.get_text() and text.get_visible():
                ext = text.get_window_extent(renderer)
                assert (ext.x0 >= box.x0 - 1 and ext.x1 <= box.x1 + 1 and ext.y0 >= box.y0 - 1 and ext.y1 <= box.y1 + 1), \
                    f"text {text.get_text()!r} runs past its axes"
    page = fig.bbox
    drawn = [ax.get_tightbbox(renderer) for ax in fig.axes]  # what each axes draws: ticks, labels, title, legend
    drawn += [t.get_window_extent(renderer) for t in [fig._suptitle, *fig.texts] if t is not None and t.get_text()]
    drawn += [leg.get_window_extent(renderer) for leg in fig.legends]
    for ext in drawn:
        assert ext.x0 >= page.x0 - 1 and ext.x1 <= page.x1 + 1 and ext.y0 >= page.y0 - 1 and ext.y1 <= page.y1 + 1, \
            f"a text or legend runs past the figure ({ext} outside {page})"
    titles = " ".join([fig._suptitle.get_text() if fig._suptitle else ""] + [ax.get_title() for ax in fig.axes])
    for name in names:
        assert name in titles, f"{name!r} not in the titles {titles!r}"


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import torch

    from longcot.study.graph import build_graph
    from longcot.study.local import run_local
    from longcot.study.spec import load_study
    from tests.test_study_graph import write_study

    tmp = tmp_path_factory.mktemp("figstudy")
    overrides = write_study(tmp, broken=False)
    path = tmp / "conf" / "experiment" / "tstudy.yaml"
    path.write_text(path.read_text().replace("  paper:", "    - name: base\n      eval: []\n  paper:"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        graph = build_graph(load_study(overrides))
        outcome = run_local(graph)
    finally:
        torch.set_num_threads(threads)
    assert outcome.ok and all(n.plan.done for n in graph.nodes.values())
    return graph


def test_study_figures_label_every_artist_and_name_model_and_data(finished_study: Any) -> None:
    import matplotlib.pyplot as plt

    from longcot.study import figures
    from longcot.study.collect import collect, rows

    graph = finished_study
    result = rows(graph)
    made = {"sft_scaling": figures.sft_scaling_figure(graph, result), "rl_dynamics": figures.rl_dynamics_figure(graph),
            "reward_variants": figures.reward_variants_figure(graph, result)}
    for name, fig in made.items():
        assert fig is not None, name
        check_figure(fig, "tstudy", "model tiny", "data toy", "eval toy (4 problems)")
    # the untrained baseline is drawn (the base point), the RL point is a marker with its gain in the legend
    labels = [t.get_text() for t in made["sft_scaling"].axes[0].get_legend().get_texts()]
    assert "untrained (base, toy)" in labels and any(lab.startswith("+RL grpo/classic (") for lab in labels)
    variants_legend = [t.get_text() for t in made["reward_variants"].legends[0].get_texts()]
    assert "SFT start" in variants_legend and "SFT start, tokens" in variants_legend  # both panels mark the start
    assert made["reward_variants"].axes[1].get_ylabel() == "held-out mean response tokens"
    for fig in made.values():
        plt.close(fig)
    written = collect(graph)["figures"]
    assert sorted(p.name for p in written) == ["fig_reward_variants.png", "fig_rl_dynamics.png", "fig_sft_scaling.png"]


def test_rl_dynamics_draws_figure_10s_panels_and_never_a_metric_a_run_did_not_log(finished_study: Any) -> None:
    """Fig. 10's panels ("alternatively" per response, the repetition rate at rl.repetition_metric_ngram,
    named in the label) are drawn from each run's metrics; a run that did not log one (an older run) is
    left out of that panel and named above it, never drawn as 0."""
    import json

    import matplotlib.pyplot as plt

    from longcot.study import figures

    graph = finished_study
    [node] = [n for n in graph.nodes.values() if n.stage == "rl"]
    path = node.plan.run_dir / "metrics.jsonl"
    recs = runs.read_jsonl(path)
    assert all("repetition/rate_40gram" in r and "reflection/alternatively" in r for r in recs)
    original = path.read_bytes()
    # 16-token toy rollouts repeat no 40-gram (both metrics 0): give the two metrics distinct values, so a
    # panel that drew the token share, or a 0, would not match
    rate = [0.5 + 0.1 * i for i in range(len(recs))]
    try:
        path.write_text("".join(json.dumps({**r, "repetition/rate_40gram": rate[i], "repetition/token_share_40gram": 0.01})
                                + "\n" for i, r in enumerate(recs)))
        fig = figures.rl_dynamics_figure(graph)
        assert len(fig.axes) == 6
        alt, rep = fig.axes[4], fig.axes[5]
        assert alt.get_ylabel() == '"alternatively" per response'
        assert rep.get_ylabel() == "repetition rate (share of rollouts\nrepeating an N-gram; N = 40)"
        drawn = [line for line in rep.get_lines() if line.get_linewidth() == 2]
        assert len(drawn) == 1 and list(drawn[0].get_ydata()) == pytest.approx(figures.rolling(rate, max(1, len(recs) // 10)))
        plt.close(fig)
        # the same run logged at another N (the N is not identity: a run reused by a study that asks N 40)
        path.write_text("".join(json.dumps({**{k: v for k, v in r.items() if not k.startswith("repetition/")},
                                            "repetition/rate_10gram": rate[i]}) + "\n" for i, r in enumerate(recs)))
        fig = figures.rl_dynamics_figure(graph)
        assert fig.axes[5].get_ylabel().endswith("N = 10)") and len(fig.axes[5].get_lines()) == 2
        plt.close(fig)
    finally:
        path.write_bytes(original)
    try:  # the same run as an older one that did not log the repetition rate
        path.write_text("".join(json.dumps({k: v for k, v in r.items() if not k.startswith("repetition/")}) + "\n"
                                for r in recs))
        fig = figures.rl_dynamics_figure(graph)
        rep = fig.axes[5]
        assert rep.get_lines() == [] and rep.get_title().startswith("not logged by these runs: grpo/")
        assert fig.axes[4].get_lines() and fig.axes[4].get_title() == ""  # the other panels as before
        check_figure(fig, "tstudy", "model tiny", "data toy")
        plt.close(fig)
    finally:
        path.write_bytes(original)


def test_eval_and_rl_run_figures_label_every_artist_and_name_checkpoint_and_data(finished_study: Any) -> None:
    import matplotlib.pyplot as plt

    from longcot.analysis.plots import eval_figure
    from longcot.rl.plots import progress_title, rl_progress_figure

    graph = finished_study
    for node in graph.nodes.values():
        if node.stage == "eval":
            summary = runs.read_json(node.plan.run_dir / "summary.json")
            fig = eval_figure(runs.read_jsonl(node.plan.run_dir / "samples.jsonl"), summary)
            checkpoint = summary["checkpoint"] or "untrained"
            check_figure(fig, "tiny", checkpoint, "toy", "4 problems")
            if not node.upstream:
                assert checkpoint == "untrained"
            plt.close(fig)
        if node.stage == "rl":
            recs = runs.read_jsonl(node.plan.run_dir / "metrics.jsonl")
            sft = graph.nodes[node.upstream[-1]].plan.run_dir.name
            model = type("M", (), {"name": "tiny", "path": str(graph.nodes[node.upstream[-1]].plan.run_dir / "final" / "model")})
            problems = [type("P", (), {"kind": "toy"})()] * 8
            fig = rl_progress_figure(recs, progress_title("grpo", "classic", model, problems))
            check_figure(fig, "tiny", f"from {sft}", "8 toy training prompts")
            labels = {t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()}
            assert {"accuracy", "truncated", "reward"} <= labels  # the reward on the twin axis is in the legend
            plt.close(fig)


def test_sft_scaling_figure_labels_budgets_a_decade_apart_and_sets_rl_points_beside(finished_study: Any) -> None:
    """Four budgets from 128K to 1M SFT tokens (twin_fig1_sft_scaling's): one tick label per budget, none
    overlapping (the log axis's default minor labels 2x10^5, 3x10^5, 4x10^5 collide there), and an RL
    point drawn beside its SFT start, not on top of it, its gain named per style in the legend."""
    import dataclasses

    import matplotlib.pyplot as plt

    from longcot.study import figures
    from longcot.study.collect import rows

    graph = finished_study
    result = rows(graph)
    sft_rows = [r for r in result if r.sft_tokens is not None and r.rl is None]
    rl_rows = [r for r in result if r.rl is not None and r.sft_tokens is not None]
    assert sft_rows and rl_rows
    budgets = (128_040, 256_310, 512_170, 1_000_123)
    spread = [dataclasses.replace(sft_rows[0], point=f"p{b}", group=f"p{b}", sft_tokens=b) for b in budgets]
    moved = [dataclasses.replace(r, sft_tokens=budgets[-1]) for r in rl_rows]
    fig = figures.sft_scaling_figure(graph, spread + moved)
    check_figure(fig, "tstudy")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels() if t.get_text()] == ["128K", "256K", "512K", "1M"]
    rl_marks = [c for c in ax.collections if c.get_label().startswith("+RL ")]
    assert rl_marks and all(x > budgets[-1] * 1.05 for c in rl_marks for x, _ in c.get_offsets())
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(lab.startswith(f"+RL grpo/classic ({rl_rows[0].style} ") for lab in legend), legend
    plt.close(fig)


def test_rl_points_of_one_variant_from_one_start_are_told_apart(finished_study: Any) -> None:
    """Two RL points with the same algorithm and reward from the same SFT start (twin_sec4_context_window:
    only the window differs) are two legend series named after their points, drawn side by side; before,
    they were one series whose label listed two unnamed gains and whose marks sat on one x."""
    import dataclasses

    import matplotlib.pyplot as plt

    from longcot.study import figures
    from longcot.study.collect import rows

    graph = finished_study
    result = rows(graph)
    sft_rows = [r for r in result if r.sft_tokens is not None and r.rl is None]
    rl_rows = [r for r in result if r.rl is not None and r.sft_tokens is not None]
    assert sft_rows and rl_rows
    other = [dataclasses.replace(r, point="window-96", group="window-96", accuracy=(r.accuracy or 0) / 2) for r in rl_rows]
    series = figures.rl_series(rl_rows + other)
    assert [name for name, _ in series] == [f"+RL {rl_rows[0].rl} ({rl_rows[0].group})", f"+RL {rl_rows[0].rl} (window-96)"]
    fig = figures.sft_scaling_figure(graph, sft_rows + rl_rows + other)
    check_figure(fig, "tstudy")
    ax = fig.axes[0]
    marks = {c.get_label().split(" (")[1].rstrip(")"): c.get_offsets()[0][0] for c in ax.collections
             if c.get_label().startswith("+RL ") and not c.get_label().endswith("each seed")}
    assert set(marks) == {rl_rows[0].group, "window-96"} and marks[rl_rows[0].group] != marks["window-96"], marks
    # one variant over two starts stays one series (Fig. 1: long and short CoT + the same RL)
    shifted = [dataclasses.replace(r, style="short", sft_tokens=(r.sft_tokens or 1) * 2) for r in other]
    assert [name for name, _ in figures.rl_series(rl_rows + shifted)] == [f"+RL {rl_rows[0].rl}"]
    plt.close(fig)


def test_sft_points_of_one_style_at_two_epoch_counts_are_two_series(finished_study: Any) -> None:
    """twin_fig1_epochs: long CoT at 1M tokens, 2 and 4 epochs. Two series named by their epochs, drawn
    side by side at the budget (one series would join them with a vertical line, as if one point)."""
    import dataclasses

    import matplotlib.pyplot as plt

    from longcot.study import figures
    from longcot.study.collect import rows

    graph = finished_study
    sft_rows = [r for r in rows(graph) if r.sft_tokens is not None and r.rl is None]
    assert sft_rows and all(r.sft_epochs is not None for r in sft_rows)
    one = sft_rows[0]
    two = [dataclasses.replace(one, point="long-1M", group="long-1M", sft_tokens=1_000_000, sft_epochs=2.0),
           dataclasses.replace(one, point="long-1M-4ep", group="long-1M-4ep", sft_tokens=1_000_000, sft_epochs=4.0,
                               accuracy=0.99)]
    fig = figures.sft_scaling_figure(graph, two)
    check_figure(fig, "tstudy")
    ax = fig.axes[0]
    lines = {ln.get_label(): ln.get_xdata()[0] for ln in ax.get_lines() if "CoT SFT" in ln.get_label()}
    assert set(lines) == {f"{one.style}, 2 epochs CoT SFT", f"{one.style}, 4 epochs CoT SFT"}, lines
    assert lines[f"{one.style}, 4 epochs CoT SFT"] > lines[f"{one.style}, 2 epochs CoT SFT"]
    plt.close(fig)
    fig = figures.sft_scaling_figure(graph, two[:1])  # one epoch count: the label does not name it
    assert [ln.get_label() for ln in fig.axes[0].get_lines() if "CoT SFT" in ln.get_label()] == [f"{one.style} CoT SFT"]
    plt.close(fig)


def test_token_count_labels() -> None:
    from longcot.study.figures import token_count

    assert [token_count(x) for x in (950, 128_000, 1_000_123, 2_500_000_000)] == ["950", "128K", "1M", "2.5B"]
    # just under a unit: rounding picks the unit, not "1e+03K"
    assert [token_count(x) for x in (999.7, 999_999, 12_345, 999_999_999)] == ["1K", "1M", "12.3K", "1B"]


def test_eval_figure_without_reflection_keywords_says_so_on_a_0_to_1_axis() -> None:
    from longcot.analysis.plots import eval_figure

    summary = {"benchmark": "toy", "model": "tiny", "checkpoint": None, "accuracy": 0.5, "truncation_rate": 0.0,
               "num_problems": 2, "samples_per_problem": 1, "sampling": {"max_new_tokens": 16},
               "reflection": {k: {"per_response": 0.0} for k in ("wait", "recheck")}}
    fig = eval_figure([{"tokens": 5, "correct": True}, {"tokens": 9, "correct": False}], summary)
    check_figure(fig, "tiny (untrained) on toy", "max 16 new tokens")
    ax_kw = fig.axes[1]
    assert ax_kw.get_ylim() == (0, 1)
    assert [t.get_text() for t in ax_kw.texts] == ["no reflection keyword in any response"]


def test_check_figure_catches_an_unlabelled_line_and_text_past_the_axes() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="a")
    ax.plot([0, 1], [1, 0], label="b")
    ax.legend(handles=ax.get_lines()[:1])
    ax.set_title("model tiny on toy")
    with pytest.raises(AssertionError, match="has no legend entry"):
        check_figure(fig, "tiny")
    ax.legend()
    ax.text(0.9, 0.5, "a label much too long to fit inside these axes", transform=ax.transAxes)
    with pytest.raises(AssertionError, match="runs past its axes"):
        check_figure(fig, "tiny")
    ax.texts[0].remove()
    check_figure(fig, "tiny")
    ax.set_xticks([0.5, 0.51], ["a long tick label", "another long one"])
    with pytest.raises(AssertionError, match="tick labels 'a long tick label' and 'another long one' overlap"):
        check_figure(fig, "tiny")
    plt.close(fig)


def test_results_table_shows_each_evals_truncation_share(finished_study: Any) -> None:
    """The table beside "mean tokens": the share of responses that hit the generation limit (at 100%
    the mean is that limit), from each eval's summary."""
    from longcot.study.collect import WIDE, rows, table

    graph = finished_study
    result = rows(graph)
    wide_cols, wide, narrow_cols, narrow = table(graph, result)
    assert wide_cols == WIDE and "truncated (%)" in WIDE and "trunc %" in narrow_cols
    for r, w, n in zip(result, wide, narrow):
        share = runs.read_json(graph.nodes[r.eval_key].plan.run_dir / "summary.json")["truncation_rate"]
        assert w[WIDE.index("truncated (%)")] == n[narrow_cols.index("trunc %")] == f"{100 * share:.0f}"


def test_relaunch_of_a_finished_study_says_every_run_is_done_and_skipped(finished_study: Any, caplog) -> None:
    import logging

    from longcot.study.local import run_local

    with caplog.at_level(logging.INFO, logger="longcot.study.local"):
        again = run_local(finished_study)
    n = len(finished_study.nodes)
    assert len(again.done_before) == n and not again.ran
    assert f"study tstudy: {n} unique stage runs: {n} done, skipped; 0 to run" in caplog.text


def test_rl_dynamics_draws_a_metric_over_the_seeds_that_logged_it_and_says_so(tmp_path: Path) -> None:
    """The repetition rate's N is not identity, so an arm's runs can differ: seed 0's cosine run finished
    before N 10 was asked for (it logged N 40), seed 1's logged N 10. The panel draws the cosine arm over
    seed 1 alone (its mean is seed 1's values, not a mean with a 0), names it above the panel, and gives that
    series a legend entry of its own; the other panels draw both seeds. RL logs are written by hand."""
    import matplotlib.pyplot as plt

    from longcot.study import figures
    from longcot.study.graph import build_graph
    from longcot.study.spec import load_study

    graph = build_graph(load_study(["+experiment=twin_sec4_repetition_2m_4ep", "study.seeds=[0,1]",
                                    f"output_root={tmp_path}"]))
    rate = {1: [0.9, 0.7, 0.5, 0.3], 0: [0.0] * 4}
    for point, seed, key in (("cosine", 0, "repetition/rate_40gram"), ("cosine", 1, "repetition/rate_10gram"),
                             ("cosine-reppen", 0, "repetition/rate_10gram"), ("cosine-reppen", 1, "repetition/rate_10gram")):
        run = Path(graph.nodes[graph.cells[(f"{point}@s{seed}", "rl")][-1]].plan.run_dir)
        runs.write_jsonl(run / "metrics.jsonl", [{"step": i + 1, "accuracy": 0.5, "response_length_mean": 80.0 + seed,
                                                  "truncation_ratio": 0.0, "reflection/alternatively": 0.1,
                                                  key: rate[seed][i] if point == "cosine" else 0.1} for i in range(4)])
        runs.mark_done(run)
    fig = figures.rl_dynamics_figure(graph)
    rep = fig.axes[5]
    assert rep.get_ylabel().endswith("N = 10)")
    assert rep.get_title() == "drawn over the seeds that logged it: grpo/cosine (cosine): 1 of 2 seeds"
    cosine = next(ln for ln in rep.get_lines() if ln.get_label() == "grpo/cosine (cosine): each step, mean of 1 of 2 seeds")
    assert list(cosine.get_ydata()) == pytest.approx(rate[1])  # seed 1 alone, not averaged with a missing 0
    length = [ln for ln in fig.axes[1].get_lines() if ln.get_label().startswith("grpo/cosine (cosine): each step")]
    assert [ln.get_label() for ln in length] == ["grpo/cosine (cosine): each step, mean of 2 seeds"]
    assert list(length[0].get_ydata()) == pytest.approx([80.5] * 4)
    check_figure(fig, "twin_sec4_repetition_2m_4ep", "model tiny")  # every series has its legend entry
    plt.close(fig)
    # every cosine run logged N 40 only: the panel draws both arms, each at the N its runs hold, and says which
    for seed in (0, 1):
        run = Path(graph.nodes[graph.cells[(f"cosine@s{seed}", "rl")][-1]].plan.run_dir)
        recs = runs.read_jsonl(run / "metrics.jsonl")
        runs.write_jsonl(run / "metrics.jsonl", [{**{k: v for k, v in r.items() if not k.startswith("repetition/")},
                                                  "repetition/rate_40gram": 0.2} for r in recs])
    fig = figures.rl_dynamics_figure(graph)
    rep = fig.axes[5]
    assert rep.get_ylabel().endswith("N = 10/40)")
    assert rep.get_title() == "N per arm: grpo/cosine (cosine): 40; grpo/cosine_reppen (cosine-reppen): 10"
    plt.close(fig)
