"""Repetition penalties.

**Dense** (paper App. C.2, Algorithm 1; the §4 default): over the response's token ids, every
N-gram whose start ``j`` is not its first occurrence (the same N tokens already started at some
``i < j``) sets ``r[t] = P`` for ``t`` in ``[j, j + N - 1]`` -- an assignment, so overlapping repeats
do not add up. Defaults ``N = 40``, ``P = -0.05``. The result is a per-token reward channel (the RL
stage discounts it with its own gamma, 0.99 in the paper).

:func:`dense_repetition_penalty` computes exactly this without a per-token Python loop: a 64-bit
polynomial hash of every window (prefix sums modulo 2**64, normalised by inverse powers of the
base), one ``np.sort`` of ``hash_high_bits | position`` keys that groups equal hashes with their
positions ascending, an exact element-wise check of every candidate repeat against the previous
window of its hash group (done per run of consecutive candidates with the same gap, so copied spans
and loops cost O(length) rather than O(length * N)), and a difference array + cumsum to mark the
covered tokens. If any candidate fails the check (a genuine hash collision, astronomically rare),
that response is recomputed by an exact ``np.unique(axis=0)`` over its windows, so collisions
never change the result.
:func:`dense_repetition_penalty_reference` is the literal loop transcription used to test it.

**Sequence-level** (open-r1's ``get_repetition_penalty_reward``, kept for comparison):
``(1 - unique / total) * max_penalty`` over the lower-cased whitespace words' N-grams; 0 for texts
with fewer than N words. One number per response (a sparse channel).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

_U64 = np.uint64
_BASE = 0x9E3779B97F4A7C15  # odd, hence invertible modulo 2**64
_BASE_INV = pow(_BASE, -1, 1 << 64)
# (BASE**k, BASE**-k) for k < size, replaced as one tuple so concurrent readers see a matching pair.
_POWERS: list[tuple[np.ndarray, np.ndarray]] = [(np.ones(1, dtype=_U64), np.ones(1, dtype=_U64))]


def _as_token_array(token_ids: Any) -> np.ndarray:
    """A 1-D int64 array from a list/tuple/numpy array/torch tensor of token ids."""
    if hasattr(token_ids, "detach") and hasattr(token_ids, "cpu"):  # torch.Tensor, without importing torch
        token_ids = token_ids.detach().cpu().numpy()
    arr = np.asarray(token_ids)
    if arr.ndim != 1:
        raise ValueError(f"token_ids must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"token_ids must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _check_args(ngram_size: int, penalty: float) -> None:
    if int(ngram_size) != ngram_size or ngram_size < 1:
        raise ValueError(f"ngram_size must be a positive integer, got {ngram_size}")
    if penalty > 0:
        raise ValueError(f"penalty must be <= 0 (a penalty), got {penalty}")


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``BASE**k`` and ``BASE**-k`` modulo 2**64 for ``k < n`` (cached, grown geometrically)."""
    fwd, inv = _POWERS[0]
    if fwd.size < n:
        size = max(n, 2 * fwd.size)
        fwd = np.full(size, _BASE, dtype=_U64)
        inv = np.full(size, _BASE_INV, dtype=_U64)
        fwd[0] = inv[0] = 1
        fwd, inv = np.cumprod(fwd), np.cumprod(inv)  # uint64 arithmetic wraps modulo 2**64
        _POWERS[0] = (fwd, inv)
    return fwd[:n], inv[:n]


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64 (wrapping arithmetic)."""
    z = z ^ (z >> _U64(30))
    z = z * _U64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> _U64(27))
    z = z * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


def _window_hashes(x: np.ndarray, n: int) -> np.ndarray:
    """A 64-bit hash of each of the ``len(x) - n + 1`` windows ``x[j:j+n]`` (equal windows, equal hashes)."""
    length = x.size
    z = _mix64(x.view(_U64) + _U64(0x9E3779B97F4A7C15))
    pw, inv = _powers(length)
    prefix = np.zeros(length + 1, dtype=_U64)
    np.cumsum(z * pw, out=prefix[1:])
    # (prefix[j+n] - prefix[j]) = BASE**j * sum_k z[j+k] BASE**k; multiply by BASE**-j to normalise.
    # The high bits (the ones the sort keys keep) are well mixed; the low bits are dropped.
    return (prefix[n:] - prefix[:-n]) * inv[: length - n + 1]


def _repeated_spans_hashed(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Token spans ``[lo, hi)`` covered by repeated windows, or None if a hash collision was detected.

    Each span is the union of the windows of one run of consecutive repeated starts; spans have
    distinct ``lo`` and distinct ``hi`` (they may overlap each other).
    """
    m = x.size - n + 1
    shift = max(1, int(m - 1).bit_length())
    pos_mask = _U64((1 << shift) - 1)
    keys = (_window_hashes(x, n) & ~pos_mask) | np.arange(m, dtype=_U64)
    keys.sort()  # groups equal (truncated) hashes; within a group positions ascend
    group = keys >> _U64(shift)
    pos = (keys & pos_mask).astype(np.int64)
    same = group[1:] == group[:-1]
    if not same.any():
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    # Every non-first member of a hash group is a candidate repeat. Verify each against the previous
    # member of its group (equality is transitive, so the whole group is then equal); the gaps
    # ``d = candidate - previous`` are constant along copied spans and periodic loops.
    later = pos[1:][same]
    gap = np.zeros(m, dtype=np.int64)
    gap[later] = later - pos[:-1][same]
    is_later = np.zeros(m, dtype=bool)
    is_later[later] = True
    starts = np.flatnonzero(is_later)  # candidates in position order
    d = gap[starts]
    # Runs of consecutive candidates with the same gap: all their windows equal their partners iff
    # x[i] == x[i - d] on the run's whole span [first start, last start + n).
    new_run = np.ones(starts.size, dtype=bool)
    new_run[1:] = (np.diff(starts) != 1) | (np.diff(d) != 0)
    first = np.flatnonzero(new_run)
    lo = starts[first]
    hi = starts[np.append(first[1:], starts.size) - 1] + n
    shifts = d[first]
    if lo.size <= 4:  # few runs (a loop, a long copied span): compare slices
        for a, b, s in zip(lo.tolist(), hi.tolist(), shifts.tolist()):
            if not np.array_equal(x[a:b], x[a - s : b - s]):
                return None
    else:  # many short runs: one gather over all spans
        width = hi - lo
        idx = np.arange(int(width.sum())) + np.repeat(lo - (np.cumsum(width) - width), width)
        if not np.array_equal(x[idx], x[idx - np.repeat(shifts, width)]):
            return None
    return lo, hi


