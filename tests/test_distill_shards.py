"""Shards: independent, resumable; a killed shard leaves nothing finished; resume is byte-identical."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from longcot.distill.shards import EXIT_AFTER_ROWS_ENV, EXIT_CODE, Shard
from longcot.stages import distill as stage
from tests.test_distill_sampling import distill_cfg

REPO = Path(__file__).resolve().parents[1]
COMMON = ["data.toy_size=30", "distill.num_shards=3", "distill.n=8", "distill.derive_n=[2,4]", "distill.token_budgets=[3K,6K]"]
# Outputs with timings (not part of the deterministic result).
TIMED = ("stats.json", ".done.json")


def _cli(root: Path, *overrides: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "longcot", "+experiment=demo_cpu_distill", f"output_root={root}",
           "distill.print_table=false", *COMMON, *overrides]
    return subprocess.run(cmd, cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300)


def _files(root: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted((root / "distill").rglob("*")):
        if p.is_file() and not p.name.endswith(TIMED):
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def test_killed_shard_resumes_to_byte_identical_output(tmp_path: Path) -> None:
    ref_root, root = tmp_path / "uninterrupted", tmp_path / "interrupted"
    stage.run(distill_cfg(ref_root, *COMMON))
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

    stage.run(distill_cfg(root, *COMMON))  # resume
    assert s0.done_path(run_dir).read_bytes() == marker0  # the finished shard was not redone
    assert not list(shards.glob(".*.tmp"))  # the killed attempt's leftovers are gone
    assert _files(root) == reference  # byte-identical to the uninterrupted run


def test_one_shard_per_job_then_merge(tmp_path: Path) -> None:
    out = stage.run(distill_cfg(tmp_path, "data.toy_size=10", "distill.num_shards=2", "distill.shard=1"))
    assert out["pending_shards"] == [0]
    run_dir = Path(out["dir"])
    assert not (run_dir / "DONE").exists() and Shard(1, 2).is_done(run_dir)
    out = stage.run(distill_cfg(tmp_path, "data.toy_size=10", "distill.num_shards=2", "distill.shard=0"))
    assert Path(out["dir"]).parent == run_dir and (run_dir / "DONE").is_file()
    assert out["datasets"]["16"]["prompts"] == 10


def test_parallel_local_workers_match_sequential(tmp_path: Path) -> None:
    args = ["data.toy_size=12", "distill.num_shards=2", "distill.n=4", "distill.derive_n=[]"]
    seq = stage.run(distill_cfg(tmp_path / "seq", *args))
    par = stage.run(distill_cfg(tmp_path / "par", *args, "distill.workers=2"))
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
        stage.run(distill_cfg(tmp_path, "distill.num_shards=3", "distill.shard=5"))
