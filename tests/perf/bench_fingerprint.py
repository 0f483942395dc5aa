"""Cost of a model directory's content fingerprint on a multi-GB checkpoint (a script, not a test).

    PYTHONPATH=. python tests/perf/bench_fingerprint.py [--gb 4] [--shards 2] [--dir /tmp]

Writes a checkpoint-like directory (config.json, tokenizer files, `--shards` safetensors shards of
real, non-sparse data totalling `--gb` GB with valid headers, an index) under a temporary folder
in `--dir`, then times (a) `directory_fingerprint` (sampled: size + header + 32 x 64 KiB per shard)
and (b) the baseline, a full sha256 of every byte of the same files, each with the files evicted
from the page cache first (`posix_fadvise(DONTNEED)` on our own files: a cold read, as after a
copy) and again warm. Prints seconds and the ratio (b)/(a), and deletes the directory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import struct
import tempfile
import time
from pathlib import Path

from longcot.models.fingerprint import _files, directory_fingerprint

CHUNK = 64 << 20


def write_checkpoint(root: Path, total_bytes: int, shards: int) -> None:
    (root / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 4096}))
    (root / "generation_config.json").write_text(json.dumps({"temperature": 0.7}))
    (root / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {f"t{i}": i for i in range(150_000)}}}))
    (root / "tokenizer_config.json").write_text("{}")
    per_shard = total_bytes // shards
    weight_map = {}
    block = os.urandom(CHUNK)  # real bytes (not a sparse hole); varied per chunk below
    for s in range(shards):
        name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        n = per_shard // 2  # bf16 elements
        header = json.dumps({f"layer{s}.weight": {"dtype": "BF16", "shape": [n], "data_offsets": [0, 2 * n]}}).encode()
        header += b" " * (-len(header) % 8)
        with (root / name).open("wb") as fh:
            fh.write(struct.pack("<Q", len(header)) + header)
            left, k = 2 * n, 0
            while left > 0:
                piece = block[: min(CHUNK, left)]
                fh.write(k.to_bytes(8, "little") + piece[8:])  # each chunk differs
                left -= len(piece)
                k += 1
        weight_map[f"layer{s}.weight"] = name
    (root / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


def evict(root: Path) -> None:
    for path in _files(root):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def full_hash(root: Path) -> str:
    h = hashlib.sha256()
    for path in _files(root):
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def timed(fn, root: Path) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(root)
    return time.perf_counter() - start, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=4.0, help="total weight bytes, in GB (default %(default)s)")
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where to write (default %(default)s)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-fingerprint-", dir=args.dir))
    try:
        t0 = time.perf_counter()
        write_checkpoint(root, int(args.gb * 1e9), args.shards)
        for path in _files(root):  # on disk, so that eviction really drops the pages
            fd = os.open(path, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        total = sum(p.stat().st_size for p in _files(root))
        print(f"wrote {total / 1e9:.2f} GB in {len(_files(root))} files ({args.shards} shards) in {time.perf_counter() - t0:.1f}s")
        evict(root)
        cold_fp, fp = timed(directory_fingerprint, root)
        warm_fp, fp2 = timed(directory_fingerprint, root)
        assert fp == fp2
        evict(root)
        cold_full, _ = timed(full_hash, root)
        warm_full, _ = timed(full_hash, root)
        print(f"fingerprint ({fp['scheme']}): cold {cold_fp * 1e3:.1f} ms, warm {warm_fp * 1e3:.1f} ms")
        print(f"baseline full sha256:        cold {cold_full:.2f} s, warm {warm_full:.2f} s")
        print(f"ratio full/fingerprint: cold {cold_full / cold_fp:.0f}x, warm {warm_full / warm_fp:.0f}x")
        load = os.getloadavg()[0]
        print(f"1-minute load average at the end: {load:.2f} (other processes skew wall-clock numbers)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
        print(f"removed {root}")


if __name__ == "__main__":
    main()
