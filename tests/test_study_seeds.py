"""Seeds as a study axis: every point repeated per seed with the seed's overrides (data draw, split,
order, sampling, init), collisions refused, and ``collect`` reporting per point the mean with a 95%
Student-t interval and the paired difference of compared arms. Eval outputs are written by hand (what
the eval stage writes); nothing is trained."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from longcot import runs
from longcot.study.collect import collect
from longcot.study.graph import build_graph
from longcot.study.seeds import Compare, CompareResult, Interval, t975
from longcot.study.spec import load_study

STUDY = """# @package _global_
defaults:
  - override /data: twin
  - override /benchmark: twin
study:
  name: tseeds
  seeds: [0, 1, 2]
  base: ["logger=none"]
  stages:
    eval: ["benchmark.limit=5"]
  points:
    - {name: long, eval: ["model=synthetic-long", "generation=synthetic"]}
    - {name: short, eval: ["model=synthetic-short", "generation=synthetic_short"]}
  compare:
    - {cite: "Fig. 1", a: long, b: short, expect: ">", benchmark: twin}
"""


def _load(tmp_path: Path, text: str = STUDY, extra: tuple[str, ...] = ()):
    conf = tmp_path / "conf" / "experiment"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "tseeds.yaml").write_text(text)
    return load_study([f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "+experiment=tseeds",
                       f"output_root={tmp_path / 'runs'}", *extra])


def test_t_quantiles_and_interval_by_hand() -> None:
    assert t975(2) == 4.303 and t975(11) == 2.228 and t975(100) == 1.96
    iv = Interval((10.0, 20.0, 30.0))  # mean 20, sd 10, se 10/sqrt(3)
    assert iv.mean == 20.0 and math.isclose(iv.half_width, 4.303 * 10 / math.sqrt(3))
    assert Interval((5.0,)).half_width is None and "1 seed" in Interval((5.0,)).describe()


@pytest.mark.parametrize("a, b, expect, verdict", [
    ({0: 80.0, 1: 70.0, 2: 75.0}, {0: 10.0, 1: 12.0, 2: 8.0}, ">", "reproduced"),  # +65 +-~9
    ({0: 10.0, 1: 12.0, 2: 8.0}, {0: 80.0, 1: 70.0, 2: 75.0}, ">", "opposite"),
    ({0: 30.0, 1: 10.0, 2: 20.0}, {0: 10.0, 1: 20.0, 2: 15.0}, ">", "sign matches, interval includes 0"),  # +5, sd 15
    ({0: 82.3}, {0: 10.0}, ">", "sign matches, one seed (no interval)"),  # one seed: never "includes 0"
    ({0: 10.0}, {0: 82.3}, ">", "sign does not match, one seed"),
    ({0: 10.0}, {0: 82.3}, "<", "sign matches, one seed (no interval)"),
    ({0: 1.0}, {1: 2.0}, ">", "not run"),  # no seed in both arms
])
def test_verdicts_by_hand(a, b, expect, verdict) -> None:
    assert CompareResult(Compare("a", "b", expect, benchmark="twin"), a, b).verdict == verdict


@pytest.mark.parametrize("metric, shown", [
    ("repetition/rate_10gram", "difference 0.037 (95% CI [0.001, 0.073]; n=4); per seed s0: +0.016, s1: +0.062"),
    ("reflection/recheck", "difference 0.037 (95% CI [0.001, 0.073]; n=4); per seed s0: +0.016, s1: +0.062"),
    ("truncation_ratio", "difference 0.037 (95% CI [0.001, 0.073]; n=4); per seed s0: +0.016, s1: +0.062"),
    ("response_length_mean", "difference 0.0 (95% CI [0.0, 0.1]; n=4); per seed s0: +0.0, s1: +0.1"),
])
def test_small_rl_metrics_are_shown_with_enough_decimals(metric, shown) -> None:
    """A repetition rate or a keyword rate per response differs by hundredths between arms (here +0.037,
    sd 0.0225, t 3.182 over 4 seeds: half-width 0.036): one decimal
    would print "REPRODUCED -- difference 0.0". Lengths keep one decimal."""
    a = {0: 0.116, 1: 0.162, 2: 0.120, 3: 0.150}
    b = {0: 0.100, 1: 0.100, 2: 0.100, 3: 0.100}
    line = CompareResult(Compare("a", "b", ">", rl_metric=metric, of="last"), a, b).line()
    assert shown in line, line


def test_seeds_repeat_every_point_with_the_seeds_overrides(tmp_path: Path) -> None:
    study = _load(tmp_path)
    assert [p.name for p in study.points] == ["long@s0", "long@s1", "long@s2", "short@s0", "short@s1", "short@s2"]
    assert study.groups() == ["long", "short"]
    graph = build_graph(study)
    cfgs = {p.name: graph.nodes[graph.cells[(p.name, "eval")][0]].plan.cfg for p in study.points}
    assert [cfgs[f"long@s{s}"].benchmark.toy_split_seed for s in range(3)] == [0, 1, 2]
    assert [cfgs[f"long@s{s}"].benchmark.seed for s in range(3)] == [0, 1, 2]
    assert cfgs["long@s1"].data.toy_seed == 1 and cfgs["short@s2"].model.tiny_seed == 2
    assert len({graph.cells[(p.name, "eval")][0] for p in study.points}) == 6  # six distinct runs


def test_a_key_set_by_the_study_and_by_the_seeds_is_refused(tmp_path: Path) -> None:
    text = STUDY.replace('base: ["logger=none"]', 'base: ["logger=none", "sft.seed=3"]')
    with pytest.raises(ValueError, match=r"study.base: sets 'sft.seed', which study.seeds sets per seed"):
        _load(tmp_path, text)
    with pytest.raises(ValueError, match=r"study.compare\[0\].b='shrt': not a point"):
        _load(tmp_path, STUDY.replace("b: short", "b: shrt"))


def test_collect_reports_means_intervals_and_the_paired_difference(tmp_path: Path) -> None:
    graph = build_graph(_load(tmp_path))
    acc = {("long", 0): 0.60, ("long", 1): 0.70, ("long", 2): 0.80, ("short", 0): 0.10, ("short", 1): 0.20}
    for p in graph.study.points:  # short@s2 is not run
        if (p.group, p.seed) in acc:
            run_dir = graph.nodes[graph.cells[(p.name, "eval")][0]].plan.run_dir
            runs.write_json(Path(run_dir) / "summary.json", {"accuracy": acc[(p.group, p.seed)], "mean_tokens": 50.0})
            runs.mark_done(Path(run_dir))
    out = collect(graph, figures=False)
    seeds = (tmp_path / "runs" / "studies" / "tseeds" / "seeds.md").read_text()
    hw = t975(2) * 10 / math.sqrt(3)
    assert f"| long | twin | 3/3 | 60.0, 70.0, 80.0 | 70.0 (95% CI [{70 - hw:.1f}, {70 + hw:.1f}]; n=3) |" in seeds
    assert "| short | twin | 2/3 | 10.0, 20.0 |" in seeds
    # paired by seed: s0 +50, s1 +50 (s2 has no short): mean 50, sd 0 -> an interval of width 0 excludes 0
    line = next(x for x in out["footer"] if x.startswith("Fig. 1"))
    assert "REPRODUCED" in line and "s0: +50.0, s1: +50.0" in line and "n=2" in line
    assert line.endswith("; left out (no pair): s2 (short: not finished)"), line


def test_study_only_runs_the_named_points_and_refuses_unknown_names(tmp_path: Path) -> None:
    study = _load(tmp_path, extra=("study.only=[short]",))
    assert [p.name for p in study.points] == ["short@s0", "short@s1", "short@s2"]
    assert [c.a for c in study.compare] == ["long"]  # the comparison stays (collect shows it as not run)
    with pytest.raises(ValueError, match=r"study.only: no point 'lnog'; did you mean long\? valid: long, short"):
        _load(tmp_path, extra=("study.only=[lnog]",))


def test_a_seed_interval_is_drawn_within_an_accuracys_range_and_the_legend_says_so() -> None:
    """Three seeds at 10 / 10 / 80%: the Student-t interval of the mean (33 +- 101) passes 0 and 100; the
    figure draws it within 0-100 and says so in the label (seeds.md keeps the computed interval)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from longcot.study.figures import _seed_marks

    fig, ax = plt.subplots()
    _seed_marks(ax, [1.0, 2.0], [[10, 10, 80], [10, 11, 12]], "long", "tab:blue", lambda g: list(g), (0, 100))
    bars = ax.collections[-1]
    ys = [y for seg in bars.get_segments() for _, y in seg]
    assert min(ys) == 0 and max(ys) == 100
    assert bars.get_label() == "long: 95% CI of the mean over seeds (drawn within 0-100)"
    fig2, ax2 = plt.subplots()
    _seed_marks(ax2, [1.0], [[10, 11, 12]], "short", "tab:orange", lambda g: list(g), (0, 100))
    assert ax2.collections[-1].get_label() == "short: 95% CI of the mean over seeds"  # nothing clipped
    plt.close(fig)
    plt.close(fig2)


