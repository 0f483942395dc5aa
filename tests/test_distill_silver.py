"""§5 silver supervision: reference extraction, matching teacher responses, near-duplicate removal."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from omegaconf import OmegaConf

from longcot.generation.config import GenerationConfig
from longcot.data.toy import toy_problems
from longcot.distill.config import SilverConfig
from longcot.distill.silver import extract_references, near_duplicate_ids, toy_web_problems, with_references
from longcot.generation.synthetic import SyntheticGenerator
from longcot.stages import distill as stage
from tests.stage_helpers import distill_run
from tests.test_distill_sampling import distill_cfg

TEMPLATE = SilverConfig().extract_template


def test_toy_web_records_are_noisy_as_configured() -> None:
    web = toy_web_problems(toy_problems(400, seed=2), noise=0.2, missing=0.1, seed=2)
    missing = [p for p in web if "figure" in p.meta["solution"]]
    wrong = [p for p in web if p not in missing and not p.meta["solution"].endswith(f"is {p.meta['true_answer']}.")]
    assert 0.05 < len(missing) / 400 < 0.15 and 0.14 < len(wrong) / 400 < 0.26
    assert all(p.answer == "" for p in web)  # no reference until one is extracted


def test_extraction_on_the_synthetic_backend() -> None:
    web = toy_web_problems(toy_problems(100, seed=4), noise=0.3, missing=0.1, seed=4)
    refs = extract_references(SyntheticGenerator(), web, TEMPLATE, 512, progress=False)
    for p, (ref, raw) in zip(web, refs):
        if "figure" in p.meta["solution"]:
            assert ref is None
        else:
            assert raw.startswith("The final answer is $\\boxed{") and p.meta["solution"].endswith(f"is {ref}.")
    kept = with_references(web, refs)
    assert len(kept) == sum(r is not None for r, _ in refs) and all(p.answer for p in kept)


def test_extraction_on_the_tiny_model_is_greedy_and_safe() -> None:
    from longcot.generation import build_generator
    from longcot.distill.tokens import resolve_model

    gen = build_generator(resolve_model("tiny"), OmegaConf.structured(GenerationConfig(backend="hf", device="cpu")))
    web = toy_web_problems(toy_problems(3, seed=4), noise=0.0, missing=0.0)
    first = extract_references(gen, web, TEMPLATE, 12, progress=False)
    again = extract_references(gen, web, TEMPLATE, 12, progress=False)
    assert first == again and len(first) == 3  # greedy: deterministic; garbage output -> None, not an error
    assert all(ref is None or isinstance(ref, str) for ref, _ in first)


def test_silver_stage_keeps_prompts_whose_responses_match_the_reference(tmp_path: Path) -> None:
    out = distill_run(distill_cfg(tmp_path, "distill.mode=silver", "data.toy_size=120", "distill.n=2",
                                "distill.derive_n=[1]", "distill.silver.toy_noise=0.3", "distill.silver.toy_missing=0.1",
                                "distill.silver.near_dedup=false", "generation.error_rate=0.1"))
    web = {p.id: p for p in toy_web_problems(toy_problems(120, 0, prefix="toy"), 0.3, 0.1, seed=0)}
    n_missing = sum("figure" in p.meta["solution"] for p in web.values())
    assert out["prompts_without_reference"] == n_missing and out["sampling"]["prompts"] == 120 - n_missing
    rows = pq.read_table(Path(out["dir"]) / "n2/data.parquet").to_pylist()
    assert rows and all(r["correct"] for r in rows)
    kept_prompts = {r["prompt_id"] for r in rows}
    # the response matched the extracted reference ...
    assert all(r["extracted_answer"] == r["answer"] for r in rows)
    # ... and that filters out most wrong references: kept prompts almost all have the true answer
    right = sum(rows_ref == web[pid].meta["true_answer"] for pid, rows_ref in {(r["prompt_id"], r["answer"]) for r in rows})
    assert right / len(kept_prompts) > 0.95
    noisy = [pid for pid, p in web.items() if "figure" not in p.meta["solution"] and not p.meta["solution"].endswith(f"is {p.meta['true_answer']}.")]
    assert len(set(noisy) & kept_prompts) <= 0.1 * len(noisy)


def test_near_duplicate_questions_are_removed_before_sampling(tmp_path: Path) -> None:
    base = ("A farmer has a rectangular field with a perimeter of 120 meters. The length is twice the width. "
            "Compute $12 + 3 \\times 4$ as a warm-up.")
    records = [
        {"question": base, "answer": "3 * 4 = 12, 12 + 12 = 24. Hence 24."},
        {"question": base.replace("farmer", "Farmer").replace("  ", " ") + " ", "answer": "So 24."},  # near-duplicate
        {"question": "Compute $7 \\times 8 - 5$, the product first, then subtract five from it.", "answer": "56 - 5 = 51"},
        {"question": "Compute $9 + 10 + 11$ and explain each partial sum in a sentence or two.", "answer": "9 + 10 + 11 = 30"},
    ]
    assert near_duplicate_ids([r["question"] for r in records], threshold=0.8, num_perm=128, shingle_size=5) == [1]
    data = tmp_path / "web.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = distill_run(distill_cfg(tmp_path, "distill.mode=silver", "data.kind=webinstruct", f"data.path={data}",
                                "data.name=web", "data.problem_field=question", "data.solution_field=answer",
                                "data.id_field=null", "distill.n=2", "distill.derive_n=[]", "distill.silver.near_dedup=true",
                                "generation.error_rate=0.0"))
    assert out["near_duplicates_removed"] == 1 and out["sampling"]["prompts"] == 3
    rows = pq.read_table(Path(out["dir"]) / "n2/data.parquet").to_pylist()
    assert sorted({(r["prompt_id"], r["answer"]) for r in rows}) == [("0", "24"), ("2", "51"), ("3", "30")]
    cache = json.loads((Path(out["dir"]).parent / "near_duplicates.json").read_text())
    assert cache == {"removed_ids": ["1"]}


def test_silver_demo_runs_without_datasketch(tmp_path: Path, monkeypatch) -> None:
    """The README's silver demo works after a plain `pip install -e .` (no `silver` extra)."""
    import sys

    import pytest

    monkeypatch.setitem(sys.modules, "datasketch", None)  # import datasketch -> ImportError
    out = distill_run(distill_cfg(tmp_path, "distill.mode=silver", "distill.n=2", "distill.derive_n=[1]", "data.toy_size=30"))
    assert out["datasets"]["2"]["prompts"] > 0
    with pytest.raises(ImportError, match=r"pip install 'longcot\[silver\]'"):
        distill_run(distill_cfg(tmp_path, "distill.mode=silver", "distill.n=2", "distill.derive_n=[]", "data.toy_size=30",
                              "distill.silver.near_dedup=true"))
