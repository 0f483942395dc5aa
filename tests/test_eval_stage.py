"""The eval stage end to end: real tiny model and the synthetic backend, real grader, run identity."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from longcot.config.loading import CONF_DIR
from longcot.config.schema import register_configs
from tests.stage_helpers import eval_run as run

REPO = Path(__file__).resolve().parents[1]
register_configs()
FIELDS = {"problem_id", "sample_index", "prompt", "response", "extracted_answer", "gold", "correct", "tokens",
          "prompt_tokens", "finish_reason"}


def _cfg(root: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"output_root={root}", "eval.print_table=false", "eval.grader_workers=1", *overrides])


def _only_dir(root: Path, pattern: str) -> Path:
    (d,) = list(root.glob(pattern))
    return d


def test_tiny_model_eval_writes_samples_summary_and_done(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "benchmark=toy", "benchmark.limit=3", "benchmark.num_samples=2", "generation.max_new_tokens=12")
    results = run(cfg)
    out = _only_dir(tmp_path, "eval/tiny/toy-*")
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(set(r) == FIELDS for r in rows)
    assert sorted((r["problem_id"], r["sample_index"]) for r in rows) == sorted(
        (pid, k) for pid in {r["problem_id"] for r in rows} for k in (0, 1))
    for r in rows:
        assert 1 <= r["tokens"] <= 12 and r["finish_reason"] in ("stop", "length")
        assert r["finish_reason"] == "stop" or r["tokens"] == 12
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accuracy"] == results["toy"]["accuracy"]
    assert summary["num_problems"] == 3 and summary["samples_per_problem"] == 2
    assert summary["mean_tokens"] == pytest.approx(sum(r["tokens"] for r in rows) / 6)
    assert set(summary["reflection"]) == {"wait", "recheck", "alternatively", "retry", "however"}
    assert (out / "DONE").is_file() and (out / "config.yaml").is_file()
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_relaunch_skips_finished_work_and_force_redoes_it(tmp_path: Path) -> None:
    args = ("benchmark=toy", "benchmark.limit=2", "benchmark.num_samples=1", "generation.max_new_tokens=4")
    run(_cfg(tmp_path, *args))
    samples = _only_dir(tmp_path, "eval/tiny/toy-*") / "samples.jsonl"
    stamp = samples.stat().st_mtime_ns
    run(_cfg(tmp_path, *args))
    assert samples.stat().st_mtime_ns == stamp
    chunk = next(samples.parent.glob("chunks/chunk-*.jsonl"))
    chunk_stamp = chunk.stat().st_mtime_ns
    forced = run(_cfg(tmp_path, *args, "force=true"))["toy"]
    assert samples.stat().st_mtime_ns != stamp
    assert chunk.stat().st_mtime_ns != chunk_stamp and forced["resumed_chunks"] == 0  # nothing reused
    run(_cfg(tmp_path, *args[:-1], "generation.max_new_tokens=5"))  # another config, another run
    assert len(list(tmp_path.glob("eval/tiny/toy-*"))) == 2


@pytest.mark.parametrize("error_rate,expected", [(0.0, 1.0), (1.0, 0.0)])
def test_grading_pipeline_scores_a_checkable_backend(tmp_path: Path, error_rate: float, expected: float) -> None:
    """The synthetic teacher answers toy problems right (error_rate 0) or wrong (1): accuracy must follow."""
    cfg = _cfg(tmp_path, "benchmark=toy", "benchmark.limit=10", "generation=synthetic", f"generation.error_rate={error_rate}",
               "model.name=synthetic", "scale=full", "benchmark.max_new_tokens=4096")
    summary = run(cfg)["toy"]
    assert summary["accuracy"] == expected
    assert summary["extracted_rate"] == 1.0 and summary["truncation_rate"] == 0.0
    assert summary["reflection"]["wait"]["response_rate"] > 0  # long style writes "Wait, let me recheck"


def test_several_benchmarks_in_one_run_and_smoke_scale(tmp_path: Path) -> None:
    from tests.conftest import shared_file

    for rel in ("math500/test.jsonl", "aime24/test.jsonl", "mmlu_pro_1k/test.jsonl"):
        shared_file(rel)  # skips without the shared data folder (no hub here)
    cfg = _cfg(tmp_path, "generation=synthetic", "model.name=synthetic", "eval.benchmarks=[aime24,mmlu_pro_1k,toy]")
    results = run(cfg)
    assert set(results) == {"math500", "aime24", "mmlu_pro_1k", "toy"}
    for name, s in results.items():
        assert s["num_problems"] == 20 and s["samples_per_problem"] == 4  # smoke scale caps
        assert s["sampling"]["max_new_tokens"] == 256
        assert (_only_dir(tmp_path, f"eval/synthetic/{name}-*") / "DONE").is_file()


def test_cli_main_job_prints_table(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "longcot", f"output_root={tmp_path}", "benchmark=toy", "scale.max_problems=2",
         "scale.max_samples=1", "scale.max_new_tokens=4", "eval.grader_workers=1"],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "longcot eval: tiny (scale=smoke; capped" in proc.stdout and "toy" in proc.stdout
    assert "scale=smoke caps this run: benchmark.num_samples 4 -> 1" in proc.stdout + proc.stderr  # each cap named


def test_wandb_logger_records_an_offline_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = _cfg(tmp_path, "benchmark=toy", "benchmark.limit=2", "benchmark.num_samples=1", "generation.max_new_tokens=4",
               "logger=wandb")
    run(cfg)
    out = _only_dir(tmp_path, "eval/tiny/toy-*")
    (offline,) = list((out / "wandb").glob("offline-run-*"))
    assert list(offline.glob("*.wandb")), "wandb wrote no run file"


def test_identity_follows_what_changes_results(tmp_path: Path) -> None:
    from longcot.stages.eval import plan
    from tests.conftest import shared_file

    def h(*overrides: str) -> str:
        return plan(_cfg(tmp_path, *overrides)).run_id

    base = h("generation.device=cpu")
    assert h("generation.device=cpu", f"output_root={tmp_path / 'elsewhere'}") == base  # location is not identity
    assert h("generation.device=cpu", "eval.reflection_keywords=[wait]") != base
    assert h("generation.device=cpu", "benchmark.num_samples=2") != base
    mine = tmp_path / "math500.jsonl"
    original = shared_file("math500/test.jsonl").read_text()
    mine.write_text(original)
    assert h("generation.device=cpu", f"benchmark.path={mine}") == base  # same bytes, same identity
    mine.write_text(original.replace("frac", "dfrac", 1))
    assert h("generation.device=cpu", f"benchmark.path={mine}") != base  # edited data, new run


def test_a_synthetic_engine_eval_is_identified_by_the_model_name_not_its_weights(tmp_path: Path) -> None:
    from longcot.stages.eval import plan

    def h(*overrides: str) -> str:
        return plan(_cfg(tmp_path, "benchmark=toy", *overrides)).run_id

    synthetic = ("generation=synthetic", "model.name=synthetic")
    assert h(*synthetic, "model.tiny_seed=0") == h(*synthetic, "model.tiny_seed=7")  # it never reads the weights
    assert h(*synthetic) != h("generation=synthetic", "model.name=synthetic-long")  # the name is in the summary
    assert h("generation.device=cpu", "model.tiny_seed=0") != h("generation.device=cpu", "model.tiny_seed=7")


def test_chunking_does_not_change_what_is_drawn(tmp_path: Path) -> None:
    args = ("benchmark=toy", "benchmark.limit=7", "generation=synthetic", "model.name=synthetic", "scale=full",
            "benchmark.max_new_tokens=4096")
    run(_cfg(tmp_path / "one", *args))
    run(_cfg(tmp_path / "three", *args, "eval.chunk_problems=3"))
    one = _only_dir(tmp_path / "one", "eval/synthetic/toy-*")
    three = _only_dir(tmp_path / "three", "eval/synthetic/toy-*")
    assert len(list((three / "chunks").glob("chunk-*.jsonl"))) == 3
    assert (one / "samples.jsonl").read_bytes() == (three / "samples.jsonl").read_bytes()


def test_killed_eval_resumes_from_its_chunks_to_identical_output(tmp_path: Path) -> None:
    import os
    import signal
    import time

    args = ["benchmark=toy", "benchmark.limit=10", "eval.chunk_problems=1", "scale.max_new_tokens=96",
            "scale.max_samples=2", "eval.grader_workers=1", "generation.device=cpu", "torch_threads=1"]

    def cli(root: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "longcot", f"output_root={root}", *args], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)

    killed = cli(tmp_path / "killed")
    deadline = time.monotonic() + 240
    while not list((tmp_path / "killed").glob("eval/tiny/toy-*/chunks/chunk-00001.jsonl")):
        assert killed.poll() is None, killed.stderr.read()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    out = _only_dir(tmp_path / "killed", "eval/tiny/toy-*")
    assert not (out / "DONE").exists() and not (out / "samples.jsonl").exists()
    finished = sorted(p.name for p in (out / "chunks").glob("chunk-*.jsonl"))
    assert 2 <= len(finished) < 10, finished

    resumed = cli(tmp_path / "killed")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()[-2000:]
    whole = cli(tmp_path / "whole")
    assert whole.wait(timeout=300) == 0, whole.stderr.read()[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_chunks"] == len(finished)
    reference = _only_dir(tmp_path / "whole", "eval/tiny/toy-*")
    assert reference.name == out.name  # same config, same identity
    assert (out / "samples.jsonl").read_bytes() == (reference / "samples.jsonl").read_bytes()