def test_one_command_per_seed_plans_the_same_runs_as_one_list_of_seeds(tmp_path: Path) -> None:
    """A run's identity holds its own seed only: 'study.seeds=[3]' then '[4]' plan exactly the runs of
    'study.seeds=[3,4]' (the README's seeds 3-4 commands rely on it)."""
    def cells(seeds: str) -> dict:
        graph = build_graph(_load(tmp_path, extra=(f"study.seeds={seeds}",)))
        return {k: v for k, v in graph.cells.items()}
    both = cells("[3,4]")
    assert both == {**cells("[3]"), **cells("[4]")}
    assert both[("long@s3", "eval")] != both[("long@s4", "eval")]


def test_seeds_md_shows_each_sft_start_where_its_training_ended(tmp_path: Path) -> None:
    """The ``## SFT starts`` table: one row per SFT run the points start from (the sft and classic points
    share one per seed), its steps, the mean loss over its last 10% of steps (hand-computed below) and its
    own eval's accuracy; a run still going says so. Training logs and evals are written by hand."""
    from longcot.training.metrics import METRICS

    study = load_study(["+experiment=twin_findings", "study.seeds=[0,1]", "study.only=[recheck4-sft,recheck4-classic]",
                        f"output_root={tmp_path}"])
    graph = build_graph(study)
    ends = {0: (0.10, 0.08), 1: (0.20, 0.16)}  # the last two of 20 steps = the last 10%
    for seed, tail in ends.items():
        sft = graph.nodes[graph.cells[(f"recheck4-sft@s{seed}", "sft")][-1]].plan.run_dir
        records = [{"step": i + 1, "loss": 1.0} for i in range(18)] + [{"step": 19 + i, "loss": v} for i, v in enumerate(tail)]
        runs.write_jsonl(Path(sft) / METRICS, records)
        if seed == 0:
            runs.mark_done(Path(sft))
            ev = graph.nodes[graph.cells[("recheck4-sft@s0", "eval")][-1]].plan.run_dir
            runs.write_json(Path(ev) / "summary.json", {"accuracy": 0.9, "mean_tokens": 80.0})
            runs.mark_done(Path(ev))
    collect(graph, figures=False)
    seeds = (tmp_path / "studies" / "twin_findings" / "variants").rglob("seeds.md")
    text = next(seeds).read_text()
    section = text.split("## SFT starts", 1)[1]
    assert "| recheck4-sft, recheck4-classic | 0 | 20 | 0.090 | 90.0 (twin) |" in section
    assert "| recheck4-sft, recheck4-classic | 1 | 20 (not finished) | 0.180 | - |" in section


