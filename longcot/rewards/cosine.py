"""The cosine length-scaled reward of §4.2 (paper App. C.1).

``CosFn(t, T, a, b) = b + 0.5 (a - b) (1 + cos(pi t / T))`` goes from ``a`` at ``t = 0`` to ``b`` at
``t = T``, where ``t`` is the response length in tokens and ``T`` the *generation* limit (not prompt
plus generation). Correct responses get ``CosFn(t, T, r0_correct, rL_correct)`` (default 2 -> 1:
shorter correct answers are worth more), wrong ones ``CosFn(t, T, r0_wrong, rL_wrong)`` (default
-10 -> 0: a longer wrong attempt is penalised less, which encourages thinking longer when unsure).

A response over budget gets ``exceed`` (r_e = -10) whatever its correctness; over budget means
``truncated or t >= T - margin`` (see :mod:`longcot.rewards.common`; margin 16 as in the official code).

Mapping to the official command-line flags (``--math_rule_cosine_scale_*``), read off the §4.2/§4.3
scripts: ``r0_correct = max_value_correct``, ``rL_correct = min_value_correct``,
``r0_wrong = min_value_wrong``, ``rL_wrong = max_value_wrong``, ``exceed = --math_rule_common_exceed_length``.
E.g. the §4.3 "reward A" script passes ``min_value_correct 10, max_value_correct 0``, i.e.
``(r0_correct, rL_correct) = (0, 10)``.
"""

from __future__ import annotations

import math

import numpy as np

from longcot.rewards.common import DEFAULT_MARGIN, check_lengths, exceeds_length_batch


def cos_fn(t, T, a, b):
    """``b + 0.5 (a - b) (1 + cos(pi t / T))``: ``a`` at ``t = 0``, ``b`` at ``t = T`` (scalars or arrays)."""
    if isinstance(t, (int, float)) and isinstance(T, (int, float)):
        return b + 0.5 * (a - b) * (1.0 + math.cos(math.pi * t / T))
    t = np.asarray(t, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    return b + 0.5 * (np.asarray(a, dtype=np.float64) - b) * (1.0 + np.cos(np.pi * t / T))


def cosine_scaled_reward(
    correct: bool,
    gen_len: int,
    max_len: int,
    truncated: bool = False,
    *,
    r0_correct: float = 2.0,
    rL_correct: float = 1.0,
    r0_wrong: float = -10.0,
    rL_wrong: float = 0.0,
    exceed: float = -10.0,
    margin: int = DEFAULT_MARGIN,
) -> float:
    """The cosine reward of one response of ``gen_len`` tokens under generation limit ``max_len``.

    >>> cosine_scaled_reward(True, 7168, 14336), cosine_scaled_reward(False, 7168, 14336)
    (1.5, -5.0)
    >>> cosine_scaled_reward(True, 14336 - 16, 14336)  # within the margin of the limit
    -10.0
    """
    check_lengths(gen_len, max_len, margin)
    if truncated or gen_len + margin >= max_len:
        return float(exceed)
    if correct:
        return float(cos_fn(gen_len, max_len, r0_correct, rL_correct))
    return float(cos_fn(gen_len, max_len, r0_wrong, rL_wrong))


def cosine_scaled_reward_batch(
    correct,
    gen_len,
    max_len,
    truncated=None,
    *,
    r0_correct: float = 2.0,
    rL_correct: float = 1.0,
    r0_wrong: float = -10.0,
    rL_wrong: float = 0.0,
    exceed: float = -10.0,
    margin: int = DEFAULT_MARGIN,
) -> np.ndarray:
    """Vectorised :func:`cosine_scaled_reward` over broadcastable arrays; returns float64.

    ``truncated=None`` means no response is truncated. Agrees with the scalar function to within
    1e-12 (``np.cos`` and ``math.cos`` may differ in the last bit).
    """
    correct = np.asarray(correct, dtype=bool)
    over = exceeds_length_batch(gen_len, max_len, truncated, margin)
    a = np.where(correct, float(r0_correct), float(r0_wrong))
    b = np.where(correct, float(rL_correct), float(rL_wrong))
    # Exceeded entries may have t > T; their cosine value is discarded below.
    value = cos_fn(np.asarray(gen_len), np.asarray(max_len), a, b)
    return np.where(over, float(exceed), value).astype(np.float64, copy=False)
