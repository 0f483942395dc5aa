"""The study spec and graph: override order, one node per identity (shared distill / SFT), implicit
upstream runs, clear errors; and the dry run's plan and GPU-hour estimate (hand-computed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from longcot.study.graph import build_graph
from longcot.study.spec import load_study

STUDY = """# @package _global_
defaults:
  - override /scale: full
  - override /data: toy
  - override /benchmark: toy
study:
  name: {name}
  base: ["data.toy_size=40", "distill.n=2", "distill.derive_n=[1]", "distill.max_new_tokens=512",
         "distill.temperature=1.0", "distill.top_p=0.95", "sft.teacher=synthetic-long", "sft.teacher_generation=synthetic",
         "logger=none"]
  stages:
    distill: ["generation=synthetic", "model=synthetic-long"]
    sft: ["sft.global_batch_sequences=8", "sft.max_length=384", "sft.max_tokens_per_micro_batch=1536",
          "sft.learning_rate=3.0e-3", "sft.warmup_ratio=0.0", "sft.epochs={sft_epochs}", "sft.max_steps={sft_steps}",
          "sft.save_every_steps=1"]
    rl: ["algorithm=grpo", "rl.from_sft=true", "algorithm.rollout_batch_size=2", "algorithm.samples_per_prompt=2",
         "algorithm.train_batch_size=4", "algorithm.micro_train_batch_size=2", "algorithm.max_new_tokens=16",
         "algorithm.learning_rate=1.0e-4", "algorithm.warmup_ratio=0.0", "rl.max_steps=2", "rl.save_every=1",
         "data.limit=8"]
    eval: ["benchmark.limit=4", "benchmark.num_samples=1", "benchmark.temperature=0.0", "benchmark.max_new_tokens=24",
           "eval.grader_workers=1"]
  points:
    - name: n2
      distill: []
      sft: ["sft.subset=n2"]
      eval: []
    - name: n1
      distill: []
      sft: ["sft.subset=n1"]
      eval: []
{extra}
  paper:
    source: "a test's numbers"
    values:
      n2: {{toy: 12.5}}
    findings:
      - {{cite: "Fig. T", statement: "n2 beats n1 on toy", checks: [{{point: n2, minus: n1, benchmark: toy, above: 0}}]}}
"""
RL_POINT = """    - name: n2-rl
      sft: ["sft.subset=n2"]
      rl: ["reward=classic"]
      eval: []
"""
BROKEN_POINT = """    - name: broken
      sft: ["sft.source=dataset", "sft.dataset={broken}"]
      eval: []
