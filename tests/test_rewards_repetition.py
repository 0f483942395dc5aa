"""Repetition penalties: the dense Algorithm 1 (fast and reference) and open-r1's sequence-level one."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from longcot.rewards import repetition
from longcot.analysis.repetition import repetition_stats
from longcot.rewards.repetition import (
    dense_repetition_penalty,
    dense_repetition_penalty_reference,
    repeated_token_mask,
    sequence_repetition_penalty,
)

P = -1.0
BOTH = [dense_repetition_penalty, dense_repetition_penalty_reference]


@pytest.mark.parametrize("fn", BOTH)
@pytest.mark.parametrize(
    "tokens,n,expected",
    [
        # (1,2) starts again at 3 -> tokens 3,4; (2,3) again at 4 -> tokens 4,5 (assigned, not summed)
        ([1, 2, 3, 1, 2, 3, 4], 2, [0, 0, 0, P, P, P, 0]),
        # (1,2,3) again at 3 -> tokens 3,4,5; (2,3,4) is new
        ([1, 2, 3, 1, 2, 3, 4], 3, [0, 0, 0, P, P, P, 0]),
        # N = 1: every token seen before
        ([5, 6, 5, 5, 7], 1, [0, 0, P, P, 0]),
        # all identical: every window from j = 1 on repeats window 0 -> tokens 1..9
        ([4] * 10, 3, [0] + [P] * 9),
        # overlapping repeat: (7,7) at 0, again at 1 and 2
        ([7, 7, 7, 7], 2, [0, P, P, P]),
        # a repeat away from its first occurrence: (1,2)@0 again @4 -> tokens 4,5; (2,8)@5 is new
        ([1, 2, 9, 9, 1, 2, 8], 2, [0, 0, 0, 0, P, P, 0]),
        # (1,2)@0 again at the very end (@5) -> tokens 5,6
        ([1, 2, 9, 9, 3, 1, 2], 2, [0, 0, 0, 0, 0, P, P]),
        # no repeat at all
        ([1, 2, 3, 4, 5], 2, [0, 0, 0, 0, 0]),
        # len == N: a single window, never a repeat
        ([3, 3, 3], 3, [0, 0, 0]),
        # len < N
        ([1, 1, 1], 4, [0, 0, 0]),
        ([], 2, []),
    ],
)
def test_hand_computed(fn, tokens, n, expected):
    out = fn(tokens, ngram_size=n, penalty=P)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, np.array(expected, dtype=np.float64))


@pytest.mark.parametrize("fn", BOTH)
def test_paper_defaults(fn):
    # 100 distinct tokens, then the first 45 again: windows starting at 100..105 (N = 40) repeat
    # windows 0..5, so tokens 100..144 get -0.05; a fresh tail stays 0.
    tokens = list(range(100)) + list(range(45)) + [1000, 1001]
    out = fn(tokens)
    expected = np.zeros(len(tokens))
    expected[100:145] = -0.05
    np.testing.assert_array_equal(out, expected)
    # 39 copied tokens are not a 40-gram repeat
    np.testing.assert_array_equal(fn(list(range(100)) + list(range(39))), np.zeros(139))


def test_input_types_agree():
    tokens = [3, 1, 4, 1, 5, 9, 2, 6, 1, 4, 1, 5, 9, 0]
    expected = dense_repetition_penalty_reference(tokens, ngram_size=3, penalty=P)
    assert expected.sum() < 0
    for value in (
        tokens,
        tuple(tokens),
        np.array(tokens, dtype=np.int32),
        np.array(tokens, dtype=np.uint16),
        torch.tensor(tokens),
        np.array(tokens)[::1],
        np.repeat(np.array(tokens), 2)[::2],  # a non-contiguous view
    ):
        np.testing.assert_array_equal(dense_repetition_penalty(value, ngram_size=3, penalty=P), expected)


def test_invalid_inputs():
    with pytest.raises(ValueError):
        dense_repetition_penalty([[1, 2], [3, 4]])
    with pytest.raises(TypeError):
        dense_repetition_penalty([1.5, 2.0])
    with pytest.raises(ValueError):
        dense_repetition_penalty([1, 2, 3], ngram_size=0)
    with pytest.raises(ValueError):
        dense_repetition_penalty([1, 2, 3], penalty=0.1)


token_lists = st.lists(st.integers(0, 3), max_size=300) | st.lists(st.integers(-2, 40), max_size=120)


@settings(max_examples=300, deadline=None)
@given(token_lists, st.integers(1, 12), st.sampled_from([-0.05, -1.0, -0.5]))
def test_fast_equals_reference(tokens, n, penalty):
    fast = dense_repetition_penalty(tokens, ngram_size=n, penalty=penalty)
    ref = dense_repetition_penalty_reference(tokens, ngram_size=n, penalty=penalty)
    np.testing.assert_array_equal(fast, ref)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(0, 50), min_size=1, max_size=60),
    st.lists(st.tuples(st.integers(0, 400), st.integers(1, 120)), max_size=6),
    st.integers(1, 45),
)
def test_fast_equals_reference_copied_spans(seed_tokens, copies, n):
    # Longer sequences with copied spans and loops, as in degenerate long CoTs.
    rng = np.random.default_rng(len(seed_tokens))
    x = np.concatenate([np.array(seed_tokens), rng.integers(0, 1000, 500)])
    for src, length in copies:
        span = x[src % x.size : src % x.size + length]
        x = np.concatenate([x, span, np.tile(span[:7], 3)])
    np.testing.assert_array_equal(
        dense_repetition_penalty(x, ngram_size=n), dense_repetition_penalty_reference(x, ngram_size=n)
    )


def _bad_hashes(kind):
    def weak(x, n):
        windows = np.lib.stride_tricks.sliding_window_view(x, n)
        if kind == "constant":  # every window collides
            return np.zeros(windows.shape[0], dtype=np.uint64)
        # sum of the window: permutations collide
        return (windows.sum(axis=1).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))

    return weak


@pytest.mark.parametrize("kind", ["constant", "sum"])
def test_hash_collisions_do_not_change_results(monkeypatch, kind):
    calls = []
    exact = repetition._repeated_starts_exact

    def spy(x, n):
        calls.append(n)
        return exact(x, n)

    monkeypatch.setattr(repetition, "_window_hashes", _bad_hashes(kind))
    monkeypatch.setattr(repetition, "_repeated_starts_exact", spy)
    rng = np.random.default_rng(1)
    for n in (1, 2, 3, 5):
        x = rng.integers(0, 4, 200)
        np.testing.assert_array_equal(
            dense_repetition_penalty(x, ngram_size=n), dense_repetition_penalty_reference(x, ngram_size=n)
        )
    # [1, 2] and [2, 1] have equal sums but differ: the collision must be caught
    np.testing.assert_array_equal(dense_repetition_penalty([1, 2, 2, 1], ngram_size=2, penalty=P), [0, 0, 0, 0])
    assert calls, "the exact fallback was never used"


def _reference_starts(x, n):
    seen, starts = set(), []
    for j in range(len(x) - n + 1):
        ng = tuple(x[j : j + n])
        if ng in seen:
            starts.append(j)
        seen.add(ng)
    return starts


def test_exact_path_and_spans_match_reference():
    rng = np.random.default_rng(2)
    for n in (1, 3, 8):
        x = rng.integers(0, 3, 300)
        want = _reference_starts(x.tolist(), n)
        np.testing.assert_array_equal(np.sort(repetition._repeated_starts_exact(x, n)), want)
        lo, hi = repetition._repeated_spans_hashed(x, n)
        covered = np.zeros(x.size, bool)
        for a, b in zip(lo, hi):
            covered[a:b] = True
        expected = np.zeros(x.size, bool)
        for j in want:
            expected[j : j + n] = True
        np.testing.assert_array_equal(covered, expected)


# --- open-r1 sequence-level penalty -------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=60), st.integers(1, 6))
def test_repeated_token_mask_is_where_the_reference_penalises(tokens, n):
    """The mask the dense penalty and the logged repetition rate share marks exactly the tokens the
    literal Algorithm 1 loop penalises."""
    mask = repeated_token_mask(tokens, n)
    assert mask.dtype == bool and mask.shape == (len(tokens),)
    np.testing.assert_array_equal(mask, dense_repetition_penalty_reference(tokens, ngram_size=n, penalty=-1.0) != 0)


def test_repetition_stats_hand_computed():
    """Rate: responses with a repeated N-gram; token share: mean of each response's repeated share."""
    responses = [[1, 2, 3, 1, 2, 3, 4], [1, 2, 3, 4], [], [4] * 10]  # repeats 3/7, none, empty, 9/10 at N=2
    out = repetition_stats(responses, 2)
    assert out["rate"] == 2 / 4
    assert out["token_share"] == pytest.approx((3 / 7 + 0 + 0 + 9 / 10) / 4)
    assert repetition_stats(responses, 8) == {"rate": 1 / 4, "token_share": pytest.approx(9 / 10 / 4)}  # only [4] * 10 has 8
    assert repetition_stats([], 2) == {"rate": 0.0, "token_share": 0.0}
    with pytest.raises(ValueError, match="ngram_size must be a positive integer"):
        repetition_stats([[1, 2]], 0)


