"""A model's identity from what is on disk, not from where it is (issue 7, "Stale results").

`model_identity(model_cfg)` is what a ModelConfig contributes to a run's identity. The location
(`path`) is replaced by:

* a local directory (a user's checkpoint, an SFT/RL output, the built `tiny` model): a content
  fingerprint (`directory_fingerprint`). Moving or copying the directory keeps it; overwriting
  any file with different bytes changes it (within the limits below);
* a hub id: the id plus `model.revision` (None is recorded as ``"main"``). A branch name is only
  as stable as the branch: pin a commit hash for results that must not move.

How a directory is fingerprinted: every regular file below it (hidden entries such as `.git/`,
`.cache/` and `.DS_Store` are skipped: they hold VCS/download bookkeeping, not the model), by its
path relative to the directory, sorted. When all files together are at most `FULL_HASH_BYTES`
(64 MiB) -- the tiny model, a small test checkpoint -- every byte is hashed (sha256). Otherwise
each file of at most `FULL_HASH_BYTES` (config.json, generation_config.json, tokenizer files,
chat templates, remote code, index files) is still hashed in full, and each larger file (weight
shards, optimizer states) contributes its size, the sha256 of its safetensors header (the JSON
that lists every tensor's name, dtype, shape and byte offsets) when it is a safetensors file, and
the sha256 of `SAMPLE_BLOCKS` blocks of `SAMPLE_BYTES` read at evenly spaced offsets across its
data (first and last block included): ~2 MiB read per multi-GB shard, so a 7B checkpoint costs
milliseconds (measure with `tests/perf/bench_fingerprint.py`).

What the sampled fingerprint cannot detect: a change to a large file that keeps its size (and its
safetensors header) and leaves every sampled block as it was -- e.g. one tensor edited in place
between sample points. Any training step, a re-save in another dtype or shape, a different
checkpoint of the same architecture, or a truncated/partial copy changes it. Timestamps and
permissions are not part of it (a `cp -r` or `rsync` copy keeps its identity).

Other fields kept, because they change what the model outputs or what is written: `name` (written
into outputs: eval's summary `model`, distill's `teacher` column; selects `distill.teachers`
settings), `dtype`, `rope_theta_scale`, `max_model_len`, `trust_remote_code` (the code that runs),
the tokenizer (by the same rules when `model.tokenizer` points elsewhere) and, for `tiny`, its
`tiny_*` shape. Dropped: `path` (replaced by content), `revision` of a local directory,
`allow_large_on_cpu` (a permission, not a setting: results do not depend on it) and `role` (a
label no code path reads).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from longcot.models.config import ModelConfig

__all__ = ["FULL_HASH_BYTES", "directory_fingerprint", "file_fingerprint", "model_identity"]

FULL_HASH_BYTES = 64 << 20  # directories (and files) up to this size are hashed in full
SAMPLE_BLOCKS = 32
SAMPLE_BYTES = 64 << 10
_MAX_HEADER = 100 << 20  # a safetensors header longer than this is not a safetensors header
_READ = 1 << 20
FINGERPRINT_VERSION = 1  # bump when the scheme changes (it is part of every fingerprint)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_READ), b""):
            h.update(block)
    return h.hexdigest()


def _safetensors_header(fh: Any, size: int) -> tuple[bytes, int] | None:
    """(header JSON bytes, offset where tensor data starts), or None if not a safetensors file."""
    if size < 8:
        return None
    fh.seek(0)
    (length,) = struct.unpack("<Q", fh.read(8))
    if not 2 <= length <= min(_MAX_HEADER, size - 8):
        return None
    header = fh.read(length)
    if not header.startswith(b"{"):
        return None
    return header, 8 + length


def file_fingerprint(path: Path, full: bool = False) -> dict[str, Any]:
    """Fingerprint of one file: its sha256 when `full` or small, else size + header + sampled blocks."""
    size = path.stat().st_size
    if full or size <= FULL_HASH_BYTES:
        return {"size": size, "sha256": _sha256_file(path)}
    out: dict[str, Any] = {"size": size}
    sampled = hashlib.sha256()
    with path.open("rb") as fh:
        header = _safetensors_header(fh, size) if path.suffix == ".safetensors" else None
        start = 0
        if header is not None:
            out["header_sha256"] = hashlib.sha256(header[0]).hexdigest()
            start = header[1]
        span = max(0, size - start - SAMPLE_BYTES)
        for i in range(SAMPLE_BLOCKS):
            offset = start + span * i // (SAMPLE_BLOCKS - 1)
            fh.seek(offset)
            sampled.update(offset.to_bytes(8, "little") + fh.read(SAMPLE_BYTES))
    out["sampled_sha256"] = sampled.hexdigest()
    out["sampled"] = f"{SAMPLE_BLOCKS}x{SAMPLE_BYTES}"
    return out


def _files(root: Path) -> list[Path]:
    """Regular files below `root` (following no symlinked directories), hidden entries skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            path = Path(dirpath) / name
            if not name.startswith(".") and path.is_file():  # a symlinked file counts by its target
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def directory_fingerprint(root: str | Path) -> dict[str, Any]:
    """Content fingerprint of a model directory (see the module docstring for what it covers)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"model directory not found: {root}")
    files = _files(root)
    if not files:
        raise ValueError(f"model directory {root} holds no files")
    total = sum(p.stat().st_size for p in files)
    full = total <= FULL_HASH_BYTES
    entries = {p.relative_to(root).as_posix(): file_fingerprint(p, full=full) for p in files}
    blob = json.dumps(entries, sort_keys=True, separators=(",", ":")).encode()
    return {
        "content_sha256": hashlib.sha256(blob).hexdigest(),
        "scheme": f"v{FINGERPRINT_VERSION}-{'full' if full else 'sampled'}",
        "files": len(files),
        "bytes": total,
    }


def _location_identity(location: str, revision: str | None) -> dict[str, Any]:
    """A local directory's fingerprint, or a hub id with its revision."""
    from longcot.models.loading import TINY

    if location == TINY:
        raise ValueError("resolve 'tiny' to its built directory first")
    expanded = Path(os.path.expanduser(location))
    if expanded.is_dir():
        return {"local": directory_fingerprint(expanded)}
    if expanded.exists():
        raise ValueError(f"model location {location!r} is a file, not a model directory")
    if location.startswith(("/", "./", "../", "~")):
        raise FileNotFoundError(f"model.path={location!r}: no such local directory (a hub id looks like 'org/name')")
    return {"hub_id": location, "revision": revision or "main"}


