"""DAPO's soft overlong punishment (Yu et al. 2025, arXiv 2503.14476, §3.4, Eq. 13).

With ``L_max`` the generation limit (``T``, as the cosine reward's) and ``L_cache`` the punishment
interval, a response of ``|y|`` tokens gets

    R_length(y) = 0                               if |y| <= L_max - L_cache
                = ((L_max - L_cache) - |y|) / L_cache   if L_max - L_cache < |y| <= L_max
                = -1                              if L_max < |y|

times ``factor``, added to the correctness reward (verl @ b178a3c
``verl/workers/reward_manager/dapo.py``: ``exceed_len = valid_response_length - expected_len``,
``overlong_reward = min(-exceed_len / overlong_buffer_len * overlong_penalty_factor, 0)``, on the
last response token). ``|y|`` counts the EOS token, as verl's ``valid_response_length``. Here it is its
own sparse reward channel ``overlong`` (:func:`longcot.rewards.channels.reward_channels`), discounted
with the correctness channel's gamma, so the sum of returns is DAPO's summed reward.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def overlong_penalty(length: int, max_len: int, cache: int, factor: float = 1.0) -> float:
    """``R_length`` of one response (see the module doc)."""
    if cache < 1 or cache >= max_len:
        raise ValueError(f"reward.overlong.cache must be in [1, {max_len - 1}] (below the generation limit "
                         f"{max_len}), got {cache}")
    expected = max_len - cache
    if length <= expected:
        return 0.0
    if length <= max_len:
        return float(factor) * (expected - length) / cache
    return -float(factor)


def overlong_penalty_batch(lengths: Any, max_len: Any, cache: int, factor: float = 1.0) -> np.ndarray:
    """:func:`overlong_penalty` of each response (``max_len`` a scalar or one limit per response), float64."""
    n = np.asarray(lengths, dtype=np.int64)
    limits = np.broadcast_to(np.asarray(max_len, dtype=np.int64), n.shape)
    return np.array([overlong_penalty(int(a), int(b), cache, factor) for a, b in zip(n, limits)], dtype=np.float64)


__all__ = ["overlong_penalty", "overlong_penalty_batch"]
