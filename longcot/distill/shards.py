"""Shards: the prompt set splits into contiguous blocks that run as independent, resumable jobs.

A shard writes ``shards/shard-IIIII-of-CCCCC.jsonl`` (every graded candidate of its prompts,
streamed to a temporary file and renamed when complete), then ``shard-...done.json`` (its
counts and timings) last: that marker is what "finished" means. A killed shard leaves at most a
hidden ``.shard-....tmp`` file (removed when the shard is re-run), never a marker, so a re-run redoes
exactly the unfinished shards. Shards run one after another in-process, as parallel local
processes (``distill.workers``), or as separate jobs (``distill.shard=K``; e.g. a Hydra multirun
``-m distill.shard=0,1,2,3``, a SLURM array with ``cluster=slurm``).

The marker records the SHA-256 of the shard's rows file, so a merge knows exactly which samples
it was built from (:func:`samples_fingerprint`), and, for ``force=true``, the force run's token.
Merges of a run directory are serialized by :func:`merge_lock`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

from longcot import runs
from longcot.data.records import Problem
from longcot.distill.sampling import Row

log = logging.getLogger(__name__)

# Test hook: a shard process exits abruptly (os._exit) right after writing this many rows.
EXIT_AFTER_ROWS_ENV = "LONGCOT_DISTILL_EXIT_AFTER_ROWS"
EXIT_CODE = 17


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"distill.num_shards must be >= 1, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"distill.shard={self.index} is out of range for distill.num_shards={self.count} (valid: 0..{self.count - 1})")

    @property
    def name(self) -> str:
        return f"shard-{self.index:05d}-of-{self.count:05d}"

    def rows_path(self, run_dir: Path) -> Path:
        return run_dir / "shards" / f"{self.name}.jsonl"

    def done_path(self, run_dir: Path) -> Path:
        return run_dir / "shards" / f"{self.name}.done.json"

    def is_done(self, run_dir: Path) -> bool:
        return self.done_path(run_dir).is_file() and self.rows_path(run_dir).is_file()

    def select(self, items: Sequence[Any]) -> list[Any]:
        """This shard's contiguous block of ``items`` (sizes differ by at most one)."""
        n = len(items)
        return list(items[self.index * n // self.count : (self.index + 1) * n // self.count])


def all_shards(count: int) -> list[Shard]:
    return [Shard(i, count) for i in range(count)]


def pending(run_dir: Path, count: int) -> list[Shard]:
    return [s for s in all_shards(count) if not s.is_done(run_dir)]


class CandidateSource(Protocol):
    """Produces candidate rows for a shard (one per mode: sample, constructed, silver)."""

    def prepare(self, problems: list[Problem]) -> tuple[list[Problem], dict[str, Any]]:
        """The problems to sample (e.g. with extracted references) and counts for the shard marker."""
        ...

    def produce(self, problems: list[Problem]) -> list[Row]:
        """Ungraded candidate rows, ordered by problem then candidate index."""
        ...


def _exit_after() -> int | None:
    value = os.environ.get(EXIT_AFTER_ROWS_ENV)
    return int(value) if value else None


def _remove_stale(shard: Shard, run_dir: Path) -> None:
    """Temporary files a killed earlier attempt of this shard left behind."""
    for stale in (run_dir / "shards").glob(f".{shard.name}.*.tmp"):
        stale.unlink(missing_ok=True)


def run_shard(
    run_dir: Path,
    shard: Shard,
    problems: list[Problem],
    source: CandidateSource,
    grade: Callable[[list[Problem], list[Row]], None],
    *,
    chunk_prompts: int,
    progress: bool = True,
    marker_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Sample, grade and write one shard of ``problems``; returns (and writes last) its marker
    (counts, timings, ``rows_sha256`` and ``marker_extra``)."""
    from longcot.progress import bar

    if chunk_prompts < 1:
        raise ValueError(f"distill.chunk_prompts must be >= 1, got {chunk_prompts}")
    (run_dir / "shards").mkdir(parents=True, exist_ok=True)
    _remove_stale(shard, run_dir)
    t0 = time.perf_counter()
    todo, info = source.prepare(problems)
    gen_s = grade_s = 0.0
    written = 0
    digest = hashlib.sha256()
    exit_after = _exit_after()
    with runs.atomic_path(shard.rows_path(run_dir)) as tmp, tmp.open("w", encoding="utf-8") as fh:
        chunks = [todo[i : i + chunk_prompts] for i in range(0, len(todo), chunk_prompts)]
        for chunk in bar(chunks, desc=shard.name, unit="chunk", disable=not progress or len(chunks) < 2):
            t1 = time.perf_counter()
            rows = source.produce(chunk)
            t2 = time.perf_counter()
            grade(chunk, rows)
            t3 = time.perf_counter()
            gen_s, grade_s = gen_s + t2 - t1, grade_s + t3 - t2
            for row in rows:
                line = runs.dumps(row, ensure_ascii=False, sort_keys=True) + "\n"
                fh.write(line)
                digest.update(line.encode("utf-8"))
                written += 1
                if exit_after is not None and written >= exit_after:
                    fh.flush()
                    os._exit(EXIT_CODE)  # simulate a killed job: no cleanup, no marker
    wall = time.perf_counter() - t0
    marker = {
        "shard": shard.index,
        "num_shards": shard.count,
        "prompts_loaded": len(problems),
        "prompts_sampled": len(todo),
        "candidates": written,
        "generation_seconds": gen_s,
        "grading_seconds": grade_s,
        "wall_seconds": wall,
        "candidates_per_second": written / wall if wall > 0 else None,
        "rows_sha256": digest.hexdigest(),
        **info,
        **(marker_extra or {}),
    }
    runs.write_json(shard.done_path(run_dir), marker)
    return marker


def read_marker(run_dir: Path, shard: Shard) -> dict[str, Any]:
    return runs.read_json(shard.done_path(run_dir))


def samples_fingerprint(markers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What a merge is built from: each shard's rows hash (deterministic; no timings)."""
    return {"num_shards": len(markers),
            "rows_sha256": [m.get("rows_sha256") for m in sorted(markers, key=lambda m: m["shard"])]}


@contextmanager
def merge_lock(run_dir: Path) -> Iterator[None]:
    """Exclusive lock of a run directory's merge (``.merge.lock``, ``flock``: released if the holder dies).

    Blocks while another job holds it: at most one merge (or force invalidation) runs at a time.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / ".merge.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read_rows(path: Path) -> list[Row]:
    """Rows of a finished shard file (a bad line names the file and line)."""
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: corrupt shard row ({exc.msg}); delete the shard's files to redo it") from None
    return rows


def run_in_processes(fn: Callable[[Any, int], Any], payload: Any, indices: Sequence[int], workers: int) -> None:
    """``fn(payload, i)`` for each shard index in ``workers`` spawned local processes."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from longcot.progress import bar

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(fn, payload, i): i for i in indices}
        for fut in bar(as_completed(futures), total=len(futures), desc="shards", unit="shard"):
            try:
                fut.result()
            except Exception as exc:
                raise RuntimeError(f"distill shard {futures[fut]} failed: {exc}") from exc