def test_sequence_penalty_hand_computed():
    # 2-grams: (a,b), (b,a), (a,b): unique 2 of 3 -> (1 - 2/3) * -1
    assert sequence_repetition_penalty("a b a b", ngram_size=2) == pytest.approx(-1 / 3)
    # case-insensitive words
    assert sequence_repetition_penalty("A b a B", ngram_size=2) == pytest.approx(-1 / 3)
    # 3-grams of "x x x x": (x,x,x) twice -> 1 - 1/2 = 0.5, scaled by -0.5
    assert sequence_repetition_penalty("x x x x", ngram_size=3, max_penalty=-0.5) == pytest.approx(-0.25)
    # no repetition
    assert sequence_repetition_penalty("the cat sat on the mat") == 0.0
    # fewer words than n, and the empty text
    assert sequence_repetition_penalty("one two", ngram_size=3) == 0.0
    assert sequence_repetition_penalty("", ngram_size=3) == 0.0
    # exactly n words: one n-gram, unique
    assert sequence_repetition_penalty("one two three", ngram_size=3) == 0.0
    # whitespace of any kind separates words
    assert sequence_repetition_penalty("a\tb\na b", ngram_size=2) == pytest.approx(-1 / 3)


def test_sequence_penalty_invalid():
    with pytest.raises(ValueError):
        sequence_repetition_penalty("a b c", max_penalty=0.5)
    with pytest.raises(ValueError):
        sequence_repetition_penalty("a b c", ngram_size=0)
