"""Merge finished shards into SFT datasets: one per N, plus token-budget subsets, with manifests.

Layout under a selection directory (``select-<hash of the selection settings>/``)::

    n32/data.parquet  n32/manifest.json  n32/DONE
    n256/budget-250000000/data.parquet  .../manifest.json  .../DONE
    manifest.json  DONE                      # every dataset and budget of this selection

Rows: prompt id, prompt (the user turn), response, teacher, candidate index, reference answer,
correct, finish reason, prompt / response / SFT tokens (the student's tokenizer, plain text), the
extracted answer, and ``actions`` for constructed trajectories. Loadable with ``datasets`` (``Dataset.from_parquet`` or
``load_dataset("parquet"|"json", data_files=...)``). Everything here is deterministic (no
timings), so an interrupted-and-resumed run writes byte-identical files.
"""

from __future__ import annotations

import json
import logging
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from longcot import runs
from longcot.distill.budget import budget_label, parse_budget, rank_key, select_budget
from longcot.distill.sampling import Row, SelectStats, Selection, select_prefix
from longcot.distill.shards import read_rows

log = logging.getLogger(__name__)

COLUMNS = (
    ("prompt_id", "string"),
    ("candidate_index", "int32"),
    ("prompt", "string"),
    ("response", "string"),
    ("teacher", "string"),
    ("answer", "string"),
    ("correct", "bool"),
    ("finish_reason", "string"),
    ("prompt_tokens", "int64"),
    ("response_tokens", "int64"),
    ("sft_tokens", "int64"),
    ("extracted_answer", "string"),
)
EXTRA_COLUMNS = {"actions": "list<string>"}  # constructed trajectories: the action sequence


def schema(extra: Sequence[str] = ()):
    import pyarrow as pa

    types = {"string": pa.string(), "int32": pa.int32(), "int64": pa.int64(), "bool": pa.bool_(),
             "list<string>": pa.list_(pa.string())}
    cols = list(COLUMNS) + [(c, EXTRA_COLUMNS[c]) for c in extra]
    return pa.schema([(name, types[t]) for name, t in cols])


def data_file(fmt: str) -> str:
    if fmt not in ("parquet", "jsonl"):
        raise ValueError(f"distill.format={fmt!r}; valid: parquet, jsonl")
    return f"data.{fmt}"


class _Writer:
    def __init__(self, tmp: Path, fmt: str, extra: Sequence[str]):
        self.tmp, self.fmt, self.schema = tmp, fmt, schema(extra)
        self.names = self.schema.names
        self.rows = 0
        if fmt == "parquet":
            import pyarrow.parquet as pq

            self._pq = pq.ParquetWriter(str(tmp), self.schema, compression="zstd")
        else:
            self._fh = tmp.open("w", encoding="utf-8")

    def write(self, rows: list[Row]) -> None:
        if not rows:
            return
        self.rows += len(rows)
        if self.fmt == "parquet":
            import pyarrow as pa

            self._pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in self.names} for r in rows], schema=self.schema))
        else:
            for r in rows:
                self._fh.write(runs.dumps({k: r.get(k) for k in self.names}, ensure_ascii=False, sort_keys=True) + "\n")

    def close(self) -> None:
        if self.fmt == "parquet":
            self._pq.close()
        else:
            self._fh.close()


@contextmanager
def dataset_writer(path: Path, fmt: str, extra: Sequence[str] = ()) -> Iterator[_Writer]:
    """A writer whose file appears at ``path`` only if the block completes."""
    with runs.atomic_path(path) as tmp:
        writer = _Writer(tmp, fmt, extra)
        try:
            yield writer
        finally:
            writer.close()