def model_identity(model_cfg: "ModelConfig | Any") -> dict[str, Any]:
    """What a model config contributes to a run's identity: content, not location (module doc).

    Builds the `tiny` model first if it is not cached yet (its directory is fingerprinted).
    """
    from longcot.models.loading import TINY

    if is_dataclass(model_cfg):
        fields = asdict(model_cfg)
    else:  # a DictConfig node (cfg.model) or a plain mapping
        from omegaconf import DictConfig, OmegaConf

        is_node = isinstance(model_cfg, DictConfig)
        fields = OmegaConf.to_container(model_cfg, resolve=True) if is_node else dict(model_cfg)
    ident: dict[str, Any] = {
        "name": fields["name"],
        "dtype": fields.get("dtype", "auto"),
        "rope_theta_scale": float(fields.get("rope_theta_scale", 1.0)),
        "max_model_len": fields.get("max_model_len"),
        "trust_remote_code": bool(fields.get("trust_remote_code", False)),
    }
    tiny_dir = None
    if TINY in (fields["path"], fields.get("tokenizer")):
        from longcot.models.tiny import SPEC_FIELDS, ensure_tiny

        tiny_dir = str(ensure_tiny(model_cfg))
        ident["tiny"] = {key: int(fields[field]) for key, field in SPEC_FIELDS.items()}
    path = tiny_dir if fields["path"] == TINY else fields["path"]
    ident["model"] = _location_identity(path, fields.get("revision"))
    tokenizer = fields.get("tokenizer")
    if tokenizer not in (None, "", fields["path"]):
        # A separate tokenizer: `model.revision` is the model's; a tokenizer hub id is at "main".
        ident["tokenizer"] = _location_identity(tiny_dir if tokenizer == TINY else tokenizer, None)
    return ident
