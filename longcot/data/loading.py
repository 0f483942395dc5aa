"""Load benchmarks and prompt sets from a local file, the shared data folder, or a public dataset id.

Resolution order for a config: ``path`` (a local .jsonl/.json/.parquet file, must exist) →
``shared_file`` under the shared data folder (``$LONGCOT_SHARED_DATA`` or ``../shared/data`` beside
the repository) → ``dataset_id`` through ``datasets.load_dataset``. Every record is normalised to
:class:`~longcot.data.records.Problem`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Optional

from omegaconf import DictConfig, OmegaConf

from longcot.data.records import Problem
from longcot.data.toy import toy_problems

log = logging.getLogger(__name__)

KINDS = ("math", "aime", "theoremqa", "mmlu_pro", "toy")
LINE = "__line__"  # JSONL rows carry their line number so errors can point at it
MMLU_LETTERS = "ABCDEFGHIJ"


class DataError(ValueError):
    """A data file or record that cannot be used; the message names the file, line and field."""


_warned_shared: set[str] = set()


def shared_data_dir() -> Path:
    """The shared data folder: ``$LONGCOT_SHARED_DATA`` or ``<repo>/../shared/data``.

    ``LONGCOT_SHARED_DATA`` naming a folder that does not exist is warned about once per process
    (benchmarks then fall back to their dataset ids, which need the hub or its cache).
    """
    env = os.environ.get("LONGCOT_SHARED_DATA")
    if env:
        if env not in _warned_shared and not Path(env).is_dir():
            _warned_shared.add(env)
            log.warning("LONGCOT_SHARED_DATA=%s: no such folder; benchmarks fall back to their dataset ids", env)
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of a .jsonl, .json (a list) or .parquet file; a bad JSONL line names file and line."""
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = []
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line.rstrip("\r\n"))  # a newline left in puts an end-of-line error at 2:1
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
                row[LINE] = lineno
                rows.append(row)
        if not rows:
            raise DataError(f"{path}: no records (the file is empty)")
        return rows
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        if isinstance(data, dict) and "data" in data:
            data = data["data"]
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of records")
        for i, row in enumerate(data):
            if not isinstance(row, dict):
                raise DataError(f"{path} record {i}: expected a JSON object, got {type(row).__name__}")
        if not data:
            raise DataError(f"{path}: no records (the list is empty)")
        return data
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as exc:  # not a parquet file, truncated, ...
            raise DataError(f"{path}: unreadable parquet file ({_first_line(exc)})") from None
        if not rows:
            raise DataError(f"{path}: no records (the table is empty)")
        return rows
    raise DataError(f"{path}: unsupported file type {suffix!r}; use .jsonl, .json or .parquet")


def _hub_records(dataset_id: str, config: str | None, split: str, what: str = "benchmark") -> list[dict[str, Any]]:
    """Rows of a dataset id through ``datasets``. A hub id is first checked with one short request
    (unless ``HF_HUB_OFFLINE`` is set, when ``datasets`` reads its cache), so an unreachable hub is
    one clear error at once instead of ``datasets``' half a minute of retries."""
    import datasets

    where = f"dataset {dataset_id!r} (config={config!r}, split={split!r})"
    if not os.path.exists(dataset_id):
        from huggingface_hub import constants

        from longcot.models.loading import probe_hub

        reason = None if constants.HF_HUB_OFFLINE else probe_hub(dataset_id, repo_type="dataset")
        if reason is not None:
            raise DataError(
                f"could not load {where}: {reason}; set LONGCOT_SHARED_DATA to the shared data folder, "
                f"{what}.path to a local file, or HF_HUB_OFFLINE=1 to read the datasets cache"
            )
    try:
        ds = datasets.load_dataset(dataset_id, config, split=split)
    except Exception as exc:  # network, unknown id or split: say which
        raise DataError(f"could not load {where}: {_first_line(exc)}") from exc
    return [dict(row) for row in ds]


