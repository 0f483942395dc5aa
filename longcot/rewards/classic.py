"""The classic reward (§4.1): ``correct_reward`` (1) if correct, ``wrong_reward`` (0) otherwise.

As in the official ``ClassicSparseReward``, a response over budget gets ``exceed`` instead (the §4.1
scripts pass ``--math_rule_common_exceed_length 0``); ``exceed=None`` disables the rule (the
official default). Over budget means ``truncated or gen_len >= max_len - margin``; when
``gen_len``/``max_len`` are not given only ``truncated`` decides. ``no_answer`` (Table 4's direct RL:
+1 correct, -0.5 wrong, -1 no answer) is the reward of a response within budget with no extractable
answer (``answered`` False: :func:`longcot.grading.extract_answer` finds neither a ``\\boxed{}`` nor
an answer phrase); None grades it as wrong.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from longcot.rewards.common import DEFAULT_MARGIN, exceeds_length, exceeds_length_batch


def classic_reward(
    correct: bool,
    gen_len: Optional[int] = None,
    max_len: Optional[int] = None,
    truncated: bool = False,
    *,
    correct_reward: float = 1.0,
    wrong_reward: float = 0.0,
    exceed: Optional[float] = 0.0,
    margin: int = DEFAULT_MARGIN,
) -> float:
    """The classic reward of one response.

    >>> classic_reward(True), classic_reward(False), classic_reward(True, truncated=True)
    (1.0, 0.0, 0.0)
    >>> classic_reward(True, 14330, 14336)  # within the 16-token margin
    0.0
    """
    if (gen_len is None) != (max_len is None):
        raise ValueError("give both gen_len and max_len, or neither")
    if exceed is not None:
        over = bool(truncated) if gen_len is None else exceeds_length(gen_len, max_len, truncated, margin)
        if over:
            return float(exceed)
    return float(correct_reward if correct else wrong_reward)


def classic_reward_batch(
    correct,
    gen_len=None,
    max_len=None,
    truncated=None,
    *,
    correct_reward: float = 1.0,
    wrong_reward: float = 0.0,
    exceed: Optional[float] = 0.0,
    margin: int = DEFAULT_MARGIN,
    no_answer: Optional[float] = None,
    answered=None,
) -> np.ndarray:
    """Vectorised :func:`classic_reward` over broadcastable arrays; returns float64. With ``no_answer``,
    ``answered`` (whether each response has an extractable answer) is required."""
    if (gen_len is None) != (max_len is None):
        raise ValueError("give both gen_len and max_len, or neither")
    correct = np.asarray(correct, dtype=bool)
    value = np.where(correct, float(correct_reward), float(wrong_reward))
    if no_answer is not None:
        if answered is None:
            raise ValueError("no_answer needs answered (whether each response has an extractable answer)")
        value = np.where(np.asarray(answered, dtype=bool), value, float(no_answer))
    if exceed is None:
        return value
    if gen_len is None:
        over = np.zeros(correct.shape, dtype=bool) if truncated is None else np.asarray(truncated, dtype=bool)
    else:
        over = exceeds_length_batch(gen_len, max_len, truncated, margin)
    return np.where(over, float(exceed), value).astype(np.float64, copy=False)
