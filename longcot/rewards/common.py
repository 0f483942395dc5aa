"""What the classic and cosine rewards share: the exceed-length rule of the official code.

The official implementation (``openrlhf/reward/{classic,cosine}.py``) tests
``gen_len + MAX_LEN_MARGIN >= max_len`` with ``MAX_LEN_MARGIN = 16`` and ``max_len`` the
*generation* limit (``--generate_max_len``, 14336 in §4), so a response of length
``t >= T - margin`` is treated as having exceeded the budget. We apply the same rule and, in
addition, treat any response the generator reports as truncated (``finish_reason == "length"``) as
exceeded, whatever its length (e.g. one cut by the model's context window rather than ``T``).
"""

from __future__ import annotations

import numpy as np

DEFAULT_MARGIN = 16


def exceeds_length(gen_len: int, max_len: int, truncated: bool = False, margin: int = DEFAULT_MARGIN) -> bool:
    """True when a response counts as over budget: ``truncated or gen_len >= max_len - margin``."""
    check_lengths(gen_len, max_len, margin)
    return bool(truncated) or gen_len + margin >= max_len


def exceeds_length_batch(gen_len, max_len, truncated=None, margin: int = DEFAULT_MARGIN) -> np.ndarray:
    """Vectorised :func:`exceeds_length` over broadcastable arrays (``truncated=None``: none truncated)."""
    gen_len = np.asarray(gen_len)
    max_len = np.asarray(max_len)
    if gen_len.size and np.min(gen_len) < 0:
        raise ValueError("gen_len must be >= 0")
    if max_len.size and np.min(max_len) < 1:
        raise ValueError("max_len must be >= 1")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    over = gen_len + margin >= max_len
    if truncated is not None:
        over = over | np.asarray(truncated, dtype=bool)
    return over


def check_lengths(gen_len: int, max_len: int, margin: int) -> None:
    if gen_len < 0:
        raise ValueError(f"gen_len must be >= 0, got {gen_len}")
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
