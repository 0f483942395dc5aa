"""The synthetic teacher backend: seeded per sample, solves the toy task, honours max_new_tokens."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from longcot.generation.config import GenerationConfig
from longcot.models.config import ModelConfig
from longcot.data.prompts import chat_prompt
from longcot.data.toy import toy_problems
from longcot.generation import build_generator
from longcot.generation.base import SamplingParams, prompt_seed
from longcot.generation.synthetic import (
    SyntheticGenerator,
    evaluate,
    parse_expression,
    tokenize,
    write_action,
    write_extraction,
)
from longcot.grading import extract_answer

PROBLEMS = toy_problems(60, seed=3)
PROMPTS = [chat_prompt(p) for p in PROBLEMS]
SEEDS = [prompt_seed(0, p.id) for p in PROBLEMS]


def _gen(style: str = "long", error_rate: float = 0.2) -> SyntheticGenerator:
    cfg = OmegaConf.structured(GenerationConfig(backend="synthetic", style=style, error_rate=error_rate))
    gen = build_generator(OmegaConf.structured(ModelConfig(name="t", path="tiny")), cfg)
    assert isinstance(gen, SyntheticGenerator)
    return gen


def _texts(out):
    return [[c.text for c in row] for row in out]


def test_registered_backend_and_bad_style() -> None:
    assert _gen().style == "long"
    with pytest.raises(ValueError, match="generation.style='medium'; valid: long, short"):
        SyntheticGenerator(style="medium")
    with pytest.raises(ValueError, match="error_rate"):
        SyntheticGenerator(error_rate=1.5)


def test_samples_depend_only_on_prompt_seed_and_index() -> None:
    gen = _gen()
    params = SamplingParams(temperature=1.0, n=8)
    full = gen.generate(PROMPTS[:10], params, seeds=SEEDS[:10], progress=False)
    first = gen.generate(PROMPTS[:10], SamplingParams(temperature=1.0, n=4), seeds=SEEDS[:10], progress=False)
    rest = gen.generate(PROMPTS[:10], SamplingParams(temperature=1.0, n=4), seeds=SEEDS[:10], first_sample=4, progress=False)
    assert _texts(first) == [row[:4] for row in _texts(full)]
    assert _texts(rest) == [row[4:] for row in _texts(full)]
    assert [c.sample_index for c in rest[0]] == [4, 5, 6, 7]
    # another batch composition and order: same samples per prompt
    order = list(reversed(range(10)))
    shuffled = gen.generate([PROMPTS[i] for i in order], params, seeds=[SEEDS[i] for i in order], progress=False)
    assert _texts(shuffled) == [_texts(full)[i] for i in order]
    # and samples do differ across indices (it is sampling, not a constant)
    assert all(len(set(row)) > 1 for row in _texts(full))


def test_answers_are_right_unless_an_error_is_drawn() -> None:
    params = SamplingParams(temperature=1.0, n=4)
    for style in ("long", "short"):
        perfect = _gen(style, 0.0).generate(PROMPTS, params, seeds=SEEDS, progress=False)
        assert all(extract_answer(c.text) == p.answer for p, row in zip(PROBLEMS, perfect) for c in row)
        broken = _gen(style, 1.0).generate(PROMPTS, params, seeds=SEEDS, progress=False)
        assert all(extract_answer(c.text) != p.answer for p, row in zip(PROBLEMS, broken) for c in row)
    noisy = _gen("long", 0.3).generate(PROMPTS, SamplingParams(temperature=1.0, n=32), seeds=SEEDS, progress=False)
    wrong = sum(extract_answer(c.text) != p.answer for p, row in zip(PROBLEMS, noisy) for c in row) / (60 * 32)
    assert 0.25 < wrong < 0.35


def test_long_style_reflects_and_short_style_does_not() -> None:
    params = SamplingParams(temperature=1.0, n=4)
    long_ = [c for row in _gen("long").generate(PROMPTS, params, seeds=SEEDS, progress=False) for c in row]
    short = [c for row in _gen("short").generate(PROMPTS, params, seeds=SEEDS, progress=False) for c in row]
    assert all("wait" in c.text.lower() for c in long_)
    assert not any("wait" in c.text.lower() for c in short)
    assert sum(c.num_tokens for c in long_) > 3 * sum(c.num_tokens for c in short)


def test_max_new_tokens_truncates_with_finish_reason_length() -> None:
    gen = _gen()
    full = gen.generate(PROMPTS[:5], SamplingParams(temperature=1.0, n=3), seeds=SEEDS[:5], progress=False)
    cut = gen.generate(PROMPTS[:5], SamplingParams(temperature=1.0, n=3, max_new_tokens=25), seeds=SEEDS[:5], progress=False)
    for frow, crow in zip(full, cut):
        for f, c in zip(frow, crow):
            assert f.finish_reason == "stop" and f.num_tokens == gen.count_tokens([f.text])[0] > 25
            assert c.finish_reason == "length" and c.num_tokens == 25 == gen.count_tokens([c.text])[0]
            assert f.text.startswith(c.text) and c.token_ids == f.token_ids[:25]


def test_temperature_zero_is_greedy() -> None:
    out = _gen().generate(PROMPTS[:5], SamplingParams(temperature=0.0, n=4), seeds=SEEDS[:5], progress=False)
    assert all(len(set(row)) == 1 for row in _texts(out))


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_tokenizer_round_trips(text: str) -> None:
    assert "".join(tokenize(text)) == text


def test_action_protocol() -> None:
    expr = parse_expression("7 + 3 \\times 4")
    assert evaluate(expr) == 19
    rng = random.Random(0)
    step = write_action("solution_step", expr, "(nothing yet)", rng, error_rate=1.0)  # forced slip
    assert "the expression becomes $7 + 12$" not in step and "3 \\times 4 =" in step
    fixed = write_action("reflection", expr, step, rng, error_rate=0.0)
    assert fixed.startswith(("Wait", "Hold on", "Hmm")) and "the expression becomes $7 + 12$" in fixed
    assert write_action("answer", expr, step + "\n\n" + fixed, rng, 0.0) == "The final answer is $\\boxed{19}$."
    assert write_action("answer", expr, step, rng, 0.0) != "The final answer is $\\boxed{19}$."
    with pytest.raises(ValueError, match="unknown action"):
        write_action("dance", expr, "", rng, 0.0)


def test_extraction_prompt() -> None:
    text = "Extract the final answer.\n\nQuestion: Compute $1+2$.\n\nSolution: 1 + 2 = 3, hence 3."
    assert write_extraction(text) == "The final answer is $\\boxed{3}$."
    assert extract_answer(write_extraction("Extract the final answer. Solution: see the figure")) is None