"""


def write_study(tmp: Path, name: str = "tstudy", rl: bool = True, broken: bool = True, sft_steps: int = 2,
                sft_epochs: int = 1) -> list[str]:
    """A tiny study file in a search path of its own; returns the overrides that select it."""
    conf = tmp / "conf"
    (conf / "experiment").mkdir(parents=True, exist_ok=True)
    bad = tmp / "broken.jsonl"
    bad.write_text('{"prompt": "1+1?", "response": "2"}\nnot json at all\n')
    extra = (RL_POINT if rl else "") + (BROKEN_POINT.format(broken=bad) if broken else "")
    (conf / "experiment" / f"{name}.yaml").write_text(STUDY.format(name=name, extra=extra, sft_steps=sft_steps, sft_epochs=sft_epochs))
    return [f"hydra.searchpath=[file://{conf}]", f"+experiment={name}", f"output_root={tmp / 'runs'}"]


def test_graph_dedupes_shared_runs_and_orders_dependencies(tmp_path: Path) -> None:
    graph = build_graph(load_study(write_study(tmp_path)))
    by_stage: dict[str, list[str]] = {}
    for node in graph.ordered():
        by_stage.setdefault(node.stage, []).append(node.key)
    # 12 stage runs in the points (n2: 3, n1: 3, n2-rl: distill (implicit) + sft + rl + eval, broken: 2) -> 9 runs
    assert sum(len(k) for k in graph.cells.values()) == 12
    assert {s: len(k) for s, k in by_stage.items()} == {"distill": 1, "sft": 3, "rl": 1, "eval": 4}
    [distill] = by_stage["distill"]
    # one distillation serves both N (explicit in n2/n1, planned by the SFT itself in n2-rl)
    assert graph.cells[("n2", "distill")] == graph.cells[("n1", "distill")] == graph.cells[("n2-rl", "distill")] == [distill]
    assert sorted(graph.nodes[distill].points) == ["n1", "n2", "n2-rl"]
    # one SFT checkpoint serves the eval of n2 and the RL of n2-rl
    assert graph.cells[("n2", "sft")] == graph.cells[("n2-rl", "sft")]
    sft_n2 = graph.cells[("n2", "sft")][0]
    rl = graph.cells[("n2-rl", "rl")][0]
    assert graph.nodes[rl].upstream == (sft_n2,)
    assert graph.nodes[graph.cells[("n2-rl", "eval")][0]].upstream == (rl,)
    assert graph.nodes[graph.cells[("broken", "sft")][0]].upstream == ()  # sft.source=dataset: no distill
    # the RL eval reads the RL checkpoint, so it is another run than the SFT eval
    assert graph.cells[("n2-rl", "eval")] != graph.cells[("n2", "eval")]
    # a dependency order: every run after its upstream
    seen: set[str] = set()
    for node in graph.ordered():
        assert set(node.upstream) <= seen
        seen.add(node.key)
    assert len(list(graph.edges())) == 7  # sft n2, n1 <- distill; rl <- sft n2; 4 evals <- their models
    assert graph.downstream(sft_n2) == {rl, graph.cells[("n2", "eval")][0], graph.cells[("n2-rl", "eval")][0]}

    # a SLURM job is the pickled plan; its checkpoint (USR2) resubmits the same plan
    import pickle

    from submitit.helpers import DelayedSubmission

    from longcot.study.slurm import StageJob

    job = pickle.loads(pickle.dumps(StageJob(graph.nodes[rl].plan)))
    assert job.plan.run_id == graph.nodes[rl].plan.run_id and job.plan.upstream[0].run_id == graph.nodes[sft_n2].plan.run_id
    again = job.checkpoint()
    assert isinstance(again, DelayedSubmission) and isinstance(again.function, StageJob) and again.function.plan is job.plan


def test_command_line_wins_over_point_stage_and_base_and_is_listed_per_run(tmp_path: Path, capsys) -> None:
    overrides = write_study(tmp_path) + ["sft.subset=n1", "benchmark.limit=3", "data.toy_size=7"]
    own = build_graph(load_study(write_study(tmp_path)))
    study = load_study(overrides)
    graph = build_graph(study)
    n2_sft_key = graph.cells[("n2", "sft")][0]
    n2_sft = graph.nodes[n2_sft_key].plan.cfg
    assert n2_sft.sft.subset == "n1"  # the command line wins over the point's override
    assert n2_sft.data.toy_size == 7  # ... and over study.base
    assert n2_sft.stage.name == "sft" and n2_sft.sft.max_steps == 2
    ev_key = graph.cells[("n1", "eval")][0]
    assert graph.nodes[ev_key].plan.cfg.benchmark.limit == 3  # ... and over study.stages.eval
    assert study.stage_overrides(study.point("n1"), "eval")[-1] == "stage=eval"
    assert study.stage_overrides(study.point("n1"), "eval", command_line=False)[-2:] == ["eval.grader_workers=1", "stage=eval"]
    # every changed key is listed for the runs it changes, with the study's own value
    own_sft = own.nodes[own.cells[("n2", "sft")][0]].plan.cfg
    assert [str(c) for c in graph.changes[n2_sft_key] if c.key != "output_root"] == [
        f"sft.subset=n1 (study: {own_sft.sft.subset})", f"data.toy_size=7 (study: {own_sft.data.toy_size})"]
    assert "benchmark.limit=3 (study: 4)" in map(str, graph.changes[ev_key])
    assert not any(c.key.startswith("sft") for c in graph.changes[ev_key])  # an eval does not read sft.*
    from longcot.study.dryrun import dry_run

    dry_run(graph)
    out = capsys.readouterr().out
    common = next(line for line in out.splitlines() if line.startswith("command line, in every stage run: "))
    assert "data.toy_size=7 (study: 40)" in common and "sft.subset" not in common
    assert "command line: sft.subset=n1 (study: n2)" in out


@pytest.mark.parametrize("bad, message", [
    ("  points: []\n", r"study.points: study bad has no grid point"),
    ("  points:\n    - name: a\n      train: []\n", r"study.points\[0\] \(a\): unknown key 'train'; valid: name, distill, sft, rl, eval"),
    ("  points:\n    - name: a\n      eval: []\n    - name: a\n      eval: []\n", r"study.points\[1\].name='a': duplicate point name"),
    ("  stages: {train: []}\n  points:\n    - name: a\n      eval: []\n", r"study.stages.train: unknown stage"),
    ("  points:\n    - name: a\n      eval: \"benchmark=toy\"\n", r"study.points\[0\].eval: must be a list of override strings"),
    ("  points:\n    - name: a\n      eval: []\n  paper: {source: s, values: {b: {x: 1}}}\n",
     r"study.paper.values.b: not a point of the study; valid: a"),
    ("  points:\n    - name: a\n      eval: []\n  paper: {b: {x: 1}}\n", r"study.paper.b: unknown key; valid: source"),
])
def test_malformed_study_fails_with_one_line_naming_the_key(tmp_path: Path, bad: str, message: str) -> None:
    conf = tmp_path / "experiment"
    conf.mkdir()
    (conf / "bad.yaml").write_text("# @package _global_\nstudy:\n  name: bad\n" + bad)
    with pytest.raises(ValueError, match=message):
        load_study([f"hydra.searchpath=[file://{tmp_path}]", "+experiment=bad"])


def test_bad_stage_override_names_point_stage_and_key(tmp_path: Path) -> None:
    overrides = write_study(tmp_path, rl=False, broken=False)
    path = tmp_path / "conf" / "experiment" / "tstudy.yaml"
    path.write_text(path.read_text().replace('sft: ["sft.subset=n2"]', 'sft: ["sft.subset=n3"]'))
    with pytest.raises(ValueError, match=r"point n2, stage sft: sft.subset='n3': not a dataset of distill run .*valid: n1, n2"):
        build_graph(load_study(overrides))


def test_pipeline_demo_study_plans(tmp_path: Path) -> None:
    """experiments/demo_pipeline.yaml: long and short distill shared by both budgets, the long 48K SFT shared by
    its eval and both RL variants (classic, cosine); the untrained model's eval as the baseline point."""
    graph = build_graph(load_study(["+experiment=demo_pipeline", f"output_root={tmp_path}"]))
    stages = [n.stage for n in graph.nodes.values()]
    assert {s: stages.count(s) for s in set(stages)} == {"distill": 2, "sft": 4, "rl": 2, "eval": 7}
    rls = [n for n in graph.nodes.values() if n.stage == "rl"]
    assert {n.plan.cfg.reward.name for n in rls} == {"classic", "cosine"}
    assert rls[0].upstream == rls[1].upstream == tuple(graph.cells[("long-48K", "sft")])


