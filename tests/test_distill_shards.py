"""Shards: independent, resumable; a killed shard leaves nothing finished; resume is byte-identical."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from longcot.distill.shards import EXIT_AFTER_ROWS_ENV, EXIT_CODE, Shard
from longcot.stages import distill as stage
from tests.stage_helpers import distill_run
from tests.test_distill_sampling import distill_cfg

REPO = Path(__file__).resolve().parents[1]
COMMON = ["data.toy_size=30", "distill.num_shards=3", "distill.n=8", "distill.derive_n=[2,4]", "distill.token_budgets=[3K,6K]"]
# Outputs with timings (not part of the deterministic result).
TIMED = ("stats.json", ".done.json", "environment.json")  # when and where, not what: not compared


def _cli(root: Path, *overrides: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "longcot", "+experiment=demo_cpu_distill", f"output_root={root}",
           "distill.print_table=false", *COMMON, *overrides]
    return subprocess.run(cmd, cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300)


def _files(root: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted((root / "distill").rglob("*")):
        if p.is_file() and not p.name.endswith((*TIMED, ".lock")):
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def test_killed_shard_resumes_to_byte_identical_output(tmp_path: Path) -> None:
    ref_root, root = tmp_path / "uninterrupted", tmp_path / "interrupted"
    distill_run(distill_cfg(ref_root, *COMMON))
    reference = _files(ref_root)
    assert any(k.endswith("n8/data.parquet") for k in reference) and any("budget-3000" in k for k in reference)

    first = _cli(root, "distill.shard=0")  # one shard as its own job: no merge yet
    assert first.returncode == 0, first.stderr[-3000:]
    killed = _cli(root, env={EXIT_AFTER_ROWS_ENV: "25"})  # skips shard 0, dies inside shard 1
    assert killed.returncode == EXIT_CODE, killed.stderr[-3000:]

    run_dir = next((root / "distill").glob("*/*"))
    shards = run_dir / "shards"
    s0, s1, s2 = (Shard(i, 3) for i in range(3))
    assert s0.is_done(run_dir) and not s1.is_done(run_dir) and not s2.is_done(run_dir)
    assert not s1.rows_path(run_dir).exists() and not s1.done_path(run_dir).exists()
    partial = list(shards.glob(f".{s1.name}*.tmp"))
    assert len(partial) == 1 and len(partial[0].read_text().splitlines()) == 25  # really killed mid-shard
    assert not (run_dir / "DONE").exists() and not list(run_dir.glob("select-*"))
    marker0 = s0.done_path(run_dir).read_bytes()

    distill_run(distill_cfg(root, *COMMON))  # resume
    assert s0.done_path(run_dir).read_bytes() == marker0  # the finished shard was not redone
    assert not list(shards.glob(".*.tmp"))  # the killed attempt's leftovers are gone
    assert _files(root) == reference  # byte-identical to the uninterrupted run
    assert len(json.loads((run_dir / "environment.json").read_text())) == 3  # shard 0, killed, resumed


def test_one_shard_per_job_then_merge(tmp_path: Path) -> None:
    out = distill_run(distill_cfg(tmp_path, "data.toy_size=10", "distill.num_shards=2", "distill.shard=1"))
    assert out["pending_shards"] == [0]
    run_dir = Path(out["dir"])
    assert not (run_dir / "DONE").exists() and Shard(1, 2).is_done(run_dir)
    out = distill_run(distill_cfg(tmp_path, "data.toy_size=10", "distill.num_shards=2", "distill.shard=0"))
    assert Path(out["dir"]).parent == run_dir and (run_dir / "DONE").is_file()
    assert out["datasets"]["16"]["prompts"] == 10


def test_parallel_local_workers_match_sequential(tmp_path: Path) -> None:
    args = ["data.toy_size=12", "distill.num_shards=2", "distill.n=4", "distill.derive_n=[]"]
    seq = distill_run(distill_cfg(tmp_path / "seq", *args))
    par = distill_run(distill_cfg(tmp_path / "par", *args, "distill.workers=2"))
    assert _files(tmp_path / "seq") == _files(tmp_path / "par")
    assert seq["datasets"] == par["datasets"]


@given(st.integers(0, 300), st.integers(1, 40))
def test_shards_partition_the_prompts(n: int, count: int) -> None:
    items = list(range(n))
    blocks = [Shard(i, count).select(items) for i in range(count)]
    assert [x for b in blocks for x in b] == items
    assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def test_bad_shard_index_names_the_key(tmp_path: Path) -> None:
    import pytest

    with pytest.raises(ValueError, match=r"distill.shard=5 is out of range for distill.num_shards=3 \(valid: 0..2\)"):
        distill_run(distill_cfg(tmp_path, "distill.num_shards=3", "distill.shard=5"))


FORCE = ["data.toy_size=10", "distill.num_shards=2", "distill.n=4", "distill.derive_n=[2]"]


def _mtimes(run_dir: Path) -> dict[int, int]:
    return {i: Shard(i, 2).done_path(run_dir).stat().st_mtime_ns for i in range(2)}


def test_forced_shard_jobs_merge_once_every_shard_is_resampled(tmp_path: Path) -> None:
    import json

    first = distill_run(distill_cfg(tmp_path, *FORCE))
    run_dir, select_dir = Path(first["dir"]).parent, Path(first["dir"])
    before = _mtimes(run_dir)
    # job 0 of a forced array (the jobs share a token): shard 1 still holds an old marker -> no merge
    out = distill_run(distill_cfg(tmp_path, *FORCE, "force=true", "distill.shard=0", "distill.force_token=array-7"))
    assert out == {"dir": str(run_dir), "pending_shards": [1]}
    assert not (run_dir / "DONE").exists() and not (select_dir / "DONE").exists()  # invalidated, not re-merged
    after = _mtimes(run_dir)
    assert after[0] != before[0] and after[1] == before[1]
    assert json.loads(Shard(0, 2).done_path(run_dir).read_text())["force_token"] == "array-7"
    # job 1 of the same force run: every shard is new -> the merge
    out = distill_run(distill_cfg(tmp_path, *FORCE, "force=true", "distill.shard=1", "distill.force_token=array-7"))
    assert out["dir"] == str(select_dir) and (run_dir / "DONE").is_file() and (select_dir / "DONE").is_file()
    assert out["datasets"] == first["datasets"]  # deterministic sampling: the same data


def test_forced_jobs_without_a_shared_token_leave_the_merge_to_a_plain_run(tmp_path: Path) -> None:
    first = distill_run(distill_cfg(tmp_path, *FORCE))
    run_dir = Path(first["dir"]).parent
    assert distill_run(distill_cfg(tmp_path, *FORCE, "force=true", "distill.shard=0"))["pending_shards"] == [1]
    assert distill_run(distill_cfg(tmp_path, *FORCE, "force=true", "distill.shard=1"))["pending_shards"] == [0]
    resampled = _mtimes(run_dir)
    out = distill_run(distill_cfg(tmp_path, *FORCE))  # no force: merges the shards as they are
    assert _mtimes(run_dir) == resampled and (run_dir / "DONE").is_file()
    assert out["datasets"] == first["datasets"]
    # a force run of the whole stage in one process re-samples every shard and merges
    forced = distill_run(distill_cfg(tmp_path, *FORCE, "force=true"))
    assert all(_mtimes(run_dir)[i] != resampled[i] for i in range(2)) and forced["datasets"] == first["datasets"]


def test_a_selection_built_from_other_samples_is_rebuilt(tmp_path: Path, monkeypatch) -> None:
    import pyarrow.parquet as pq

    from longcot.distill.sources import Generators
    from longcot.generation.synthetic import SyntheticGenerator

    first = distill_run(distill_cfg(tmp_path, *FORCE, "generation.error_rate=0.0"))
    run_dir = Path(first["dir"]).parent
    assert first["datasets"]["4"]["correct_candidates"] == 40
    # shard 0 is deleted and redone by a teacher that now gets everything wrong (e.g. a
    # nondeterministic engine): the existing selection no longer matches the samples
    Shard(0, 2).done_path(run_dir).unlink()
    monkeypatch.setattr(Generators, "get", lambda self, name, key="model": SyntheticGenerator(error_rate=1.0))
    out = distill_run(distill_cfg(tmp_path, *FORCE, "generation.error_rate=0.0"))
    assert out["dir"] == first["dir"]
    assert out["datasets"]["4"]["correct_candidates"] == 20  # only shard 1's prompts are right now
    rows = pq.read_table(Path(out["dir"]) / "n4/data.parquet").to_pylist()
    assert len(rows) == out["datasets"]["4"]["responses_kept"]
    shard0 = {line.split('"prompt_id": ')[1].split('"')[1] for line in Shard(0, 2).rows_path(run_dir).read_text().splitlines()}
    assert not shard0 & {r["prompt_id"] for r in rows}


def test_the_merge_holds_the_run_lock(tmp_path: Path, monkeypatch) -> None:
    import fcntl

    import pytest

    real_merge, held = stage.merge, []

    def checking_merge(p, *args, **kw):
        fd = os.open(p.detail.sampling_dir / ".merge.lock", os.O_RDWR | os.O_CREAT)
        try:
            with pytest.raises(BlockingIOError):  # another job's merge would have to wait
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held.append(True)
        finally:
            os.close(fd)
        return real_merge(p, *args, **kw)

    monkeypatch.setattr(stage, "merge", checking_merge)
    distill_run(distill_cfg(tmp_path, *FORCE))
    assert held == [True]
