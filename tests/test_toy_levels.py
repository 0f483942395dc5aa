"""The toy task's levels: ``easy`` (three digits added) is what a tiny model can learn in a CPU demo."""

from __future__ import annotations

import pytest

from longcot.data.toy import toy_problems
from longcot.generation.base import SamplingParams
from longcot.generation.synthetic import SyntheticGenerator
from longcot.grading import extract_answer


def test_easy_level_is_three_digits_added_and_deterministic() -> None:
    probs = toy_problems(300, 5, level="easy")
    assert probs == toy_problems(300, 5, level="easy")
    for p in probs:
        digits = [int(x) for x in p.problem.removeprefix("Compute $").removesuffix("$.").split(" + ")]
        assert len(digits) == 3 and all(1 <= d <= 9 for d in digits) and int(p.answer) == sum(digits)
    assert toy_problems(5, 5) != toy_problems(5, 5, level="easy")  # the default stays the standard task
    with pytest.raises(ValueError, match="toy level 'hard'; valid: standard, easy"):
        toy_problems(1, 0, level="hard")


@pytest.mark.parametrize("style", ["long", "short"])
def test_the_synthetic_teacher_solves_the_easy_level(style: str) -> None:
    probs = toy_problems(20, 1, level="easy")
    gen = SyntheticGenerator(style=style, error_rate=0.0)
    prompts = [[{"role": "user", "content": p.problem}] for p in probs]
    outs = gen.generate(prompts, SamplingParams(n=1, max_new_tokens=4096), progress=False)
    assert [extract_answer(o[0].text) for o in outs] == [p.answer for p in probs]