def test_tail_loss_by_hand() -> None:
    from longcot.training.metrics import tail_loss

    assert tail_loss([{"loss": float(i)} for i in range(1, 11)]) == 10.0  # last 10% of 10 steps: one step
    assert tail_loss([{"loss": float(i)} for i in range(1, 31)]) == 29.0  # the last 3 of 30: 28, 29, 30
    assert tail_loss([{"loss": 2.0}]) == 2.0 and tail_loss([]) is None


def test_a_comparison_names_the_seeds_it_leaves_out_and_why(tmp_path: Path) -> None:
    """n below the study's seeds is never silent. The repetition rate at N 10 is not identity, so a cosine
    run that finished before it was asked for logged only the 40-gram rate (seed 0 here): that seed leaves
    the rate's comparison, named with why; the length comparison keeps both seeds. A run not finished
    (seed 1's eval) is named as such. RL logs and evals are written by hand."""
    graph = build_graph(load_study(["+experiment=twin_sec4_repetition_2m_4ep", "study.seeds=[0,1]",
                                    f"output_root={tmp_path}"]))

    def rl_log(point: str, seed: int, length: float, rate_key: str, rate: float) -> None:
        run = Path(graph.nodes[graph.cells[(f"{point}@s{seed}", "rl")][-1]].plan.run_dir)
        runs.write_jsonl(run / "metrics.jsonl", [{"step": i + 1, "response_length_mean": length, rate_key: rate,
                                                  "reflection/recheck": 1.0, "reflection/alternatively": 0.1}
                                                 for i in range(8)])
        runs.mark_done(run)

    rl_log("cosine", 0, 100.0, "repetition/rate_40gram", 0.0)  # ran before N 10 was asked for
    rl_log("cosine", 1, 104.0, "repetition/rate_10gram", 0.20)
    rl_log("cosine-reppen", 0, 97.0, "repetition/rate_10gram", 0.05)
    rl_log("cosine-reppen", 1, 99.0, "repetition/rate_10gram", 0.06)
    ev = Path(graph.nodes[graph.cells[("cosine@s0", "eval")][-1]].plan.run_dir)
    runs.write_json(ev / "summary.json", {"accuracy": 0.9, "mean_tokens": 80.0})
    runs.mark_done(ev)
    footer = collect(graph, figures=False)["footer"]
    rate = next(x for x in footer if x.startswith("Fig. 10 (repetition rate"))
    assert "per seed s1: +0.140" in rate and "n=1" in rate
    assert rate.endswith("left out (no pair): s0 (cosine: repetition/rate_10gram not logged)"), rate
    length = next(x for x in footer if x.startswith("Fig. 10: "))
    assert "s0: +3.0, s1: +5.0" in length and "left out" not in length
    held = next(x for x in footer if x.startswith("Fig. 10 (held-out tokens)"))
    assert held.endswith("not run; left out (no pair): s0 (cosine-reppen: not finished), "
                         "s1 (cosine: not finished; cosine-reppen: not finished)"), held
    graph = build_graph(load_study(["+experiment=twin_sec4_repetition_2m_4ep", "study.seeds=[0,1]",
                                    "study.only=[sft,cosine]", f"output_root={tmp_path}"]))
    line = next(x for x in collect(graph, figures=False)["footer"] if x.startswith("Fig. 10: "))
    assert line.endswith("not run; left out (no pair): every seed (cosine-reppen: not in this study's points)"), line
    assert sum(x.startswith("Fig. 10") for x in footer) == 5  # every comparison of the file is shown
