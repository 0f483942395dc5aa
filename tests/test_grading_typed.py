"""Typed graders on real TheoremQA / MMLU-Pro / AIME rows, plus wrong-answer and tolerance cases.

Data: `<shared>/data/{theoremqa/test.json, mmlu_pro_1k/test.jsonl, aime24/test.jsonl}`
(`$LONGCOT_SHARED_DATA` or `../shared/data` next to the repository root).
"""

from __future__ import annotations

import json

import pytest

from longcot.data import shared_data_dir

from longcot.grading import THEOREMQA_ANSWER_TYPES, grade_aime, grade_mmlu_pro, grade_theoremqa


def _load(relative: str) -> list[dict]:
    path = shared_data_dir() / relative
    if not path.is_file():
        pytest.skip(f"{relative} not found at {path} (set LONGCOT_SHARED_DATA to the shared data folder)")
    with path.open(encoding="utf-8") as f:
        return json.load(f) if path.suffix == ".json" else [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def theoremqa() -> list[dict]:
    return _load("theoremqa/test.json")


@pytest.fixture(scope="module")
def mmlu_pro() -> list[dict]:
    return _load("mmlu_pro_1k/test.jsonl")


@pytest.fixture(scope="module")
def aime() -> list[dict]:
    return _load("aime24/test.jsonl")


# ------------------------------------------------------------------------------ TheoremQA


def test_theoremqa_boxed_gold_is_correct(theoremqa: list[dict]) -> None:
    assert {r["Answer_type"] for r in theoremqa} == set(THEOREMQA_ANSWER_TYPES)
    wrong = [r["id"] for r in theoremqa if not grade_theoremqa(r["Answer"], r["Answer_type"], f"\\boxed{{{r['Answer']}}}")]
    assert not wrong
    phrased = [
        r["id"] for r in theoremqa if not grade_theoremqa(r["Answer"], r["Answer_type"], f"Thus the answer is {r['Answer']}.")
    ]
    assert not phrased


def _perturbed(answer: object, answer_type: str) -> object:
    """A wrong answer of the same type."""
    if answer_type == "bool":
        return not answer
    if answer_type == "option":
        return "(a)" if answer != "(a)" else "(b)"
    if answer_type == "integer":
        return answer + 1  # type: ignore[operator]
    if answer_type == "float":
        return answer * 1.05 if answer else 0.5  # type: ignore[operator]
    if answer_type == "list of integer":
        return [x + 1 for x in answer]  # type: ignore[attr-defined]
    return [x * 1.1 + 1 for x in answer]  # type: ignore[attr-defined]


def test_theoremqa_wrong_answers_are_rejected(theoremqa: list[dict]) -> None:
    accepted = [
        r["id"]
        for r in theoremqa
        if grade_theoremqa(r["Answer"], r["Answer_type"], f"\\boxed{{{_perturbed(r['Answer'], r['Answer_type'])}}}")
    ]
    assert not accepted


def test_theoremqa_float_tolerance_is_four_percent_relative(theoremqa: list[dict]) -> None:
    floats = [r["Answer"] for r in theoremqa if r["Answer_type"] == "float" and r["Answer"] != 0]
    assert all(grade_theoremqa(g, "float", f"\\boxed{{{g * 1.035!r}}}") for g in floats)
    assert all(grade_theoremqa(g, "float", f"\\boxed{{{g * 0.965!r}}}") for g in floats)
    assert not any(grade_theoremqa(g, "float", f"\\boxed{{{g * 1.045!r}}}") for g in floats)
    assert grade_theoremqa(100.0, "float", r"\boxed{101}", rel_tol=0.01) is True
    assert grade_theoremqa(100.0, "float", r"\boxed{101.5}", rel_tol=0.01) is False
    assert grade_theoremqa(0.0, "float", r"\boxed{0.001}") is False  # gt == 0: exact, as the official scorer


@pytest.mark.parametrize(
    ("gold", "answer_type", "response", "expected"),
    [
        (3.5e-08, "float", r"The answer is $3.5 \times 10^{-8}$ m.", True),
        (3.5e-08, "float", r"\boxed{3.5 \cdot 10^{-8}\,\text{m}}", True),
        (1898.27, "float", r"\boxed{1,898.27}", True),
        (0.25, "float", r"\boxed{\frac{1}{4}}", True),
        (0.75, "float", r"\boxed{3/4}", True),
        (1.047, "float", r"\boxed{\frac{\pi}{3}}", False),  # expressions are not evaluated
        (1.0, "float", r"\boxed{x = 1.0}", True),  # after '=' only the last part counts
        (104761.48, "float", r"\boxed{\$104,761}", True),
        (11760, "integer", r"\boxed{11,760}", True),
        (11760, "integer", r"\boxed{11760.0}", True),
        (11760, "integer", r"\boxed{11\,760}", True),
        (11760, "integer", r"\boxed{11{,}760}", True),
        (5, "integer", r"\boxed{4.6}", False),  # integers are exact (official scorer rounds)
        (-36, "integer", r"\boxed{-36}", True),
        (-36, "integer", r"\boxed{36}", False),
        (True, "bool", r"\boxed{\text{True}}", True),
        (True, "bool", r"\boxed{yes}", True),
        (False, "bool", "The answer is No.", True),
        (False, "bool", r"\boxed{True}", False),
        (True, "bool", r"\boxed{maybe}", False),
        ("(c)", "option", r"\boxed{(c)}", True),
        ("(c)", "option", r"\boxed{C}", True),
        ("(c)", "option", r"\boxed{\text{(c)}}", True),
        ("(c)", "option", r"\boxed{(d)}", False),
        ([0, 5], "list of integer", r"\boxed{[0, 5]}", True),
        ([0, 5], "list of integer", r"\boxed{(5, 0)}", True),  # sorted, as the official scorer
        ([0, 5], "list of integer", r"\boxed{[0, 5, 5]}", False),
        ([0, 5], "list of integer", r"\boxed{[0, 6]}", False),
        ([0.333, 0.25], "list of float", r"\boxed{\left[\frac{1}{3}, \frac{1}{4}\right]}", True),
        ([0.333, 0.25], "list of float", r"\boxed{[0.333, 0.3]}", False),
        (3.0, "float", "I could not solve it.", False),
        (3.0, "float", None, False),
    ],
)
def test_theoremqa_cases(gold: object, answer_type: str, response: str, expected: bool) -> None:
    assert grade_theoremqa(gold, answer_type, response) is expected


def test_theoremqa_unknown_type_names_valid_ones() -> None:
    with pytest.raises(ValueError, match="list of float.*option|option.*list of float"):
        grade_theoremqa(1, "number", r"\boxed{1}")


# ------------------------------------------------------------------------------ MMLU-Pro


def test_mmlu_pro_boxed_gold_is_correct(mmlu_pro: list[dict]) -> None:
    assert all(grade_mmlu_pro(r["answer"], f"so the answer is \\boxed{{{r['answer']}}}.") for r in mmlu_pro)
    wrong = "ABCDEFGHIJ"
    assert not any(grade_mmlu_pro(r["answer"], f"\\boxed{{{wrong[(wrong.index(r['answer']) + 1) % 10]}}}") for r in mmlu_pro)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (r"\boxed{C}", True),
        (r"\boxed{(C)}", True),
        (r"\boxed{\text{C}}", True),
        (r"\boxed{\textbf{(C)}}", True),
        (r"\boxed{C) 0.0035 ft}", True),
        (r"\boxed{c}", True),
        ("The answer is (C).", True),
        ("the answer is C", True),
        ("Answer: C", True),
        ("C", True),
        ("(C)", True),
        ("The answer is (B). Wait, no: the answer is (C).", True),  # the last statement wins
        (r"The answer is (C) but \boxed{D}", False),  # a box beats phrases
        (r"\boxed{D}", False),
        ("The answer is Because of friction", False),  # not the letter B
        ("I think it is probably C or D", False),  # no anchor: no guess
        (r"\boxed{0.0035}", False),
        ("", False),
        (None, False),
    ],
)
def test_mmlu_pro_cases(response: str, expected: bool) -> None:
    assert grade_mmlu_pro("C", response) is expected


