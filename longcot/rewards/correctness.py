"""Where a reward's correctness verdicts come from: ``rule`` (the rule-based grader,
``longcot.grading.math_equal_batch``) or ``model`` (the LLM judge of :mod:`longcot.rewards.verifier`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Sequence

from longcot.rewards.config import to_reward_config
from longcot.rewards.verifier import Judgement, judge_batch

if TYPE_CHECKING:  # pragma: no cover
    from longcot.generation.base import Generator


@dataclass(frozen=True)
class CorrectnessResult:
    """Verdicts of one batch; ``judgements`` holds the judge's raw verdicts (``correctness: model`` only)."""

    correct: list[bool]
    judgements: Optional[list[Judgement]] = None


def score_correctness(
    cfg: Any,
    references: Sequence[str],
    responses: Sequence[str],
    *,
    problems: Optional[Sequence[Optional[str]]] = None,
    judge: Optional["Generator"] = None,
    timeout: float = 5.0,
    workers: Optional[int] = None,
    progress: bool = False,
) -> CorrectnessResult:
    """Whether ``responses[i]`` answers correctly given ``references[i]``, by the config's source.

    ``rule``: ``math_equal_batch([(reference, response), ...], timeout=..., workers=...)``.
    ``model``: one batched :func:`~longcot.rewards.verifier.judge_batch` call on ``judge`` (the
    generator built from ``cfg.verifier.model``); only a ``correct`` verdict counts as correct.
    """
    cfg = to_reward_config(cfg)
    if len(references) != len(responses):
        raise ValueError(f"{len(references)} references but {len(responses)} responses")
    if cfg.correctness == "rule":
        from longcot.grading import math_equal_batch  # lazy: the grader is a separate subpackage

        pairs = list(zip(references, responses))
        verdicts = math_equal_batch(pairs, timeout=timeout, workers=workers) if pairs else []
        return CorrectnessResult(correct=[bool(v) for v in verdicts])
    if judge is None:
        raise ValueError(
            f"reward {cfg.name!r} takes correctness from the model-based verifier "
            f"({cfg.verifier.model!r}); pass judge=<its Generator>"
        )
    v = cfg.verifier
    judgements = judge_batch(
        judge, problems, references, responses,
        last_lines=v.last_lines, max_new_tokens=v.max_new_tokens, temperature=v.temperature,
        style=v.prompt, progress=progress,
    )
    return CorrectnessResult(correct=[j == "correct" for j in judgements], judgements=judgements)
