"""Run identity and atomic outputs (after Dora): a run's id is a hash of the config that defines it.

A finished run directory holds a ``DONE`` marker written last; re-launching an identical config
finds it and skips the work. Files are written to a temporary name and renamed, so a killed run
never leaves a file that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from omegaconf import DictConfig, OmegaConf

DONE = "DONE"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's 0600 would hide outputs from collaborators


def config_hash(node: Any, length: int = 12) -> str:
    """Stable hash of a config node (resolved, keys sorted)."""
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    blob = json.dumps(node, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (data files are part of a run's identity, not their location)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def identity(cfg: DictConfig, keys: list[str], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The part of ``cfg`` that defines a unit of work: the given top-level keys plus ``extra``."""
    ident = {k: OmegaConf.to_container(cfg[k], resolve=True) if isinstance(cfg[k], DictConfig) else cfg[k] for k in keys}
    ident.update(extra or {})
    return ident


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def strict(obj: Any) -> Any:
    """``obj`` with every NaN / infinity replaced by None, so it serialises as strict JSON (null)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    return obj


def dumps(obj: Any, **kw: Any) -> str:
    """Strict JSON (no NaN/Infinity: they become null), as every JSON file the project writes."""
    return json.dumps(strict(obj), allow_nan=False, default=str, **kw)


def write_json(path: Path, obj: Any) -> None:
    write_text(path, dumps(obj, indent=2, sort_keys=True) + "\n")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(dumps(row, ensure_ascii=False, sort_keys=True) + "\n")


def is_done(run_dir: Path) -> bool:
    return (run_dir / DONE).is_file()


def mark_done(run_dir: Path) -> None:
    """Written last: its presence means every other output of the run is complete."""
    write_text(run_dir / DONE, "")


def read_jsonl(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