def resolve_source(path: str | None, shared_file: str | None, dataset_id: str | None, what: str) -> tuple[str, str]:
    """Return ``("file", path)`` or ``("hub", dataset_id)`` following the documented order."""
    if path:
        p = Path(os.path.expanduser(path))
        if not p.is_file():
            raise DataError(f"{what}.path: file not found: {p}")
        return "file", str(p)
    if shared_file:
        p = shared_data_dir() / shared_file
        if p.is_file():
            return "file", str(p)
    if dataset_id:
        return "hub", dataset_id
    tried = f"shared file {shared_data_dir() / shared_file}" if shared_file else "no shared file"
    raise DataError(f"{what}: no data source: set {what}.path or {what}.dataset_id ({tried} not found)")


def _fields_of(row: dict[str, Any]) -> list[str]:
    return sorted(k for k in row if k != LINE)


def _field(row: dict[str, Any], name: str, where: str) -> Any:
    """A required field's value; missing or empty (null, blank) is an error naming it."""
    if name not in row:
        raise DataError(f"{where}: missing field {name!r} (fields: {_fields_of(row)})")
    value = row[name]
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(f"{where}: field {name!r} is empty")
    return value


def normalise(rows: Iterable[dict[str, Any]], kind: str, source: str, fields: dict[str, str | None]) -> list[Problem]:
    """Map raw rows of a benchmark ``kind`` to Problems; ``fields`` overrides default field names."""
    if kind not in KINDS:
        raise DataError(f"unknown benchmark kind {kind!r}; valid: {', '.join(KINDS)}")
    out = []
    for i, row in enumerate(rows):
        where = f"{source}:{row[LINE]}" if LINE in row else f"{source} record {i}"
        meta: dict[str, Any] = {}
        if kind in ("math", "aime", "toy"):
            problem = _field(row, fields.get("problem") or "problem", where)
            answer_field = fields.get("answer") or ("answer" if "answer" in row else None)
            solution_field = fields.get("solution") or "solution"
            if answer_field:
                answer = str(_field(row, answer_field, where))
            elif solution_field not in row:
                raise DataError(
                    f"{where}: missing field 'answer' or {solution_field!r} (one is needed; fields: {_fields_of(row)})"
                )
            else:
                from longcot.grading import extract_answer

                solution = _field(row, solution_field, where)
                answer = extract_answer(solution)
                if answer is None:
                    raise DataError(f"{where}: no answer field and no \\boxed{{}} in the solution")
            for key in ("solution", "subject", "level", "type", "url"):
                if key in row:
                    meta[key] = row[key]
            rid = row.get(fields.get("id") or "unique_id", row.get("id", i))
        elif kind == "theoremqa":
            problem = _field(row, "Question", where)
            answer = str(_field(row, "Answer", where))
            meta["answer_type"] = _field(row, "Answer_type", where)
            meta["picture"] = row.get("Picture") not in (None, "None", "")
            rid = row.get("id", i)
        else:  # mmlu_pro
            question = _field(row, "question", where)
            options = list(_field(row, "options", where))
            if not 1 <= len(options) <= len(MMLU_LETTERS):
                raise DataError(f"{where}: expected 1..10 options, got {len(options)}")
            answer = str(_field(row, "answer", where)).strip()
            if answer not in MMLU_LETTERS[: len(options)]:
                raise DataError(f"{where}: answer {answer!r} is not one of the option letters")
            problem = question
            meta["options"] = options
            meta["category"] = row.get("category")
            rid = row.get("question_id", i)
        out.append(Problem(id=str(rid), problem=str(problem), answer=answer, kind=kind, meta=meta))
    ids = [p.id for p in out]
    if len(set(ids)) != len(ids):
        # Fall back to positional ids rather than silently merging samples of different problems.
        out = [Problem(id=f"{i}", problem=p.problem, answer=p.answer, kind=p.kind, meta=p.meta) for i, p in enumerate(out)]
    return out