@pytest.mark.parametrize("bad", ["K", "CD", "", 3])
def test_mmlu_pro_rejects_bad_gold(bad: object) -> None:
    with pytest.raises(ValueError, match="A-J"):
        grade_mmlu_pro(bad, r"\boxed{C}")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ AIME


def test_aime_boxed_gold_is_correct(aime: list[dict]) -> None:
    assert any(r["answer"].startswith("0") for r in aime)  # leading zeros are present in the data
    assert all(grade_aime(r["answer"], f"\\boxed{{{r['answer']}}}") for r in aime)
    assert all(grade_aime(r["answer"], f"\\boxed{{{int(r['answer'])}}}") for r in aime)
    assert not any(grade_aime(r["answer"], f"\\boxed{{{int(r['answer']) + 1}}}") for r in aime)


@pytest.mark.parametrize(
    ("gold", "response", "expected"),
    [
        ("033", r"\boxed{33}", True),
        ("033", r"\boxed{033}", True),
        (33, r"\boxed{033}", True),
        ("033", "**Final Answer:** 33", True),
        ("033", r"$\boxed{33.0}$", True),
        ("033", r"\boxed{\text{33}}", True),
        ("033", "33", True),
        ("033", r"\boxed{33.5}", False),
        ("033", r"\boxed{\frac{66}{2}}", False),  # integers only
        ("033", r"\boxed{330}", False),
        ("033", "no idea", False),
        ("0", r"\boxed{000}", True),
    ],
)
def test_aime_cases(gold: object, response: str, expected: bool) -> None:
    assert grade_aime(gold, response) is expected


@pytest.mark.parametrize("bad", ["abc", "3.5", None, True])
def test_aime_rejects_bad_gold(bad: object) -> None:
    with pytest.raises(ValueError, match="AIME gold"):
        grade_aime(bad, r"\boxed{1}")
