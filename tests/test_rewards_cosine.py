"""Cosine length-scaled reward (§4.2, App. C.1): hand-computed values, boundaries, variants, batch."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longcot.rewards.cosine import cos_fn, cosine_scaled_reward, cosine_scaled_reward_batch

T = 14336  # the paper's generation limit
SQRT2_2 = math.sqrt(2) / 2

# §4.3 variants as (r0_correct, rL_correct, r0_wrong, rL_wrong)
VARIANTS = {"A": (0.0, 10.0, 0.0, 0.0), "B": (6.0, 5.0, -10.0, 0.0), "C": (10.0, 9.0, -10.0, 0.0)}


def _kw(variant):
    r0c, rLc, r0w, rLw = VARIANTS[variant]
    return dict(r0_correct=r0c, rL_correct=rLc, r0_wrong=r0w, rL_wrong=rLw, exceed=-10.0)


def test_cos_fn_end_points_and_midpoint():
    assert cos_fn(0, 100, 2.0, 1.0) == 2.0
    assert cos_fn(100, 100, 2.0, 1.0) == pytest.approx(1.0, abs=1e-15)
    assert cos_fn(50, 100, 2.0, 1.0) == pytest.approx(1.5, abs=1e-15)
    assert cos_fn(25, 100, -10.0, 0.0) == pytest.approx(-5 * (1 + SQRT2_2), abs=1e-12)
    # array form agrees
    np.testing.assert_allclose(cos_fn(np.array([0, 50, 100]), 100, 2.0, 1.0), [2.0, 1.5, 1.0], atol=1e-15)


def test_worked_values_default():
    assert cosine_scaled_reward(True, 0, T) == 2.0
    assert cosine_scaled_reward(True, 7168, T) == pytest.approx(1.5, abs=1e-12)
    assert cosine_scaled_reward(False, 0, T) == -10.0
    assert cosine_scaled_reward(False, 7168, T) == pytest.approx(-5.0, abs=1e-12)
    # t = T/4 and 3T/4: 1 + (1 ± sqrt(2)/2)/2 for correct, -5 (1 ± sqrt(2)/2) for wrong
    assert cosine_scaled_reward(True, 3584, T) == pytest.approx(1.8535533905932737, abs=1e-12)
    assert cosine_scaled_reward(False, 3584, T) == pytest.approx(-8.535533905932738, abs=1e-12)
    assert cosine_scaled_reward(True, 10752, T) == pytest.approx(1.1464466094067263, abs=1e-12)
    assert cosine_scaled_reward(False, 10752, T) == pytest.approx(-1.4644660940672622, abs=1e-12)


def test_correct_decreases_and_wrong_increases_with_length():
    ts = np.arange(0, T - 16, 97)
    c = cosine_scaled_reward_batch(np.ones(ts.size, bool), ts, T)
    w = cosine_scaled_reward_batch(np.zeros(ts.size, bool), ts, T)
    assert np.all(np.diff(c) < 0) and np.all(np.diff(w) > 0)
    assert np.all((c > 1.0) & (c <= 2.0)) and np.all((w >= -10.0) & (w < 0.0))


def test_margin_boundary():
    # Over budget iff t >= T - margin (official: gen_len + 16 >= max_len).
    assert cosine_scaled_reward(True, T, T) == -10.0
    assert cosine_scaled_reward(False, T, T) == -10.0
    assert cosine_scaled_reward(True, T - 16, T) == -10.0
    assert cosine_scaled_reward(False, T - 16, T) == -10.0
    # t = T - 17 is inside the budget: 1 + (1 + cos(pi (T-17)/T))/2 = 1 + (1 - cos(17 pi / T))/2
    assert cosine_scaled_reward(True, T - 17, T) == pytest.approx(1.0000034696135875, abs=1e-12)
    assert cosine_scaled_reward(False, T - 17, T) == pytest.approx(-3.4696135875e-05, rel=1e-9)
    # a small limit: T = 100 -> t = 83 is in budget, t = 84 is not
    assert cosine_scaled_reward(True, 83, 100) == pytest.approx(1.0696289864980282, abs=1e-12)
    assert cosine_scaled_reward(False, 83, 100) == pytest.approx(-0.6962898649802812, abs=1e-12)
    assert cosine_scaled_reward(True, 84, 100) == -10.0
    # margin 0: only t >= T is over budget
    assert cosine_scaled_reward(True, 99, 100, margin=0) > 1.0
    assert cosine_scaled_reward(True, 100, 100, margin=0) == -10.0


def test_truncated_gets_exceed_whatever_the_length_or_correctness():
    assert cosine_scaled_reward(True, 5, T, truncated=True) == -10.0
    assert cosine_scaled_reward(False, 5, T, truncated=True) == -10.0
    assert cosine_scaled_reward(True, 5, T, truncated=True, exceed=-3.0) == -3.0


def test_custom_end_points_and_exceed():
    assert cosine_scaled_reward(True, 0, 100, r0_correct=7.0) == 7.0
    assert cosine_scaled_reward(True, 50, 100, r0_correct=7.0, rL_correct=3.0) == pytest.approx(5.0)
    assert cosine_scaled_reward(False, 90, 100, exceed=-1.5) == -1.5


@pytest.mark.parametrize(
    "variant,correct,t,expected",
    [
        # A: correct 0 -> 10 (longer correct answers are worth more); wrong always 0
        ("A", True, 0, 0.0),
        ("A", True, 7168, 5.0),
        ("A", True, 3584, 5 * (1 - SQRT2_2)),  # 10 - 5 (1 + cos(pi/4))
        ("A", False, 0, 0.0),
        ("A", False, 7168, 0.0),
        ("A", True, T - 16, -10.0),
        # B: correct 6 -> 5, wrong -10 -> 0
        ("B", True, 0, 6.0),
        ("B", True, 7168, 5.5),
        ("B", True, 3584, 5 + 0.5 * (1 + SQRT2_2)),
        ("B", False, 7168, -5.0),
        ("B", False, T, -10.0),
        # C: correct 10 -> 9, wrong -10 -> 0
        ("C", True, 0, 10.0),
        ("C", True, 7168, 9.5),
        ("C", True, 10752, 9 + 0.5 * (1 - SQRT2_2)),
        ("C", False, 0, -10.0),
        ("C", False, 10752, -5 * (1 - SQRT2_2)),
        ("C", False, T - 16, -10.0),
    ],
)
def test_variants(variant, correct, t, expected):
    assert cosine_scaled_reward(correct, t, T, **_kw(variant)) == pytest.approx(expected, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 5000), st.integers(1, 5000), st.booleans()),
        min_size=1,
        max_size=30,
    ),
    st.sampled_from(["default", "A", "B", "C"]),
    st.integers(0, 40),
)
def test_batch_equals_scalar(rows, variant, margin):
    kw = {} if variant == "default" else _kw(variant)
    correct, gen_len, max_len, truncated = (np.array(c) for c in zip(*rows))
    batch = cosine_scaled_reward_batch(correct, gen_len, max_len, truncated, margin=margin, **kw)
    scalar = [
        cosine_scaled_reward(bool(c), int(g), int(m), bool(tr), margin=margin, **kw)
        for c, g, m, tr in rows
    ]
    assert batch.dtype == np.float64 and batch.shape == (len(rows),)
    np.testing.assert_allclose(batch, scalar, rtol=0, atol=1e-12)


def test_batch_defaults_and_broadcast_max_len():
    out = cosine_scaled_reward_batch([True, False, True], [0, 7168, T - 16], T)
    np.testing.assert_allclose(out, [2.0, -5.0, -10.0], atol=1e-12)


@pytest.mark.parametrize("args", [(True, -1, 100), (True, 5, 0)])
def test_invalid_lengths(args):
    with pytest.raises(ValueError):
        cosine_scaled_reward(*args)


def test_invalid_margin():
    with pytest.raises(ValueError):
        cosine_scaled_reward(True, 5, 100, margin=-1)
    with pytest.raises(ValueError):
        cosine_scaled_reward_batch([True], [5], 100, margin=-1)


def test_grpo_cannot_tell_b_from_c_on_an_all_correct_group_only_on_a_mixed_one():
    """Why Fig. 9's B - C is ~0 on a twin student near 97% accuracy (twin_sec4_reward_hparams_2m_4ep):
    on correct answers B (6 -> 5) and C (10 -> 9) differ by the constant 4, which GRPO's group mean removes,
    so an all-correct group gets the very same advantages; only a group with a wrong (or over-long) answer,
    where C's correct - wrong gap is larger, tells them apart."""
    import torch

    from longcot.rl.advantages import group_advantages, reinforce_returns

    # the variants above are the configured ones (tests/test_rewards_config.py checks conf/reward/cosine_*.yaml)
    lengths, T_gen = np.array([40, 72, 96, 150]), 192

    def advantages(variant, correct):
        r = cosine_scaled_reward_batch(correct, lengths, T_gen, margin=16, **_kw(variant))
        rewards = torch.zeros(len(lengths), int(lengths.max()), 1)
        mask = torch.zeros(len(lengths), int(lengths.max()))
        for i, n in enumerate(lengths):
            rewards[i, n - 1, 0], mask[i, :n] = float(r[i]), 1.0
        return group_advantages(reinforce_returns(rewards, mask, [1.0]), mask, group_size=len(lengths))

    all_correct = np.array([True] * 4)
    torch.testing.assert_close(advantages("B", all_correct), advantages("C", all_correct), rtol=0, atol=1e-5)
    mixed = np.array([True, True, False, True])
    assert not torch.allclose(advantages("B", mixed), advantages("C", mixed), atol=1e-3)
