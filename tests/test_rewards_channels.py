"""Reward channels: token-level rewards per channel, discounted returns, and their combination."""

import numpy as np
import pytest

from longcot.generation.base import Completion
from longcot.rewards.channels import (
    RewardChannel,
    ScoredSample,
    combined_returns,
    compute_channel_rewards,
    discounted_returns,
    reward_channels,
)
from longcot.rewards.config import RepetitionConfig, RewardConfig

COSINE_REPPEN_SMALL = RewardConfig(
    name="t", kind="cosine", repetition=RepetitionConfig(variant="dense", ngram_size=2, penalty=-0.05, gamma=0.99)
)


def _naive_returns(r, gamma):
    out = np.zeros(len(r))
    acc = 0.0
    for t in reversed(range(len(r))):
        acc = r[t] + gamma * acc
        out[t] = acc
    return out


# --- discounted returns ------------------------------------------------------------------------


def test_discounted_returns_hand_computed():
    # G3 = 2, G2 = 0.99 * 2, G1 = 0.99 * 1.98, G0 = 1 + 0.99 * 1.9602
    np.testing.assert_allclose(discounted_returns([1.0, 0.0, 0.0, 2.0], 0.99), [2.940598, 1.9602, 1.98, 2.0], atol=1e-12)
    # a dense penalty tail: G3 = -0.05, G2 = -0.05 - 0.0495, G1 = -0.05 + 0.99 * -0.0995, G0 = 0.99 * G1
    np.testing.assert_allclose(
        discounted_returns([0.0, -0.05, -0.05, -0.05], 0.99), [-0.14701995, -0.148505, -0.0995, -0.05], atol=1e-12
    )
    np.testing.assert_array_equal(discounted_returns([1.0, 2.0, 3.0], 1.0), [6.0, 5.0, 3.0])
    np.testing.assert_array_equal(discounted_returns([1.0, 2.0, 3.0], 0.0), [1.0, 2.0, 3.0])
    np.testing.assert_allclose(discounted_returns([1.0, 2.0, 4.0], 0.5), [3.0, 4.0, 4.0], atol=1e-15)
    assert discounted_returns(np.zeros(0), 0.99).shape == (0,)


@pytest.mark.parametrize("gamma,length", [(0.99, 30000), (0.5, 3000), (0.9, 5000), (0.999, 100), (1e-3, 50)])
def test_discounted_returns_match_the_recursion(gamma, length):
    # Long sequences cross several rescaling blocks (0.99: one block is ~22.9k tokens).
    rng = np.random.default_rng(0)
    r = rng.normal(size=length) * (rng.random(length) < 0.3)
    r[-1] = 5.0
    got = discounted_returns(r, gamma)
    want = _naive_returns(r, gamma)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert np.all(np.isfinite(got))


def test_discounted_returns_batched_and_padded():
    rng = np.random.default_rng(1)
    batch = rng.normal(size=(4, 50))
    got = discounted_returns(batch, 0.97)
    for row, g in zip(batch, got):
        np.testing.assert_allclose(g, _naive_returns(row, 0.97), rtol=1e-12, atol=1e-12)
    # right padding with zeros does not change the real tokens' returns
    padded = np.concatenate([batch[0], np.zeros(10)])
    np.testing.assert_allclose(discounted_returns(padded, 0.97)[:50], got[0], rtol=1e-12, atol=1e-15)


def test_discounted_returns_invalid():
    with pytest.raises(ValueError):
        discounted_returns([1.0], 1.5)
    with pytest.raises(ValueError):
        discounted_returns(1.0, 0.9)


# --- channel rewards ---------------------------------------------------------------------------


def test_sparse_plus_dense_hand_computed():
    # Cosine (T = 100) + dense repetition (N = 2, P = -0.05, gamma 0.99) on tokens [1, 2, 1, 2, 3]:
    # (1,2) starts again at 2 -> tokens 2, 3 get -0.05; correct with t = 5:
    # 1 + 0.5 (1 + cos(5 pi / 100)) = 1.9938441702975689 at the last token.
    sample = ScoredSample(token_ids=[1, 2, 1, 2, 3], correct=True, max_len=100)
    rewards = compute_channel_rewards(COSINE_REPPEN_SMALL, [sample])
    assert list(rewards) == ["correctness", "repetition"]
    np.testing.assert_allclose(rewards["correctness"][0], [0, 0, 0, 0, 1.9938441702975689], atol=1e-12)
    np.testing.assert_array_equal(rewards["repetition"][0], [0, 0, -0.05, -0.05, 0])
    channels = reward_channels(COSINE_REPPEN_SMALL)
    assert channels == [RewardChannel("correctness", "sparse", 1.0), RewardChannel("repetition", "dense", 0.99)]
    # correctness returns (gamma 1): 1.99384417 everywhere; repetition returns (gamma 0.99):
    # G4 = 0, G3 = -0.05, G2 = -0.0995, G1 = -0.098505, G0 = -0.09751995
    total = combined_returns(rewards, channels)[0]
    np.testing.assert_allclose(
        total,
        [1.896324220297569, 1.8953391702975688, 1.894344170297569, 1.9438441702975688, 1.9938441702975689],
        atol=1e-12,
    )


