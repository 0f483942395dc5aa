"""Benchmarks load from the real shared files and normalise to Problems; bad files name file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from longcot.config.loading import load_group_option
from longcot.config.schema import BenchmarkConfig, DataConfig
from longcot.data import load_benchmark, load_prompts
from longcot.data.loading import DataError, read_records
from longcot.data.prompts import chat_prompt
from longcot.data.toy import toy_problems
from tests.conftest import shared_file

EXPECTED = {"math500": (500, "math"), "aime24": (30, "aime"), "theoremqa": (800, "theoremqa"), "mmlu_pro_1k": (1000, "mmlu_pro")}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_benchmark_loads_real_file(name: str) -> None:
    cfg = load_group_option("benchmark", name, BenchmarkConfig)
    shared_file(cfg.shared_file)
    problems = load_benchmark(cfg)
    count, kind = EXPECTED[name]
    assert len(problems) == count and {p.kind for p in problems} == {kind}
    assert len({p.id for p in problems}) == count
    assert all(p.problem and p.answer for p in problems)
    prompt = chat_prompt(problems[0])
    assert prompt[-1]["role"] == "user" and "\\boxed{}" in prompt[-1]["content"]


def test_math500_fields_and_limit() -> None:
    cfg = load_group_option("benchmark", "math500", BenchmarkConfig)
    shared_file(cfg.shared_file)
    cfg.limit = 20
    problems = load_benchmark(cfg)
    assert len(problems) == 20
    first = json.loads(shared_file("math500/test.jsonl").read_text().splitlines()[0])
    assert problems[0].id == first["unique_id"] and problems[0].answer == first["answer"]


def test_aime_keeps_leading_zeros_and_theoremqa_types() -> None:
    aime = load_benchmark(load_group_option("benchmark", "aime24", BenchmarkConfig)) if shared_file("aime24/test.jsonl") else []
    assert all(p.answer.strip().isdigit() for p in aime)
    tqa = load_benchmark(load_group_option("benchmark", "theoremqa", BenchmarkConfig))
    types = {p.meta["answer_type"] for p in tqa}
    assert types == {"bool", "integer", "float", "list of integer", "list of float", "option"}


def test_mmlu_prompt_lists_lettered_options() -> None:
    cfg = load_group_option("benchmark", "mmlu_pro_1k", BenchmarkConfig)
    shared_file(cfg.shared_file)
    p = load_benchmark(cfg)[0]
    text = chat_prompt(p)[-1]["content"]
    for i, opt in enumerate(p.meta["options"]):
        assert f"{'ABCDEFGHIJ'[i]}. {opt}" in text
    assert p.answer in "ABCDEFGHIJ"[: len(p.meta["options"])]


def test_math_train_answers_come_from_last_boxed() -> None:
    cfg = load_group_option("data", "math_train", DataConfig)
    shared_file(cfg.shared_file)
    cfg.limit = 50
    problems = load_prompts(cfg)
    assert len(problems) == 50
    assert all(p.answer and "\\boxed" not in p.answer for p in problems)
    assert problems[0].meta["solution"].rstrip().endswith(("$", ".", "}")) 


def test_toy_is_deterministic_and_correct() -> None:
    a, b = toy_problems(50, seed=3), toy_problems(50, seed=3)
    assert a == b and toy_problems(50, seed=4) != a
    for p in a:
        expr = p.problem.removeprefix("Compute $").removesuffix("$.").replace("\\times", "*")
        assert int(p.answer) == eval(expr)


def test_bad_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bench.jsonl"
    path.write_text('{"problem": "1+1", "answer": "2"}\n{"problem": oops}\n')
    with pytest.raises(DataError, match=r"bench\.jsonl:2: invalid JSON"):
        read_records(path)


def test_local_path_wins_and_missing_field_is_named(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text('{"problem": "What is 1+1?", "answer": "2", "unique_id": "a"}\n')
    cfg = load_group_option("benchmark", "math500", BenchmarkConfig)
    cfg.path = str(path)
    assert [p.id for p in load_benchmark(cfg)] == ["a"]
    path.write_text('{"problem": "What is 1+1?", "answer": "2"}\n\n{"question": "What is 1+1?", "answer": "2"}\n')
    with pytest.raises(DataError, match=r"mine\.jsonl:3: missing field 'problem' \(fields: \['answer', 'question'\]\)"):
        load_benchmark(cfg)


def test_missing_local_path_is_a_clear_error() -> None:
    cfg = load_group_option("benchmark", "aime24", BenchmarkConfig)
    cfg.path = "/nonexistent/aime.jsonl"
    with pytest.raises(DataError, match="benchmark.path: file not found"):
        load_benchmark(cfg)


def test_unknown_group_option_lists_valid() -> None:
    with pytest.raises(ValueError, match="valid: .*math500"):
        load_group_option("benchmark", "gsm8k", BenchmarkConfig)


def test_dataset_id_path_goes_through_datasets(tmp_path: Path) -> None:
    """With no local file, a benchmark loads through ``datasets.load_dataset(dataset_id, split=...)``; a
    dataset folder on disk exercises the same call offline (a hub id needs the network)."""
    rows = [json.loads(line) for line in shared_file("aime24/test.jsonl").read_text().splitlines()[:5]]
    ds_dir = tmp_path / "aime_2024"
    ds_dir.mkdir()
    (ds_dir / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_group_option("benchmark", "aime24", BenchmarkConfig)
    cfg.shared_file = None
    cfg.dataset_id = str(ds_dir)
    problems = load_benchmark(cfg)
    assert [p.answer for p in problems] == [str(r["answer"]) for r in rows]
    cfg.split = "validation"
    with pytest.raises(DataError, match="could not load dataset .*split='validation'"):
        load_benchmark(cfg)


# ------------------------------------------------------------------ data errors: one line, file:line


def _one_line(exc: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(exc.value)
    return str(exc.value)


def test_neither_answer_nor_solution_names_both(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text('{"problem": "1+1?", "answer": "2"}\n{"problem": "2+2?", "final": "4"}\n')
    cfg = load_group_option("benchmark", "math500", BenchmarkConfig)
    cfg.path = str(path)
    with pytest.raises(DataError) as exc:
        load_benchmark(cfg)
    assert _one_line(exc) == f"{path}:2: missing field 'answer' or 'solution' (one is needed; fields: ['final', 'problem'])"
    data = load_group_option("data", "math_train", DataConfig)  # training prompts: same rule, the set field names
    data.path = str(path)
    with pytest.raises(DataError, match=r"mine\.jsonl:2: missing field 'answer' or 'solution'"):
        load_prompts(data)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"problem": "1+1?", "answer": null}\n', r"bad\.jsonl:1: field 'answer' is empty"),
        ('{"problem": "1+1?", "answer": "2"}\n{"problem": "  ", "answer": "3"}\n', r"bad\.jsonl:2: field 'problem' is empty"),
        ('{"problem": "1+1?", "solution": "it is 2"}\n', r"bad\.jsonl:1: no answer field and no \\boxed\{\} in the solution"),
        ("\n\n", r"bad\.jsonl: no records \(the file is empty\)"),
        ('[1, 2]\n', r"bad\.jsonl:1: expected a JSON object, got list"),
    ],
)
def test_bad_records_name_file_line_and_field(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    cfg = load_group_option("benchmark", "math500", BenchmarkConfig)
    cfg.path = str(path)
    with pytest.raises(DataError, match="^" + str(tmp_path).replace(".", r"\.") + "/" + message) as exc:
        load_benchmark(cfg)
    _one_line(exc)


def test_json_and_parquet_errors_name_the_file(tmp_path: Path) -> None:
    bad_json = tmp_path / "list.json"
    bad_json.write_text('[{"problem": "a", "answer": "1"}, "oops"]')
    with pytest.raises(DataError, match=r"list\.json record 1: expected a JSON object, got str"):
        read_records(bad_json)
    bad_parquet = tmp_path / "broken.parquet"
    bad_parquet.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"broken\.parquet: unreadable parquet file \(") as exc:
        read_records(bad_parquet)
    _one_line(exc)


def test_missing_shared_folder_warns_once_and_hub_fallback_fails_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """LONGCOT_SHARED_DATA naming a missing folder: one warning line, once; the dataset-id fallback
    to an id the hub cannot serve (no network here, or no such dataset) is one line at once, not
    half a minute of `datasets` retries."""
    import time

    from longcot.data import loading

    missing = tmp_path / "no-shared-data"
    monkeypatch.setenv("LONGCOT_SHARED_DATA", str(missing))
    monkeypatch.setattr(loading, "_warned_shared", set())
    with caplog.at_level("WARNING", logger="longcot.data.loading"):
        assert loading.shared_data_dir() == missing
        assert loading.shared_data_dir() == missing
    warnings = [r.getMessage() for r in caplog.records if "LONGCOT_SHARED_DATA" in r.getMessage()]
    assert warnings == [f"LONGCOT_SHARED_DATA={missing}: no such folder; benchmarks fall back to their dataset ids"]
    cfg = load_group_option("benchmark", "aime24", BenchmarkConfig)
    cfg.dataset_id = "longcot-tests/no-such-dataset"
    start = time.monotonic()
    with pytest.raises(DataError) as exc:
        load_benchmark(cfg)
    assert time.monotonic() - start < 4.0
    message = _one_line(exc)
    assert message.startswith("could not load dataset 'longcot-tests/no-such-dataset' (config=None, split='train'): ")
    assert "set LONGCOT_SHARED_DATA" in message and "benchmark.path" in message