def test_cli_routes_only_studies(tmp_path: Path, capsys) -> None:
    from longcot.study.cli import maybe_study

    assert maybe_study([]) is None and maybe_study(["benchmark=toy"]) is None
    assert maybe_study(["+experiment=demo_cpu_eval"]) is None  # an experiment without study.name
    assert maybe_study(["--cfg", "job", "+experiment=demo"]) is None  # Hydra's own flags stay Hydra's
    assert maybe_study(["status"]) == 2 and "longcot status +experiment=NAME" in capsys.readouterr().err
    assert maybe_study(["+experiment=demo", "study.points=oops"]) == 2
    assert "config error" in capsys.readouterr().err
    assert maybe_study(["-m", "+experiment=demo_pipeline", f"output_root={tmp_path}", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "15 unique stage runs (15 to run, 0 done) for 7 points" in out and "estimated GPU-hours" in out
    assert not (tmp_path / "sft").exists()  # a dry run writes nothing


def test_main_job_demo_is_the_twin_fig1_point_at_1M_x_4_epochs_for_seed_0(tmp_path: Path) -> None:
    """experiments/demo.yaml (the README's main job) runs two points of twin_fig1_epochs for seed 0,
    long- and short-CoT SFT at 1M tokens x 4 epochs: the same stage runs (identities) as that study's (and
    so as twin_findings'), so either reuses them; nothing else. Its own base list only changes
    torch_threads (not identity), which this equality checks."""
    demo = build_graph(load_study(["+experiment=demo", f"output_root={tmp_path}"]))
    full = build_graph(load_study(["+experiment=twin_fig1_epochs", "study.seeds=[0]", f"output_root={tmp_path}"]))
    assert demo.study.name == "demo" and demo.study.seeds == (0,)
    assert {p for p, _ in demo.cells} == {"long-1M-4ep@s0", "short-1M-4ep@s0"}
    for cell, keys in demo.cells.items():
        assert keys == full.cells[cell], cell
    assert sorted(n.stage for n in demo.nodes.values()) == ["distill"] * 2 + ["eval"] * 2 + ["sft"] * 2
    sft = [n.plan.identity["sft"] for n in demo.nodes.values() if n.stage == "sft"]
    assert [s["epochs"] for s in sft] == [4, 4]


TWIN_ALL_SOURCES = {  # twin_all's point -> (study, point) it repeats
    "base": ("twin_fig1_sft_scaling", "base"), "long-1M": ("twin_fig1_sft_scaling", "long-1M"),
    "short-1M": ("twin_fig1_sft_scaling", "short-1M"), "long-1M-rl": ("twin_sec4_cosine_vs_classic", "classic"),
    "giveup-sft": ("twin_sec4_length_growth", "sft"), "giveup-classic": ("twin_sec4_length_growth", "classic"),
    "recheck-sft": ("twin_sec4_recheck_2m", "sft"), "recheck-classic": ("twin_sec4_recheck_2m", "classic"),
    "recheck-cosine": ("twin_sec4_recheck_2m", "cosine"), "recheck-A": ("twin_sec4_recheck_2m", "reward-A"),
    "recheck-reppen": ("twin_sec4_recheck_2m", "cosine-reppen"),
    "window-96": ("twin_sec4_context_window", "window-96"), "window-128": ("twin_sec4_context_window", "window-128"),
}


TWIN_FINDINGS_SOURCES = {  # twin_findings's point -> (study, point) it repeats
    "base": ("twin_fig1_sft_scaling", "base"), "long-1M-4ep": ("twin_fig1_epochs", "long-1M-4ep"),
    "short-1M-4ep": ("twin_fig1_epochs", "short-1M-4ep"), "recheck4-sft": ("twin_sec4_recheck_2m_4ep", "sft"),
    "recheck4-classic": ("twin_sec4_recheck_2m_4ep", "classic"), "recheck4-cosine": ("twin_sec4_recheck_2m_4ep", "cosine"),
    "recheck4-A": ("twin_sec4_recheck_2m_4ep", "reward-A"),
    "recheck4-reppen": ("twin_sec4_repetition_2m_4ep", "cosine-reppen"),
}


@pytest.mark.slow  # composes up to ~90 stage configs (about a minute on a quiet core)
@pytest.mark.parametrize("name,sources", [("twin_all", TWIN_ALL_SOURCES), ("twin_findings", TWIN_FINDINGS_SOURCES)])
def test_twin_all_repeats_the_twin_studies_runs_exactly(name: str, sources: dict, tmp_path: Path) -> None:
    """experiments/twin_all.yaml (every design) and twin_findings.yaml (the designs on which the findings
    reproduced) are one command each: each point is a point of a twin study with the same stage runs
    (identities), so neither reruns what the other finished."""
    one = ["study.seeds=[1]", f"output_root={tmp_path}"]
    every = build_graph(load_study([f"+experiment={name}", *one]))
    assert {p.split("@")[0] for p, _ in every.cells} == set(sources)
    graphs = {s: build_graph(load_study([f"+experiment={s}", *one])) for s, _ in sources.values()}
    for (cell, stage), keys in every.cells.items():
        study, point = sources[cell.split("@")[0]]
        assert keys == graphs[study].cells[(f"{point}@s1", stage)], (cell, stage)


def _identities(study: str, root: Path) -> dict[tuple[str, str], dict]:
    g = build_graph(load_study([f"+experiment={study}", "study.seeds=[5]", f"output_root={root}"]))
    return {(cell, stage): g.nodes[keys[-1]].plan.identity for (cell, stage), keys in g.cells.items()}


@pytest.mark.parametrize("study,parent", [("twin_sec4_length_growth_4ep", "twin_sec4_length_growth"),
                                          ("twin_sec4_recheck_4ep", "twin_sec4_recheck"),
                                          ("twin_sec4_recheck_2m_4ep", "twin_sec4_recheck_2m"),
                                          ("twin_table5_discount_4ep", "twin_table5_discount")])
def test_four_epoch_designs_change_only_the_sft_epochs(study: str, parent: str, tmp_path: Path) -> None:
    """The sixth, seventh and eighth §4 designs and Table 5's second claim to be their parent designs with the SFT trained 4 epochs
    instead of 2 and nothing else: same distill runs (identities), SFT identities that differ only in
    ``epochs``, and RL / eval runs that differ only through that upstream SFT."""
    mine, theirs = _identities(study, tmp_path), _identities(parent, tmp_path)
    assert set(mine) <= set(theirs)
    for cell, stage in mine:
        a, b = mine[(cell, stage)], theirs[(cell, stage)]
        if stage == "distill":
            assert a == b, cell
            continue
        assert a != b, (cell, stage)
        if stage == "sft":
            assert (a["sft"]["epochs"], b["sft"]["epochs"]) == (4, 2)
            assert {**a, "sft": {**a["sft"], "epochs": 2}} == b, cell
        else:
            assert {k: v for k, v in a.items() if k not in ("upstream", "model")} == \
                   {k: v for k, v in b.items() if k not in ("upstream", "model")}, (cell, stage)


def test_context_window_second_design_changes_only_the_window(tmp_path: Path) -> None:
    """twin_sec4_context_window_4ep claims: the sixth design's start (the very distill and SFT runs of
    twin_sec4_length_growth_4ep and twin_table5_discount_4ep) and three GRPO arms that differ only in
    ``algorithm.max_new_tokens``."""
    mine = _identities("twin_sec4_context_window_4ep", tmp_path)
    for parent in ("twin_sec4_length_growth_4ep", "twin_table5_discount_4ep"):
        theirs = _identities(parent, tmp_path)
        for stage in ("distill", "sft"):
            assert mine[("sft@s5", stage)] == theirs[("sft@s5", stage)], (parent, stage)
    rl = {w: mine[(f"window-{w}@s5", "rl")] for w in (80, 96, 128)}
    assert {w: a["algorithm"]["max_new_tokens"] for w, a in rl.items()} == {80: 80, 96: 96, 128: 128}
    same = {w: {**a, "algorithm": {**a["algorithm"], "max_new_tokens": 0}} for w, a in rl.items()}
    assert same[80] == same[96] == same[128]


def test_growth_window_replication_repeats_the_sixth_design_runs(tmp_path: Path) -> None:
    """twin_sec4_growth_window_4ep claims: on its own seeds, the very runs (identities) of
    twin_sec4_length_growth_4ep's sft / classic and twin_sec4_context_window_4ep's sft / window-80 /
    window-96; nothing else (no window 128)."""
    def cells(study: str) -> dict:
        g = build_graph(load_study([f"+experiment={study}", "study.seeds=[37]", f"output_root={tmp_path}"]))
        return g.cells
    mine = cells("twin_sec4_growth_window_4ep")
    growth, window = cells("twin_sec4_length_growth_4ep"), cells("twin_sec4_context_window_4ep")
    assert {c.split("@")[0] for c, _ in mine} == {"sft", "classic", "window-80", "window-96"}
    for (cell, stage), keys in mine.items():
        source = growth if cell.split("@")[0] in ("sft", "classic") else window
        assert keys == source[(cell, stage)], (cell, stage)
    assert build_graph(load_study(["+experiment=twin_sec4_growth_window_4ep", f"output_root={tmp_path}"])).study.seeds \
        == (37, 38, 39, 40)


def test_context_window_third_design_shares_the_start_and_changes_only_the_window(tmp_path: Path) -> None:
    """twin_sec4_context_window_ratio claims: the sixth design's start (the very distill and SFT runs of
    twin_sec4_context_window_4ep), the paper's Fig. 6 reward (cosine + dense repetition channel, gamma_c 1,
    gamma_p 0.99) with the twin's 10-gram, an eval window of 320 for every point, and two GRPO arms that
    differ only in ``algorithm.max_new_tokens``: 128 and 128 x 14,336 / 6,144 rounded to a multiple of 8."""
    mine = _identities("twin_sec4_context_window_ratio", tmp_path)
    theirs = _identities("twin_sec4_context_window_4ep", tmp_path)
    for stage in ("distill", "sft"):
        assert mine[("sft@s5", stage)] == theirs[("sft@s5", stage)], stage
    assert mine[("sft@s5", "eval")] != theirs[("sft@s5", "eval")]
    for cell in ("sft", "window-128", "window-296"):
        assert mine[(f"{cell}@s5", "eval")]["sampling"]["max_new_tokens"] == 320, cell
    assert 296 == 8 * round(128 * 14336 / 6144 / 8)
    rl = {w: mine[(f"window-{w}@s5", "rl")] for w in (128, 296)}
    for w, arm in rl.items():
        assert arm["algorithm"]["name"] == "grpo" and arm["algorithm"]["max_new_tokens"] == w
        rew = arm["reward"]
        assert (rew["gamma"], rew["repetition"]["gamma"], rew["repetition"]["ngram_size"]) == (1.0, 0.99, 10)
        assert rew["repetition"]["variant"] == "dense"
    same = {w: {**a, "algorithm": {**a["algorithm"], "max_new_tokens": 0}} for w, a in rl.items()}
    assert same[128] == same[296]


def test_fig10_replication_runs_the_fourth_designs_very_runs(tmp_path: Path) -> None:
    """twin_sec4_repetition_2m claims: the very distill, SFT, RL and eval runs of twin_sec4_recheck_2m's
    sft, cosine and cosine-reppen points (same identities; its logged repetition N is not identity),
    with the repetition rate logged at the penalty's N."""
    mine = _identities("twin_sec4_repetition_2m", tmp_path)
    theirs = _identities("twin_sec4_recheck_2m", tmp_path)
    assert {cell for cell, _ in mine} == {"sft@s5", "cosine@s5", "cosine-reppen@s5"}
    for key, identity in mine.items():
        assert identity == theirs[key], key
    g = build_graph(load_study(["+experiment=twin_sec4_repetition_2m", "study.seeds=[5]", f"output_root={tmp_path}"]))
    for cell in ("cosine@s5", "cosine-reppen@s5"):
        assert g.nodes[g.cells[(cell, "rl")][-1]].plan.cfg.rl.repetition_metric_ngram == 10
    assert mine[("cosine-reppen@s5", "rl")]["reward"]["repetition"]["ngram_size"] == 10


def test_fig10_on_the_eighth_design_runs_its_very_start_and_cosine_arm(tmp_path: Path) -> None:
    """twin_sec4_repetition_2m_4ep claims: the very distill, SFT, RL and eval runs of
    twin_sec4_recheck_2m_4ep's sft and cosine points (and so twin_findings' recheck4-*), and a penalty arm
    that differs from the cosine arm only in its reward: the fourth design's 10-gram arm (dense channel,
    N 10), with the repetition rate logged at the penalty's N on both arms."""
    mine = _identities("twin_sec4_repetition_2m_4ep", tmp_path)
    theirs = _identities("twin_sec4_recheck_2m_4ep", tmp_path)
    assert {cell for cell, _ in mine} == {"sft@s5", "cosine@s5", "cosine-reppen@s5"}
    for key, identity in mine.items():
        if key[0] != "cosine-reppen@s5":
            assert identity == theirs[key], key
    pen, cos = mine[("cosine-reppen@s5", "rl")], mine[("cosine@s5", "rl")]
    assert pen["upstream"] == cos["upstream"] and pen != cos
    assert {k: v for k, v in pen.items() if k != "reward"} == {k: v for k, v in cos.items() if k != "reward"}
    assert (pen["reward"]["repetition"]["variant"], pen["reward"]["repetition"]["ngram_size"]) == ("dense", 10)
    assert pen["reward"] == {**_identities("twin_sec4_recheck_2m", tmp_path)[("cosine-reppen@s5", "rl")]["reward"]}
    g = build_graph(load_study(["+experiment=twin_sec4_repetition_2m_4ep", "study.seeds=[5]", f"output_root={tmp_path}"]))
    for cell in ("cosine@s5", "cosine-reppen@s5"):
        assert g.nodes[g.cells[(cell, "rl")][-1]].plan.cfg.rl.repetition_metric_ngram == 10


def test_table5_third_design_changes_only_the_gammas(tmp_path: Path) -> None:
    """twin_table5_discount_horizon claims: twin_table5_discount_4ep's start (its distill and SFT runs)
    and PPO arms that differ from its gamma-1 arm only in the two channels' gammas, set to the paper's
    0.999 and 0.99 raised to 1000 / 61.2 (the twin's mean kept walk), rounded."""
    mine = _identities("twin_table5_discount_horizon", tmp_path)
    theirs = _identities("twin_table5_discount_4ep", tmp_path)
    for stage in ("distill", "sft"):
        assert mine[("sft@s5", stage)] == theirs[("sft@s5", stage)], stage
    assert mine[("gammas-1-1@s5", "rl")] == theirs[("gammas-1-1@s5", "rl")]
    for name, paper, digits in (("gammas-0984-0984", 0.999, 3), ("gammas-085-085", 0.99, 2)):
        arm = mine[(f"{name}@s5", "rl")]
        g = arm["reward"]["gamma"]
        assert arm["reward"]["repetition"]["gamma"] == g
        assert g == round(paper ** (1000 / 61.2), digits), name
        reset = {**arm, "reward": {**arm["reward"], "gamma": 1.0,
                                   "repetition": {**arm["reward"]["repetition"], "gamma": 1.0}}}
        assert reset == mine[("gammas-1-1@s5", "rl")], name


def test_fig9_ppo_design_shares_the_start_and_changes_only_the_reward(tmp_path: Path) -> None:
    """twin_sec4_reward_hparams_ppo claims: the very distill and SFT runs of twin_table5_discount_4ep (and
    so of twin_table5_discount_horizon), and two PPO arms that differ from each other only in the cosine
    reward's correct-answer values (B: 6 -> 5, C: 10 -> 9) and its name."""
    mine = _identities("twin_sec4_reward_hparams_ppo", tmp_path)
    for parent in ("twin_table5_discount_4ep", "twin_table5_discount_horizon"):
        theirs = _identities(parent, tmp_path)
        for stage in ("distill", "sft", "eval"):
            assert mine[("sft@s5", stage)] == theirs[("sft@s5", stage)], (parent, stage)
    b, c = mine[("reward-B@s5", "rl")], mine[("reward-C@s5", "rl")]
    assert b["algorithm"]["name"] == c["algorithm"]["name"] == "ppo"
    assert (b["reward"]["cosine"]["r0_correct"], b["reward"]["cosine"]["rL_correct"]) == (6.0, 5.0)
    assert (c["reward"]["cosine"]["r0_correct"], c["reward"]["cosine"]["rL_correct"]) == (10.0, 9.0)

    def without_correct_values(a: dict) -> dict:
        cosine = {**a["reward"]["cosine"], "r0_correct": 0, "rL_correct": 0}
        return {**a, "reward": {**a["reward"], "name": "", "cosine": cosine}}

    assert without_correct_values(b) == without_correct_values(c)
