"""The command line as a user meets it: typos in every form are one line, exit 2 and a "did you mean";
help is short and real for each subcommand; invalid values are refused before anything runs, in a
study too (where the command line wins over the study's values)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from longcot.config.overrides import check_overrides
from longcot.config.validate import ConfigError


def run_cli(monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    """``longcot ARGV`` in this process: (exit code, stdout, stderr)."""
    from longcot import cli

    monkeypatch.setattr(sys, "argv", ["longcot", *argv])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.delenv("LONGCOT_DEBUG", raising=False)
    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        with pytest.raises(SystemExit) as exc:
            cli.main()
    finally:  # the study CLI's logging.basicConfig writes to this test's captured stream: not to later tests'
        for h in root.handlers[:]:
            if h not in handlers:
                root.removeHandler(h)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


@pytest.mark.parametrize("typo, expected", [
    ("rl.max_step=2", "rl.max_step: no such key in RLConfig; did you mean rl.max_steps?"),
    ("sft.learning_rat=1e-4", "sft.learning_rat: no such key in SFTConfig; did you mean sft.learning_rate?"),
    ("benchmark.limt=5", "benchmark.limt: no such key in BenchmarkConfig; did you mean benchmark.limit, benchmark.split?"),
    ("+benchmark.limt=5", "benchmark.limt: no such key in BenchmarkConfig; did you mean benchmark.limit"),
    ("model=tinyy", "model=tinyy: no such model option; did you mean tiny?"),
    ("outputroot=x", "outputroot: no such key or group; did you mean output_root?"),
    ("benchmark.limit=abc", "benchmark.limit='abc': must be an integer"),
])
@pytest.mark.parametrize("form", [(), ("+experiment=demo", "--dry-run"), ("status", "+experiment=demo"), ("--cfg", "job")])
def test_typo_is_one_line_exit_2_with_did_you_mean_in_every_form(monkeypatch, capsys, typo, expected, form) -> None:
    argv = [*form, typo] if form[:1] != ("status",) else ["status", typo, *form[1:]]
    code, out, err = run_cli(monkeypatch, capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("longcot: config error: ") and expected in err


def test_override_checker_accepts_valid_forms() -> None:
    check_overrides(["benchmark.limit=null", "benchmark=toy,math500", "sft.learning_rate=1e-4", "+experiment=demo",
                     "cluster.additional_parameters.foo=1", "eval.benchmarks=[toy]", "hydra/launcher=submitit_slurm",
                     "distill.teachers.x.n=3", "~sft.teacher"])
    with pytest.raises(ConfigError, match=r"^benchmark=mth500: no such benchmark option; did you mean math500\?"):
        check_overrides(["benchmark=toy,mth500"])
    with pytest.raises(ConfigError, match=r"^experiments/x.yaml study.base: eval.benchmarks='toy': must be a list"):
        check_overrides(["eval.benchmarks=toy"], "experiments/x.yaml study.base")


def test_typo_inside_a_study_file_names_the_file_and_list(monkeypatch, capsys, tmp_path) -> None:
    conf = tmp_path / "experiment"
    conf.mkdir()
    (conf / "typo.yaml").write_text('# @package _global_\nstudy:\n  name: typo\n  stages: {rl: ["rl.max_step=2"]}\n'
                                    '  points:\n    - name: a\n      eval: []\n')
    code, _, err = run_cli(monkeypatch, capsys, f"hydra.searchpath=[file://{tmp_path}]", "+experiment=typo", "--dry-run")
    assert code == 2 and err.strip() == ("longcot: config error: experiments/typo.yaml study.stages.rl: rl.max_step: "
                                         "no such key in RLConfig; did you mean rl.max_steps?")


@pytest.mark.parametrize("argv, must", [
    (("--help",), ("status", "collect", "--dry-run", "+experiment=NAME", "exit codes", "--hydra-help",
                   "experiments (+experiment=NAME): demo, demo_cpu_distill")),
    (("-h",), ("status", "collect", "--dry-run")),
    (("status", "--help"), ("usage: longcot status +experiment=NAME", "exit codes")),
    (("collect", "-h"), ("usage: longcot collect +experiment=NAME", "results.md")),
])
def test_help_is_short_and_names_the_subcommands(monkeypatch, capsys, argv, must) -> None:
    code, out, err = run_cli(monkeypatch, capsys, *argv)
    assert code == 0 and err == "" and len(out.splitlines()) <= 30
    for text in must:
        assert text in out


def test_misspelled_command_gets_did_you_mean(monkeypatch, capsys) -> None:
    code, _, err = run_cli(monkeypatch, capsys, "colect", "+experiment=demo")
    assert code == 2 and err.count("\n") == 1 and "'colect': not a command or an override; did you mean collect?" in err


@pytest.mark.parametrize("override, expected", [
    ("sft.learning_rate=-1", "point long-12K, stage sft: sft.learning_rate must be > 0, got -1.0"),
    ("sft.weight_decay=-1", "point long-12K, stage sft: sft.weight_decay must be >= 0, got -1.0"),
    ("algorithm.learning_rate=-1", "stage rl: algorithm.learning_rate must be > 0, got -1.0"),
    ("stage=rl", "stage=rl: a study sets the stage of each of its stage runs"),
])
def test_invalid_values_are_refused_at_plan_time_in_a_study(monkeypatch, capsys, tmp_path, override, expected) -> None:
    code, out, err = run_cli(monkeypatch, capsys, "+experiment=demo_pipeline", override, f"output_root={tmp_path}", "--dry-run")
    last = err.strip().splitlines()[-1]  # (building the tiny model may draw a progress bar first)
    assert code == 2 and last.startswith("longcot: config error: ") and expected in last
    assert not any(tmp_path.iterdir())  # nothing written


# --------------------------------------------------------------------------- runs that should work
def _plan(*overrides: str):
    from longcot.config.validate import validate
    from longcot.stages import plan_all, plan_follow_ups
    from longcot.study.spec import compose

    cfg = compose(list(overrides))
    validate(cfg)
    plans = plan_all(cfg)
    return plans, plan_follow_ups(plans)


def test_smoke_scale_fits_one_rl_step_and_names_every_cap(tmp_path) -> None:
    (rl,), _ = _plan("stage=rl", "data=toy", f"output_root={tmp_path}")
    a = rl.detail["algorithm"]
    # grpo.yaml: 512 prompts x 8 samples, 512 responses per optimizer step; smoke: 20 prompts, 4 samples
    assert (a.rollout_batch_size, a.samples_per_prompt, a.train_batch_size, a.micro_train_batch_size) == (20, 4, 80, 1)
    note = " ".join(rl.notes)
    for cap in ("algorithm.rollout_batch_size 512 -> 20", "algorithm.samples_per_prompt 8 -> 4",
                "algorithm.train_batch_size 512 -> 80", "data.limit all -> 20"):
        assert cap in note


def test_capped_rollout_keeps_batches_divisible() -> None:
    from longcot.config.scale import capped_rollout
    from longcot.rl.config import AlgorithmConfig

    a = AlgorithmConfig(name="grpo", advantage="group", critic_learning_rate=None, rollout_batch_size=64,
                        samples_per_prompt=4, train_batch_size=48, micro_train_batch_size=8)
    caps: list = []
    capped_rollout(a, 5, 4, caps)
    # 5 prompts x 4 = 20 responses: the largest step <= 48 dividing 20 is 20; the largest micro <= 8 dividing 20 is 5
    assert (a.rollout_batch_size, a.samples_per_prompt, a.train_batch_size, a.micro_train_batch_size) == (5, 4, 20, 5)
    assert [str(c) for c in caps] == ["algorithm.rollout_batch_size 64 -> 5", "algorithm.train_batch_size 48 -> 20",
                                      "algorithm.micro_train_batch_size 8 -> 5"]
    a.validate()


def test_too_few_toy_prompts_for_a_rollout_is_a_plan_time_config_error(monkeypatch, capsys, tmp_path) -> None:
    code, _, err = run_cli(monkeypatch, capsys, "stage=rl", "data=toy", "scale=full", "data.toy_size=100",
                           f"output_root={tmp_path}")
    assert code == 2 and "100 training prompts < algorithm.rollout_batch_size=512" in err.strip().splitlines()[-1]
    assert not (tmp_path / "rl").exists()


def test_post_training_eval_is_a_planned_run_with_the_composed_settings(tmp_path) -> None:
    (sft,), follow = _plan("+experiment=demo_cpu_sft", "sft.eval_benchmarks=[toy,math500]", f"output_root={tmp_path}")
    toy, math = follow
    assert toy.stage == math.stage == "eval" and toy.upstream[-1] is sft and math.upstream[-1] is sft
    # the experiment's composed benchmark (demo_cpu_sft.yaml: 50 problems x 1 greedy sample at 160 tokens) ...
    b = toy.cfg.benchmark
    assert (b.name, b.limit, b.num_samples, b.temperature, b.max_new_tokens) == ("toy", 50, 1, 0.0, 160)
    # ... another benchmark: its own config
    assert math.cfg.benchmark.name == "math500" and math.cfg.benchmark.limit is None
    assert not toy.done and not toy.run_dir.exists()  # planned, nothing written


def test_post_training_eval_of_a_study_is_a_node_visible_in_status(tmp_path, capsys) -> None:
    from longcot.study.graph import build_graph
    from longcot.study.spec import load_study
    from longcot.study.status import print_status
    from tests.test_study_graph import write_study

    graph = build_graph(load_study(write_study(tmp_path, rl=False, broken=False) + ["sft.eval_benchmarks=[toy]"]))
    sft_keys = {k for k, n in graph.nodes.items() if n.stage == "sft"}
    after = [n for n in graph.nodes.values() if n.stage == "eval" and set(n.upstream) & sft_keys
             and n.plan.cfg.benchmark.limit is None]
    assert len(after) == len(sft_keys) == 2
    states = print_status(graph)
    assert all(states[n.key].state == "pending" for n in after)
    out = capsys.readouterr().out
    assert all(n.key in out for n in after)


def test_status_shows_an_interrupted_run_with_its_step_job_and_log(tmp_path, capsys) -> None:
    from longcot.study import records
    from longcot.study.graph import build_graph
    from longcot.study.spec import load_study
    from longcot.study.status import print_status
    from tests.test_study_graph import write_study

    graph = build_graph(load_study(write_study(tmp_path, rl=False, broken=False)))
    node = graph.nodes[graph.cells[("n2", "sft")][0]]
    # what a SIGKILLed local SFT run leaves: its record says running, a periodic checkpoint exists, no lock held
    ckpt = node.plan.run_dir / "checkpoints" / "step-00000002"
    ckpt.mkdir(parents=True)
    (ckpt / "state.json").write_text("{}")
    records.write_local(node.plan, "running")
    states = print_status(graph)
    assert states[node.key].state == "interrupted" and states[node.key].reason == "at step 2, resumes there"
    out = capsys.readouterr().out
    assert "interrupted (at step 2, resumes there)" in out and "local" in out
    line = next(x for x in out.splitlines() if x.startswith(node.key))
    assert line.split()[-1] == str(records.local_log(node.plan)) and " local " in line


def test_slurm_without_a_controller_is_one_line_and_leaves_nothing(monkeypatch, capsys, tmp_path) -> None:
    """``longcot -m +experiment=demo cluster=slurm`` where SLURM cannot take jobs: one line, exit 1, no
    submitit folder (asked before anything is written)."""
    import shutil

    conf = Path("/etc/slurm/slurm.conf")
    if shutil.which("scontrol") and conf.is_file():  # a controller that is down: this host's config, another address
        text = "\n".join(("SlurmctldHost=lcctl(127.0.0.1)" if line.startswith("SlurmctldHost=") else line)
                         for line in conf.read_text().splitlines())
        (tmp_path / "slurm.conf").write_text(text + "\n")
        monkeypatch.setenv("SLURM_CONF", str(tmp_path / "slurm.conf"))
        expected = "no SLURM controller answers (`scontrol ping`:"
    else:  # no SLURM installed at all
        monkeypatch.setenv("PATH", str(tmp_path))
        expected = "SLURM's commands (sbatch, scontrol) are not on PATH"
    out_root = tmp_path / "runs"
    for argv in (("-m", "+experiment=demo", "cluster=slurm"), ("-m", "cluster=slurm", "benchmark=toy,math500")):
        code, _, err = run_cli(monkeypatch, capsys, *argv, f"output_root={out_root}")
        assert code == 1 and err.count("\n") == 1 and expected in err and err.startswith("longcot: error: cluster=slurm")
        assert not out_root.exists()


def test_malformed_jsonl_line_names_its_line_and_column(tmp_path) -> None:
    from longcot.data.loading import DataError, read_records

    path = tmp_path / "bad.jsonl"
    # line 2 lacks its closing brace: the decoder stops after its 32nd character, at column 33
    path.write_text('{"problem": "1+1", "answer": "2"}\n{"problem": "1+2", "answer": "3"\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: invalid JSON \(Expecting ',' delimiter at column 33\)$"):
        read_records(path)


def test_progress_off_a_terminal_is_one_line_per_interval(monkeypatch) -> None:
    import io

    from longcot.progress import bar

    stream = io.StringIO()  # not a terminal
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setenv("LONGCOT_PROGRESS_INTERVAL", "3600")
    b = bar(total=200, desc="train", unit="step")
    for i in range(200):
        b.update(1)
        b.set_postfix(loss=i)  # tqdm redraws on every postfix: still no line before the interval
    b.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and len(lines) == 2  # the start, and the final state when it closes
    assert lines[0].startswith("train:   0%") and lines[1].startswith("train: 100%") and "200/200" in lines[1]


def test_plain_run_writes_nothing_under_hydra_dirs(tmp_path) -> None:
    import subprocess

    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run([sys.executable, "-m", "longcot", "benchmark=toy", "benchmark.limit=1", "benchmark.num_samples=1",
                           "benchmark.max_new_tokens=4", f"output_root={tmp_path / 'runs'}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # no .hydra/, no longcot.log in the cwd
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["eval"]  # no runs/hydra/<date>/