def test_batch_of_samples_classic():
    cfg = RewardConfig(name="c", kind="classic")
    samples = [
        ScoredSample([1, 2, 3], True, 100),
        ScoredSample([1, 2, 3], False, 100),
        ScoredSample([5] * 90, True, 100),  # 90 >= 100 - 16: over budget -> exceed 0
        ScoredSample([7, 8], True, 100, truncated=True),
    ]
    rewards = compute_channel_rewards(cfg, samples)
    assert list(rewards) == ["correctness"]
    got = rewards["correctness"]
    assert [g.shape for g in got] == [(3,), (3,), (90,), (2,)]
    assert [g[-1] for g in got] == [1.0, 0.0, 0.0, 0.0]
    assert all(np.count_nonzero(g[:-1]) == 0 for g in got)


def test_cosine_channel_uses_the_generation_limit_and_margin():
    cfg = RewardConfig(name="c", kind="cosine")
    samples = [ScoredSample([0] * 50, True, 100), ScoredSample([0] * 50, False, 100), ScoredSample([0] * 84, True, 100)]
    got = [g[-1] for g in compute_channel_rewards(cfg, samples)["correctness"]]
    np.testing.assert_allclose(got, [1.5, -5.0, -10.0], atol=1e-12)


def test_sequence_variant_is_sparse_and_needs_text():
    cfg = RewardConfig(
        name="s", kind="classic", repetition=RepetitionConfig(variant="sequence", ngram_size=2, penalty=-1.0, gamma=1.0)
    )
    assert reward_channels(cfg)[1] == RewardChannel("repetition", "sparse", 1.0)
    sample = ScoredSample([1, 2, 3, 4], True, 100, text="a b a b")
    rep = compute_channel_rewards(cfg, [sample])["repetition"][0]
    np.testing.assert_allclose(rep, [0, 0, 0, -1 / 3], atol=1e-12)
    with pytest.raises(ValueError, match="text"):
        compute_channel_rewards(cfg, [ScoredSample([1, 2], True, 100)])


def test_empty_response_and_empty_batch():
    rewards = compute_channel_rewards(COSINE_REPPEN_SMALL, [ScoredSample([], False, 100)])
    assert rewards["correctness"][0].shape == (0,) and rewards["repetition"][0].shape == (0,)
    empty = compute_channel_rewards(COSINE_REPPEN_SMALL, [])
    assert empty == {"correctness": [], "repetition": []}


def test_from_completion():
    comp = Completion(text="x y", token_ids=(4, 5, 6), finish_reason="length", prompt_tokens=3)
    s = ScoredSample.from_completion(comp, True, 100)
    assert (s.length, s.truncated, s.text, s.correct) == (3, True, "x y", True)
    got = compute_channel_rewards(RewardConfig(name="c", kind="cosine"), [s])["correctness"][0]
    np.testing.assert_array_equal(got, [0, 0, -10.0])


def test_combined_returns_checks_channels():
    channels = [RewardChannel("a", "sparse", 1.0), RewardChannel("b", "dense", 0.5)]
    rewards = {"a": [np.array([0.0, 1.0])], "b": [np.array([1.0, 1.0])]}
    np.testing.assert_allclose(combined_returns(rewards, channels)[0], [1.0 + 1.5, 1.0 + 1.0])
    with pytest.raises(KeyError):
        combined_returns({"a": rewards["a"]}, channels)
    with pytest.raises(ValueError):
        combined_returns({"a": rewards["a"], "b": rewards["b"] * 2}, channels)
    with pytest.raises(ValueError):
        combined_returns({"a": rewards["a"], "b": [np.ones(3)]}, channels)
