"""Trustworthy runs (issue 7): nothing typed is ignored, results are tied to what ran, failures are
one clean line, two identical runs never both do the work, every JSON file is strict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from longcot.config.loading import CONF_DIR
from longcot.config.schema import register_configs
from tests.stage_helpers import distill_run, eval_run

register_configs()
REPO = Path(__file__).resolve().parents[1]
SYNTH = ("benchmark=toy", "generation=synthetic", "model.name=synthetic", "eval.print_table=false",
         "eval.grader_workers=1")


def _cfg(root: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"output_root={root}", *overrides])


def _cli(root: Path, *args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "longcot", f"output_root={root}", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300, **kw)


@pytest.mark.parametrize("args,message", [
    (["+benchmark.limt=5"], "benchmark.limt: no such key in BenchmarkConfig; did you mean benchmark.limit"),
    (["benchmark.limit=0"], "benchmark.limit=0: must be >= 1 (null means no limit)"),
    (["benchmark=toy", "benchmark.path=/tmp/x.jsonl"], "benchmark.path='/tmp/x.jsonl' with benchmark.kind=toy"),
])
def test_typed_input_is_never_silently_ignored(tmp_path: Path, args: list[str], message: str) -> None:
    proc = _cli(tmp_path, *args)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"longcot: config error: {lines[0].split('config error: ', 1)[1]}"] and message in lines[0]
    assert not (tmp_path / "eval").exists()


def test_a_failure_while_running_is_one_line_and_leaves_no_run_directory(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "1+1", "answer": "2", "unique_id": "a"}\n{"problem": oops\n')
    proc = _cli(tmp_path, "benchmark=math500", f"benchmark.path={bad}", "generation=synthetic")
    assert proc.returncode == 1, proc.stderr[-2000:]
    [line] = proc.stderr.strip().splitlines()[-1:]
    assert line.startswith("longcot: error: ") and f"{bad}:2" in line
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("eval/**/config.yaml"))  # nothing that looks like a run
    debug = _cli(tmp_path, "benchmark=math500", f"benchmark.path={bad}", "generation=synthetic",
                 env={**os.environ, "LONGCOT_DEBUG": "1"})
    assert debug.returncode != 0 and "Traceback" in debug.stderr  # the traceback behind a flag


def test_smoke_caps_on_what_the_user_set_are_named_in_the_warning_and_the_outputs(tmp_path: Path,
                                                                              caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        results = eval_run(_cfg(tmp_path, *SYNTH, "benchmark.limit=50", "benchmark.num_samples=8"))
    s = results["toy"]
    assert (s["num_problems"], s["samples_per_problem"]) == (20, 4)
    assert s["scale_caps"] == {"benchmark.num_samples": {"set": 8, "used": 4},
                               "benchmark.max_new_tokens": {"set": 512, "used": 256},  # conf/benchmark/toy.yaml
                               "benchmark.limit": {"set": 50, "used": 20}}
    warning = next(r.getMessage() for r in caplog.records if "caps this run" in r.getMessage())
    for part in ("benchmark.limit 50 -> 20", "benchmark.num_samples 8 -> 4", "pass scale=full"):
        assert part in warning
    full = eval_run(_cfg(tmp_path, *SYNTH, "benchmark.limit=50", "benchmark.num_samples=8", "scale=full",
                         "benchmark.max_new_tokens=512"))["toy"]
    assert (full["num_problems"], full["samples_per_problem"], full["scale_caps"]) == (50, 8, {})


def test_a_second_identical_run_waits_for_the_first_and_does_no_work(tmp_path: Path) -> None:
    args = ("benchmark=toy", "benchmark.limit=6", "scale.max_new_tokens=48", "eval.grader_workers=1", "eval.chunk_problems=1")
    first = subprocess.Popen([sys.executable, "-m", "longcot", f"output_root={tmp_path}", *args], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while not list(tmp_path.glob("eval/tiny/toy-*/.run.lock")):
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    second = _cli(tmp_path, *args)
    assert first.wait(timeout=300) == 0
    assert "eval toy" in first.stdout.read()  # the chunk progress bar of a run that generates
    assert second.returncode == 0, second.stderr[-2000:]
    out = second.stdout + second.stderr
    assert "is in progress" in out and "waiting for it to finish" in out
    assert "eval toy" not in out.split("waiting for it to finish", 1)[1]  # it generated nothing itself
    [run_dir] = tmp_path.glob("eval/tiny/toy-*")
    assert (run_dir / "DONE").is_file() and len(list((run_dir / "chunks").glob("*.jsonl"))) == 6


def _strict(path: Path) -> None:
    def reject(name: str) -> None:
        raise AssertionError(f"{path}: non-JSON constant {name}")

    text = path.read_text()
    if path.suffix == ".jsonl":
        for line in text.splitlines():
            json.loads(line, parse_constant=reject)
    else:
        json.loads(text, parse_constant=reject)


def test_every_json_file_written_is_strict_json(tmp_path: Path) -> None:
    eval_run(_cfg(tmp_path, *SYNTH, "benchmark.limit=3", "benchmark.num_samples=1"))  # one sample: no standard error
    distill_run(_cfg(tmp_path, "+experiment=demo_cpu_distill", "data.toy_size=6", "distill.n=2", "distill.derive_n=[]",
                     "distill.print_table=false", "distill.format=jsonl"))
    files = [p for p in tmp_path.rglob("*") if p.suffix in (".json", ".jsonl")]
    assert len(files) > 10
    for p in files:
        _strict(p)
    [summary] = tmp_path.glob("eval/**/summary.json")
    assert json.loads(summary.read_text())["accuracy_se"] is None


def test_overwriting_a_checkpoint_changes_the_run_identity(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from longcot.models.tiny import ensure_tiny
    from longcot.stages import eval as eval_stage

    src = ensure_tiny(_cfg(tmp_path).model)
    ckpt = tmp_path / "ckpt"
    model = AutoModelForCausalLM.from_pretrained(src)
    model.save_pretrained(ckpt)
    AutoTokenizer.from_pretrained(src).save_pretrained(ckpt)
    args = ("benchmark=toy", f"model.path={ckpt}", "model.name=my-sft")
    before = eval_stage.plan(_cfg(tmp_path, *args)).run_id
    assert eval_stage.plan(_cfg(tmp_path / "elsewhere", *args)).run_id == before  # location is not identity
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    model.save_pretrained(ckpt)  # new weights, same shapes, same directory
    assert eval_stage.plan(_cfg(tmp_path, *args)).run_id != before


def test_a_killed_merge_leaves_no_temp_file_after_the_relaunch(tmp_path: Path) -> None:
    args = ("+experiment=demo_cpu_distill", "data.toy_size=6", "distill.n=2", "distill.derive_n=[]",
            "distill.print_table=false")
    out = distill_run(_cfg(tmp_path, *args))
    select = Path(out["dir"])
    stale = select / "n2" / ".data.parquet.abc123.tmp"  # what a kill inside the atomic write leaves
    stale.write_bytes(b"partial")
    (select / "DONE").unlink()  # the merge had not finished
    distill_run(_cfg(tmp_path, *args))
    assert not stale.exists() and (select / "DONE").is_file()
