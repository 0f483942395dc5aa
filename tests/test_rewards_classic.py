"""Classic 0/1 reward (§4.1) with the official exceed-length rule."""

import numpy as np
import pytest

from longcot.rewards.classic import classic_reward, classic_reward_batch


def test_correct_and_wrong():
    assert classic_reward(True) == 1.0
    assert classic_reward(False) == 0.0
    assert classic_reward(True, 100, 14336) == 1.0
    assert classic_reward(False, 100, 14336) == 0.0


def test_exceed_by_truncation_or_margin():
    assert classic_reward(True, truncated=True) == 0.0
    assert classic_reward(True, 14336 - 16, 14336) == 0.0  # within the margin
    assert classic_reward(True, 14336 - 17, 14336) == 1.0
    assert classic_reward(True, 14336 - 17, 14336, truncated=True) == 0.0
    assert classic_reward(False, 5, 100, True, exceed=-1.0) == -1.0
    assert classic_reward(True, 99, 100, margin=0) == 1.0


def test_exceed_none_disables_the_rule():
    assert classic_reward(True, 14336, 14336, True, exceed=None) == 1.0
    assert classic_reward(False, truncated=True, exceed=None) == 0.0


def test_custom_values():
    assert classic_reward(True, correct_reward=2.0, wrong_reward=-1.0) == 2.0
    assert classic_reward(False, correct_reward=2.0, wrong_reward=-1.0) == -1.0


def test_needs_both_lengths_or_neither():
    with pytest.raises(ValueError):
        classic_reward(True, gen_len=5)
    with pytest.raises(ValueError):
        classic_reward_batch([True], max_len=[5])


def test_batch_equals_scalar():
    rng = np.random.default_rng(0)
    correct = rng.random(200) < 0.5
    gen_len = rng.integers(0, 120, 200)
    truncated = rng.random(200) < 0.1
    for exceed in (0.0, -2.0, None):
        batch = classic_reward_batch(correct, gen_len, 100, truncated, exceed=exceed, correct_reward=3.0)
        scalar = [
            classic_reward(bool(c), int(g), 100, bool(t), exceed=exceed, correct_reward=3.0)
            for c, g, t in zip(correct, gen_len, truncated)
        ]
        np.testing.assert_array_equal(batch, scalar)
    np.testing.assert_array_equal(classic_reward_batch([True, False], truncated=[True, False]), [0.0, 0.0])
    np.testing.assert_array_equal(classic_reward_batch([True, False]), [1.0, 0.0])