def iter_dataset(path: Path, batch_rows: int = 8192) -> Iterator[list[Row]]:
    """Row batches of a dataset file written by :func:`dataset_writer`."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(str(path)).iter_batches(batch_size=batch_rows):
            yield batch.to_pylist()
    else:
        batch: list[Row] = []
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                batch.append(json.loads(line))
                if len(batch) >= batch_rows:
                    yield batch
                    batch = []
        if batch:
            yield batch


def _by_prompt(rows: list[Row]) -> list[list[Row]]:
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(r["prompt_id"], []).append(r)
    return list(groups.values())


def build_datasets(
    out_dir: Path,
    shard_files: Sequence[Path],
    ns: Sequence[int],
    sel: Selection,
    *,
    teacher: str,
    count_tokens: Any,
    fmt: str,
    extra: Sequence[str] = (),
    progress: bool = True,
) -> dict[int, dict[str, Any]]:
    """One dataset per N in ``ns`` from the graded candidates of ``shard_files`` (streamed shard by
    shard); returns each N's manifest. ``count_tokens(texts) -> list[int]`` is the student's."""
    from longcot.progress import bar

    ns = sorted(set(int(n) for n in ns))
    todo = [n for n in ns if not runs.is_done(out_dir / f"n{n}")]
    if not todo:
        return {n: runs.read_json(out_dir / f"n{n}" / "manifest.json") for n in ns}
    n_max = max(todo)
    fname = data_file(fmt)
    totals = {n: {"stats": SelectStats(), "prompts": 0, "prompts_with_correct": 0, "prompts_kept": 0,
                  "prompt_tokens": 0, "response_tokens": 0, "rows": 0} for n in todo}
    with ExitStack() as stack:
        writers = {n: stack.enter_context(dataset_writer(out_dir / f"n{n}" / fname, fmt, extra)) for n in todo}
        for path in bar(shard_files, desc="merge shards", unit="shard", disable=not progress):
            groups = _by_prompt(read_rows(path))
            # Token counts once, for the largest N's selection (every smaller N's rows are among them).
            picked = [select_prefix(g, n_max, sel)[0] for g in groups]
            prompts = [g[0]["prompt"] for g in groups]
            responses = [r["response"] for kept in picked for r in kept]
            p_tok = count_tokens(prompts)
            r_tok = iter(count_tokens(responses))
            tok: dict[tuple[str, int], tuple[int, int]] = {}
            for g, kept, pt in zip(groups, picked, p_tok):
                for r in kept:
                    tok[(r["prompt_id"], r["candidate_index"])] = (pt, next(r_tok))
            for n in todo:
                t = totals[n]
                out: list[Row] = []
                for g in groups:
                    kept, stats = select_prefix(g, n, sel)
                    t["stats"].add(stats)
                    t["prompts"] += 1
                    t["prompts_with_correct"] += stats.correct > 0
                    t["prompts_kept"] += bool(kept)
                    for r in kept:
                        pt, rt = tok[(r["prompt_id"], r["candidate_index"])]
                        out.append({**r, "teacher": teacher, "prompt_tokens": pt, "response_tokens": rt, "sft_tokens": pt + rt})
                        t["prompt_tokens"] += pt
                        t["response_tokens"] += rt
                writers[n].write(out)
                t["rows"] += len(out)
    manifests = {}
    for n in ns:
        d = out_dir / f"n{n}"
        if n not in todo:
            manifests[n] = runs.read_json(d / "manifest.json")
            continue
        t = totals[n]
        s: SelectStats = t["stats"]
        manifests[n] = {
            "teacher": teacher,
            "n": n,
            "file": fname,
            "prompts": t["prompts"],
            "candidates": s.candidates,
            "correct_candidates": s.correct,
            "prompts_with_correct": t["prompts_with_correct"],
            "prompts_kept": t["prompts_kept"],
            "responses_kept": t["rows"],
            "duplicates_removed": s.duplicates_removed,
            "capped": s.capped,
            "truncated_dropped": s.truncated_dropped,
            "prompt_tokens": t["prompt_tokens"],
            "response_tokens": t["response_tokens"],
            "sft_tokens": t["prompt_tokens"] + t["response_tokens"],
            "mean_response_tokens": t["response_tokens"] / t["rows"] if t["rows"] else 0.0,
        }
        runs.write_json(d / "manifest.json", manifests[n])
        runs.mark_done(d)
    return manifests


def build_budgets(
    source_dir: Path, budgets: Sequence[str], *, seed: int, unit: str, fmt: str, extra: Sequence[str] = ()
) -> dict[str, dict[str, Any]]:
    """Nested token-budget subsets of the dataset in ``source_dir`` (see :mod:`longcot.distill.budget`)."""
    if unit not in ("sft", "response"):
        raise ValueError(f"distill.budget_unit={unit!r}; valid: sft, response")
    fname = data_file(fmt)
    parsed = sorted({parse_budget(b) for b in budgets})
    todo = [b for b in parsed if not runs.is_done(source_dir / budget_label(b))]
    out: dict[str, dict[str, Any]] = {}
    if todo:
        keys: list[bytes] = []
        tokens: list[int] = []
        for batch in iter_dataset(source_dir / fname):
            for r in batch:
                keys.append(rank_key(seed, r["prompt_id"], r["candidate_index"]))
                tokens.append(r[f"{unit}_tokens"])
        picks = {b: select_budget(keys, tokens, b) for b in todo}
        for b, pick in picks.items():
            if not pick.reached:
                log.warning("token budget %d not reached: the dataset has %d %s tokens; the budget takes all of it",
                            b, pick.selected_tokens, unit)
        with ExitStack() as stack:
            writers = {b: stack.enter_context(dataset_writer(source_dir / budget_label(b) / fname, fmt, extra)) for b in todo}
            pos = 0
            for batch in iter_dataset(source_dir / fname):
                for b in todo:
                    writers[b].write([r for k, r in enumerate(batch, pos) if k in picks[b].selected])
                pos += len(batch)
        for b, pick in picks.items():
            d = source_dir / budget_label(b)
            runs.write_json(d / "manifest.json", {
                "budget_tokens": b, "unit": unit, "seed": seed, "file": fname, "reached": pick.reached,
                "responses": len(pick.selected), f"{unit}_tokens": pick.selected_tokens,
            })
            runs.mark_done(d)
    for b in parsed:
        out[budget_label(b)] = runs.read_json(source_dir / budget_label(b) / "manifest.json")
    return out
