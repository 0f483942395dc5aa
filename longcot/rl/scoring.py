"""Sampled responses -> the per-channel token rewards of one RL step (the reward part of the loop).

As the official experience maker (eddycmu/demystify-long-cot @ e90cf9b,
``openrlhf/trainer/ppo_utils/experience_maker.py``: ``_generate_vllm`` then ``make_experience``), the
rewards are computed from the response *after* its last token was made EOS
(:func:`longcot.rl.experience.last_token_eos`, ``algorithm.truncated_eos=official``): the dense
repetition penalty reads those token ids (a looping, truncated response gets 0 on its last token, not
the penalty), and the grader reads their decoded text (the replaced token is a special token, so a
truncated response loses its last token). The response length, hence the cosine/classic reward and
the exceed rule, is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from longcot.rewards.channels import ScoredSample, compute_channel_rewards
from longcot.rl.experience import last_token_eos


@dataclass(frozen=True)
class StepRewards:
    """One step's scored responses: what was graded, the verdicts and every channel's token rewards."""

    samples: list[ScoredSample]
    correct: list[bool]
    channels: dict[str, list[np.ndarray]]


def score_responses(
    reward_cfg: Any,
    completions: Sequence[Any],
    grade: Callable[[Sequence[str]], Sequence[bool]],
    *,
    eos_id: int,
    max_len: int,
    truncated_eos: str,
    decode: Callable[[Sequence[int]], str],
) -> StepRewards:
    """Rewards of ``completions`` (:class:`longcot.generation.base.Completion`) under ``reward_cfg``.

    ``grade(texts)``: the correctness verdicts (rule grader or verifier); ``decode(ids)``: the
    generator's decoding (``skip_special_tokens=True``), used only for responses whose last token
    changed; ``max_len``: the generation limit (the cosine reward's ``T``).
    """
    ids: list[tuple[int, ...]] = []
    texts: list[str] = []
    for c in completions:
        seen = last_token_eos(c.token_ids, c.truncated, eos_id, truncated_eos, for_reward=True)
        ids.append(seen)
        texts.append(c.text if seen == tuple(c.token_ids) else decode(list(seen)))
    correct = [bool(x) for x in grade(texts)]
    if len(correct) != len(completions):
        raise RuntimeError(f"grader returned {len(correct)} verdicts for {len(completions)} responses")
    samples = [ScoredSample(i, ok, max_len, bool(c.truncated), t)
               for i, ok, c, t in zip(ids, correct, completions, texts)]
    return StepRewards(samples, correct, compute_channel_rewards(reward_cfg, samples))


__all__ = ["StepRewards", "score_responses"]
