"""SFT token accounting with the student's tokenizer; datasets load with ``datasets``; manifest counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from longcot.models.tiny import ensure_tiny
from longcot.stages import distill as stage
from tests.stage_helpers import distill_run
from tests.test_distill_sampling import distill_cfg


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_tokens_match_the_student_tokenizer_and_datasets_loads(tmp_path: Path, fmt: str) -> None:
    import datasets

    out = distill_run(distill_cfg(tmp_path, "data.toy_size=25", "distill.n=6", "distill.derive_n=[3]",
                                f"distill.format={fmt}", "generation.error_rate=0.5", "generation.style=short"))
    tok = AutoTokenizer.from_pretrained(str(ensure_tiny()))  # loaded independently of the stage
    count = lambda text: len(tok(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    for n in ("3", "6"):
        man = out["datasets"][n]
        path = Path(out["dir"]) / man["path"]
        ds = datasets.load_dataset(fmt if fmt == "parquet" else "json", data_files=str(path), split="train",
                                   cache_dir=str(tmp_path / "hf"))
        rows = ds.to_list()
        assert len(rows) == man["responses_kept"] > 0
        assert {"prompt_id", "prompt", "response", "teacher", "candidate_index", "correct", "response_tokens"} <= set(ds.column_names)
        for r in rows:
            assert r["correct"] and r["teacher"] == "synthetic-long"
            assert r["response_tokens"] == count(r["response"]) and r["prompt_tokens"] == count(r["prompt"])
            assert r["sft_tokens"] == r["prompt_tokens"] + r["response_tokens"]
        assert man["response_tokens"] == sum(count(r["response"]) for r in rows)
        assert man["sft_tokens"] == sum(count(r["prompt"]) + count(r["response"]) for r in rows)
        assert man["prompts_kept"] == len({r["prompt_id"] for r in rows})
        # short answers at t=1: duplicates exist and were removed, each prompt's responses are unique
        assert len({(r["prompt_id"], r["response"]) for r in rows}) == len(rows)
    assert out["datasets"]["6"]["duplicates_removed"] > 0
    manifest = json.loads((Path(out["dir"]) / "manifest.json").read_text())
    assert manifest["datasets"]["6"]["sft_tokens"] == out["datasets"]["6"]["sft_tokens"]


def test_unknown_student_lists_the_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"distill.student='no-such-model': not a conf/model option \(.*tiny"):
        distill_run(distill_cfg(tmp_path, "data.toy_size=3", "distill.student=no-such-model"))