def _repeated_starts_exact(x: np.ndarray, n: int) -> np.ndarray:
    """Start positions of repeated windows by exact lexicographic grouping (no hashing)."""
    windows = np.ascontiguousarray(sliding_window_view(x, n))
    _, first_idx, inverse = np.unique(windows, axis=0, return_index=True, return_inverse=True)
    first = first_idx[inverse.reshape(-1)]
    return np.flatnonzero(first != np.arange(windows.shape[0]))


def repeated_token_mask(token_ids: Any, ngram_size: int = 40) -> np.ndarray:
    """Which tokens of one response Algorithm 1 marks, as a bool array of ``len(token_ids)``.

    ``token_ids``: the response's token ids (list, tuple, numpy array or torch tensor of ints).
    Token ``t`` is marked if it lies in some N-gram ``[j, j + N - 1]`` whose tokens already occurred
    as an N-gram starting before ``j``. Responses shorter than N have no marked token.

    >>> repeated_token_mask([1, 2, 3, 1, 2, 3, 4], ngram_size=2).tolist()
    [False, False, False, True, True, True, False]
    """
    _check_args(ngram_size, 0.0)
    x = _as_token_array(token_ids)
    n = int(ngram_size)
    length = x.size
    if length < n:
        return np.zeros(length, dtype=bool)
    spans = _repeated_spans_hashed(x, n)
    if spans is None:
        starts = _repeated_starts_exact(x, n)
        spans = (starts, starts + n)
    lo, hi = spans
    if lo.size == 0:
        return np.zeros(length, dtype=bool)
    cover = np.zeros(length + 1, dtype=np.int32)
    cover[lo] += 1  # lo values are distinct, and so are hi values: fancy-index += is exact
    cover[hi] -= 1
    return np.cumsum(cover[:length]) > 0


def dense_repetition_penalty(token_ids: Any, ngram_size: int = 40, penalty: float = -0.05) -> np.ndarray:
    """Per-token repetition penalty of one response (Algorithm 1), as a float64 array of ``len(token_ids)``:
    ``penalty`` on the tokens :func:`repeated_token_mask` marks, else 0.

    >>> dense_repetition_penalty([1, 2, 3, 1, 2, 3, 4], ngram_size=2, penalty=-1.0).tolist()
    [0.0, 0.0, 0.0, -1.0, -1.0, -1.0, 0.0]
    """
    _check_args(ngram_size, penalty)
    return np.where(repeated_token_mask(token_ids, ngram_size), float(penalty), 0.0)


def dense_repetition_penalty_reference(token_ids: Any, ngram_size: int = 40, penalty: float = -0.05) -> np.ndarray:
    """The slow, literal loop transcription of Algorithm 1; for tests and benchmarks only."""
    _check_args(ngram_size, penalty)
    tokens = [int(t) for t in _as_token_array(token_ids)]
    n = int(ngram_size)
    rewards = [0.0] * len(tokens)
    seen: set[tuple[int, ...]] = set()
    for j in range(len(tokens) - n + 1):
        ngram = tuple(tokens[j : j + n])
        if ngram in seen:
            for t in range(j, j + n):
                rewards[t] = penalty
        seen.add(ngram)
    return np.asarray(rewards, dtype=np.float64)


def sequence_repetition_penalty(text: str, ngram_size: int = 3, max_penalty: float = -1.0) -> float:
    """open-r1's sequence-level penalty: ``(1 - unique/total) * max_penalty`` over word N-grams.

    Words are ``text.lower().split()``; a text with fewer than ``ngram_size`` words gets 0.

    >>> sequence_repetition_penalty("a b a b", ngram_size=2)  # n-grams ab, ba, ab: 1 - 2/3
    -0.33333333333333337
    """
    if max_penalty > 0:
        raise ValueError(f"max_penalty must be <= 0, got {max_penalty}")
    if int(ngram_size) != ngram_size or ngram_size < 1:
        raise ValueError(f"ngram_size must be a positive integer, got {ngram_size}")
    words = text.lower().split()
    if len(words) < ngram_size:
        return 0.0
    total = len(words) - ngram_size + 1
    unique = len(set(zip(*[words[i:] for i in range(ngram_size)])))
    return (1.0 - unique / total) * max_penalty + 0.0  # + 0.0 turns -0.0 into 0.0
