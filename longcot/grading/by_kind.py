"""Grade responses to :class:`~longcot.data.records.Problem` s, dispatching on the benchmark kind."""

from __future__ import annotations

from typing import Sequence

from longcot.data.records import Problem

GRADED_KINDS = ("math", "toy", "aime", "theoremqa", "mmlu_pro")


def grade_batch(
    problems: Sequence[Problem], responses: Sequence[str], *, timeout: float = 5.0, workers: int | None = None
) -> list[bool]:
    """Verdicts for ``responses[i]`` against ``problems[i]``; math-like kinds go through the pooled grader."""
    from longcot.grading import grade_aime, grade_mmlu_pro, grade_theoremqa, math_equal_batch

    if len(problems) != len(responses):
        raise ValueError(f"{len(problems)} problems but {len(responses)} responses")
    verdicts: list[bool | None] = [None] * len(problems)
    pooled: list[int] = []
    for i, (p, r) in enumerate(zip(problems, responses)):
        if p.kind in ("math", "toy"):
            pooled.append(i)
        elif p.kind == "aime":
            verdicts[i] = grade_aime(p.answer, r)
        elif p.kind == "theoremqa":
            verdicts[i] = grade_theoremqa(p.answer, p.meta["answer_type"], r)
        elif p.kind == "mmlu_pro":
            verdicts[i] = grade_mmlu_pro(p.answer, r)
        else:
            raise ValueError(f"problem {p.id}: unknown kind {p.kind!r}; valid: {', '.join(GRADED_KINDS)}")
    if pooled:
        results = math_equal_batch([(problems[i].answer, responses[i]) for i in pooled], timeout=timeout, workers=workers)
        for i, ok in zip(pooled, results):
            verdicts[i] = ok
    return [bool(v) for v in verdicts]