def mmlu_pro_1k_subset(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The paper's MMLU-Pro-1k: group by ``src``, sample frac=1/12 (random_state=0), then n=1000 (random_state=0)."""
    import pandas as pd

    df = pd.DataFrame(rows)
    sub = df.groupby("src", group_keys=False).apply(lambda g: g.sample(frac=1 / 12, random_state=0))
    sub = sub.sample(n=1000, random_state=0)
    return sub.to_dict("records")


LOCATION_FIELDS = ("path", "shared_file", "dataset_id", "dataset_config", "split")


def data_identity(cfg: Any, what: str) -> dict[str, Any]:
    """What a benchmark/data config contributes to a run's identity: its settings without where the
    data lives, plus what was actually read (a file's content digest, or a dataset id with its
    config and split; the toy task is defined by its own fields). Moving a file keeps the identity;
    editing it changes it."""
    settings = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(vars(cfg))
    for field in LOCATION_FIELDS:
        settings.pop(field, None)
    if settings.get("levels", "absent") is None:  # unset: the identities of runs from before the key
        settings.pop("levels")
    if cfg.kind == "toy":
        return {"settings": settings, "source": "toy"}
    from longcot.runs import file_digest

    source, where = resolve_source(cfg.path, cfg.shared_file, cfg.dataset_id, what)
    if source == "file":
        return {"settings": settings, "source": {"file_sha256": file_digest(where)}}
    return {"settings": settings, "source": {"dataset_id": where, "config": cfg.dataset_config, "split": cfg.split}}


def load_benchmark(cfg: Any) -> list[Problem]:
    """Problems of a benchmark config (``BenchmarkConfig``), in file order, first ``limit``."""
    if cfg.kind == "toy":
        problems = toy_problems(cfg.toy_size, cfg.toy_seed, prefix=cfg.name, level=cfg.toy_level, split="eval",
                                split_seed=cfg.toy_split_seed)
    else:
        source, where = resolve_source(cfg.path, cfg.shared_file, cfg.dataset_id, "benchmark")
        if source == "file":
            rows = read_records(Path(where))
        else:
            rows = _hub_records(where, cfg.dataset_config, cfg.split, "benchmark")
            if cfg.name == "mmlu_pro_1k":
                rows = mmlu_pro_1k_subset(rows)
        problems = normalise(rows, cfg.kind, where, {})
    return problems[: cfg.limit] if cfg.limit else problems


def load_prompts(cfg: Any) -> list[Problem]:
    """Training prompts of a data config (``DataConfig``) with reference answers."""
    if cfg.kind == "toy":
        problems = toy_problems(cfg.toy_size, cfg.toy_seed, prefix=cfg.name, level=cfg.toy_level, split="train",
                                split_seed=cfg.toy_split_seed)
    else:
        source, where = resolve_source(cfg.path, cfg.shared_file, cfg.dataset_id, "data")
        rows = read_records(Path(where)) if source == "file" else _hub_records(where, cfg.dataset_config, cfg.split, "data")
        if getattr(cfg, "levels", None):  # MATH difficulty levels ("level": "Level k"); records without one are dropped
            keep = {f"Level {int(k)}" for k in cfg.levels}
            rows = [r for r in rows if str(r.get("level")) in keep]
            if not rows:
                raise DataError(f"data.levels={list(cfg.levels)}: no record of {where} has one of these levels")
        fields = {"problem": cfg.problem_field, "answer": cfg.answer_field, "solution": cfg.solution_field, "id": cfg.id_field}
        problems = normalise(rows, "math" if cfg.kind == "math" else cfg.kind, where, fields)
    return problems[: cfg.limit] if cfg.limit else problems


def train_overlap(problems: list[Problem], data_cfg: Any) -> Optional[dict[str, Any]]:
    """How many of the benchmark's ``problems`` (by text) are training prompts of ``data_cfg`` (the
    composed ``data`` group: in a study, the prompts its SFT/RL stages train on). Computed for the toy
    task only (generated, cheap to load; the twin's must be 0); None for file or hub data."""
    if data_cfg is None or data_cfg.kind != "toy":
        return None
    train = {p.problem for p in load_prompts(data_cfg)}
    return {"data": data_cfg.name, "toy_level": data_cfg.toy_level, "problems": sum(p.problem in train for p in problems)}
