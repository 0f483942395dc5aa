"""SFT data: distill output files, user files with prompt/response or chat messages, clear errors,
over-long samples, the deterministic step plan (global batch in sequences, remainder step)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from longcot.models.config import ModelConfig
from longcot.data.loading import DataError
from longcot.distill.dataset import dataset_writer
from longcot.models.loading import load_tokenizer
from longcot.sft.config import SFTConfig
from longcot.sft.data import IGNORE, SFTExample, fit_length, load_examples, tokenize_example, tokenize_examples
from longcot.sft.recipe import step_plan

TINY = OmegaConf.structured(ModelConfig(name="tiny", path="tiny"))


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(TINY)


def _row(i: int) -> dict:
    return {"prompt_id": f"p{i}", "candidate_index": 0, "prompt": f"Compute ${i} + 1$.", "response": f"$\\boxed{{{i + 1}}}$",
            "teacher": "synthetic", "answer": str(i + 1), "correct": True, "finish_reason": "stop", "prompt_tokens": 5,
            "response_tokens": 5, "sft_tokens": 10, "extracted_answer": str(i + 1)}


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_distill_output_file(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"data.{fmt}"
    with dataset_writer(path, fmt) as w:
        w.write([_row(i) for i in range(3)])
    ex = load_examples(str(path))
    assert ex[1] == SFTExample(({"role": "user", "content": "Compute $1 + 1$."},), "$\\boxed{2}$")


def test_user_file_with_messages_and_system_prompt(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    rows = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                          {"role": "assistant", "content": "4"}]},
            {"question": "3+3?", "answer": "6"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = SFTConfig(prompt_field="question", response_field="answer", system_prompt="Think.")
    ex = load_examples(str(path), cfg)
    assert ex[0].messages[0] == {"role": "system", "content": "Be brief."} and ex[0].response == "4"
    assert ex[1].messages == ({"role": "system", "content": "Think."}, {"role": "user", "content": "3+3?"})


def test_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "x"}) + "\n")
    with pytest.raises(DataError, match="needs fields 'prompt' \\+ 'response' or 'messages'; has \\['text'\\]"):
        load_examples(str(bad))
    no_asst = tmp_path / "m.jsonl"
    no_asst.write_text(json.dumps({"messages": [{"role": "user", "content": "x"}]}) + "\n")
    with pytest.raises(DataError, match="must end with an assistant turn"):
        load_examples(str(no_asst))
    with pytest.raises(DataError, match="file not found"):
        load_examples(str(tmp_path / "missing.parquet"))


def test_overlong_drop_and_truncate(tok) -> None:
    t = tokenize_example(tok, SFTExample(({"role": "user", "content": "hi"},), "word " * 50))
    n = t.prompt_tokens + 10
    assert fit_length(t, n, "drop") is None
    cut = fit_length(t, n, "truncate")
    assert cut.input_ids == t.input_ids[:n] and cut.targets[:-1] == t.targets[:n - 1] and cut.targets[-1] == IGNORE
    kept, counts = tokenize_examples(tok, [SFTExample(({"role": "user", "content": "hi"},), "ok")] * 2 +
                                     [SFTExample(({"role": "user", "content": "hi"},), "word " * 50)], max_length=n)
    assert counts == {"examples": 3, "kept": 2, "dropped": 1, "truncated": 0}
    with pytest.raises(ValueError, match="every example is longer"):
        tokenize_examples(tok, [SFTExample(({"role": "user", "content": "hi"},), "word " * 50)], max_length=n)


def test_step_plan_global_batch_and_remainder() -> None:
    plan = step_plan(10, 4, 2, seed=3)
    assert [(e, len(idx)) for e, idx in plan] == [(0, 4), (0, 4), (0, 2), (1, 4), (1, 4), (1, 2)]
    for epoch in (0, 1):
        assert sorted(i for e, idx in plan if e == epoch for i in idx) == list(range(10))  # each example once per epoch
    assert plan == step_plan(10, 4, 2, seed=3)  # deterministic
    assert [idx for e, idx in plan if e == 0] != [idx for e, idx in plan if e == 1]  # reshuffled per epoch


def test_config_validation_messages() -> None:
    with pytest.raises(ValueError, match="sft.max_tokens_per_micro_batch=100 must be >= sft.max_length=200"):
        SFTConfig(max_length=200, max_tokens_per_micro_batch=100).validate()
    with pytest.raises(ValueError, match="sft.attn_implementation='flash'; valid: auto, sdpa_varlen, sdpa, eager, flash_attention_2"):
        SFTConfig(attn_implementation="flash").validate()
    SFTConfig().validate()  # the defaults are valid
