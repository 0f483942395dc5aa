"""RL math: returns with per-channel gammas and the KL split, GAE / REINFORCE++ / GRPO / Dr. GRPO
advantages, whitening, KL estimators, PPO losses -- by hand and against a transcription of the
official code (eddycmu/demystify-long-cot, its OpenRLHF fork)."""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import numpy as np
import pytest
import torch

from longcot.rewards.channels import RewardChannel
from longcot.rl.advantages import gae_advantages, group_advantages, reinforce_returns, whiten
from longcot.rl.kl import approx_kl
from longcot.rl.losses import aggregate, entropy_from_logits, policy_loss, value_loss
from longcot.rl.returns import channel_returns, pack_channel_rewards, token_rewards


# ----------------------------------------------------------------------------------------------
# Reference: a plain transcription of the official functions (eddycmu/demystify-long-cot,
# openrlhf/openrlhf/...), kept here as the oracle. Only the non-packed, single-process paths.
# ----------------------------------------------------------------------------------------------
def ref_compute_approx_kl(log_probs, log_probs_base, action_mask=None, use_kl_estimator_k3=False):
    """models/utils.py::compute_approx_kl"""
    log_ratio = log_probs - log_probs_base
    if action_mask is not None:
        log_ratio = log_ratio * action_mask
    if use_kl_estimator_k3:
        log_ratio = -log_ratio
        log_ratio = log_ratio.exp() - 1 - log_ratio
    return log_ratio


def ref_compute_reward(r, kl_coef, kl, action_mask=None, reward_clip_range=None):
    """models/utils.py::compute_reward (action_mask branch)."""
    if kl_coef <= 0.0:
        kl_coef = 0.0
    if reward_clip_range:
        r = r.clamp(min=reward_clip_range[0], max=reward_clip_range[1])
    kl_reward = -kl_coef * kl
    if r.dim() == 1:
        eos_indices = action_mask.size(1) - 1 - action_mask.long().fliplr().argmax(dim=1, keepdim=True)
        last_reward = torch.zeros_like(kl).scatter_(dim=1, index=eos_indices, src=r.unsqueeze(1).to(kl.dtype))
    elif r.dim() == 2:
        last_reward = r
    else:
        last_reward = r
        kl_reward = kl_reward.unsqueeze(-1) / r.shape[-1]
    return last_reward + kl_reward


def ref_get_advantages_and_returns(values, rewards, action_mask, gamma: List[float], lambd: float):
    """trainer/ppo_utils/experience_maker.py::NaiveExperienceMaker.get_advantages_and_returns"""
    response_length = rewards.size(1)
    if len(gamma) == 1:
        if action_mask is not None:
            values = action_mask * values
            rewards = action_mask * rewards
        g = gamma[0]
        lastgaelam = 0
        advantages_reversed = []
        for t in reversed(range(response_length)):
            nextvalues = values[:, t + 1] if t < response_length - 1 else 0.0
            delta = rewards[:, t] + g * nextvalues - values[:, t]
            lastgaelam = delta + g * lambd * lastgaelam
            advantages_reversed.append(lastgaelam)
        advantages = torch.stack(advantages_reversed[::-1], dim=1)
        return advantages.detach(), advantages + values
    assert rewards.dim() == 3 and len(gamma) == rewards.shape[2]
    assert lambd == 1, "Only lambda = 1 is supported with multiple gammas"
    if action_mask is not None:
        values = action_mask * values
        rewards = action_mask.unsqueeze(-1) * rewards
    returns_reversed = []
    next_returns = torch.zeros(rewards.shape[0], len(gamma), dtype=rewards.dtype)
    for t in reversed(range(response_length)):
        step_returns = torch.zeros(rewards.shape[0], len(gamma), dtype=rewards.dtype)
        for i, g in enumerate(gamma):
            step_returns[:, i] = rewards[:, t, i] + g * next_returns[:, i]
        returns_reversed.append(step_returns.sum(dim=-1))
        next_returns = step_returns
    returns = torch.stack(returns_reversed[::-1], dim=1)
    return (returns - values).detach(), returns


def ref_get_cumulative_returns(rewards, action_mask, gamma: List[float]):
    """trainer/ppo_utils/experience_maker.py::NaiveExperienceMaker.get_cumulative_returns"""
    response_length = rewards.size(1)
    returns = torch.zeros_like(rewards)
    if len(gamma) == 1:
        cumulative_return = torch.zeros(rewards.size(0))
        if action_mask is not None:
            rewards = action_mask * rewards
        for t in reversed(range(response_length)):
            cumulative_return = rewards[:, t] + gamma[0] * cumulative_return
            returns[:, t] = cumulative_return
        return returns
    cumulative_return = torch.zeros(rewards.size(0), rewards.size(2))
    if action_mask is not None:
        rewards = action_mask.unsqueeze(-1) * rewards
    for t in reversed(range(response_length)):
        for i, g in enumerate(gamma):
            cumulative_return[:, i] = rewards[:, t, i] + g * cumulative_return[:, i]
            returns[:, t, i] = cumulative_return[:, i]
    return returns.sum(dim=-1)


def ref_normalize(advantages: List[torch.Tensor], action_masks: List[torch.Tensor]) -> List[torch.Tensor]:
    """trainer/ppo_utils/replay_buffer.py::NaiveReplayBuffer.normalize, one rank; items are the
    buffer rows after remove_padding_in_sequences (right padding cut off)."""
    items_vector = torch.cat(advantages).float().flatten()
    action_masks_vector = torch.cat(action_masks).flatten()
    num_actions = action_masks_vector.sum()
    mean = items_vector.sum() / num_actions
    std = ((items_vector - mean).pow(2) * action_masks_vector).sum()
    rstd = (std / num_actions).clamp(min=1e-8).rsqrt()
    return [(a - mean) * rstd for a in advantages]


def ref_policy_loss(log_probs, old_log_probs, advantages, action_mask, clip_eps=0.2):
    """models/loss.py::PolicyLoss.forward"""
    ratio = (log_probs - old_log_probs).exp()
    surr1 = ratio * advantages
    surr2 = ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantages
    loss = -torch.min(surr1, surr2)
    return ((loss * action_mask).sum(-1) / action_mask.sum(-1)).mean()


def ref_value_loss(values, old_values, returns, action_mask, clip_eps=0.2):
    """models/loss.py::ValueLoss.forward"""
    values_clipped = old_values + (values - old_values).clamp(-clip_eps, clip_eps)
    surr1 = (values_clipped - returns) ** 2
    surr2 = (values - returns) ** 2
    loss = torch.max(surr1, surr2)
    return 0.5 * ((loss * action_mask).sum(-1) / action_mask.sum(-1)).mean()


# ----------------------------------------------------------------------------------------------
def _prefix_mask(lengths, width):
    return (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).float()


def _random_rollout(seed: int, lengths=(7, 3, 5, 1), width=7, channels=2):
    g = torch.Generator().manual_seed(seed)
    b = len(lengths)
    mask = _prefix_mask(lengths, width)
    logp = -torch.rand(b, width, generator=g) * 3
    ref = -torch.rand(b, width, generator=g) * 3
    values = torch.randn(b, width, generator=g)
    dense = torch.randn(b, width, generator=g) * 0.3 * mask
    sparse = torch.zeros(b, width)
    for i, n in enumerate(lengths):
        sparse[i, n - 1] = float(torch.randn(1, generator=g) * 12)  # some beyond the clip range
    r = torch.stack([sparse, dense], dim=-1)[..., :channels]
    return mask, logp, ref, values, r


def test_hand_computed_two_channels_kl_split():
    """3 tokens; correctness (sparse, gamma 1) + repetition (dense, gamma 0.5); KL split in two."""
    mask = torch.tensor([[1.0, 1.0, 1.0]])
    r = torch.tensor([[[0.0, -0.1], [0.0, -0.2], [2.0, 0.0]]])
    kl = torch.tensor([[0.2, -0.4, 0.6]])
    rew = token_rewards(r, mask, kl=kl, kl_coef=0.5, clip=10.0)
    # -0.5 * kl / 2 = [-0.05, 0.1, -0.15] added to each channel
    assert torch.allclose(rew[0, :, 0], torch.tensor([-0.05, 0.1, 1.85]))
    assert torch.allclose(rew[0, :, 1], torch.tensor([-0.15, -0.1, -0.15]))
    ret = channel_returns(rew, [1.0, 0.5])
    # channel c: [1.9, 1.95, 1.85]; channel p: G2=-0.15, G1=-0.175, G0=-0.2375
    expected = torch.tensor([[1.6625, 1.775, 1.7]])
    assert torch.allclose(ret, expected, atol=1e-6)
    adv, ret2 = gae_advantages(torch.tensor([[0.5, 1.0, 1.5]]), rew, mask, [1.0, 0.5], lam=1.0)
    assert torch.allclose(ret2, expected, atol=1e-6)
    assert torch.allclose(adv, torch.tensor([[1.1625, 0.775, 0.2]]), atol=1e-6)


def test_reward_clip_and_masking():
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    r = torch.tensor([[[0.0], [15.0], [3.0]]])
    rew = token_rewards(r, mask, clip=10.0)
    assert rew[0, :, 0].tolist() == [0.0, 10.0, 0.0]
    assert token_rewards(-r, mask, clip=10.0)[0, 1, 0] == -10.0
    assert token_rewards(r, mask, clip=None)[0, 1, 0] == 15.0
    with pytest.raises(ValueError, match="reward_clip"):
        token_rewards(r, mask, clip=0.0)


def test_single_gamma_gae_by_hand():
    """gamma 0.9, lambda 0.5, one channel: delta_t = r_t + g V_{t+1} - V_t; A_t = delta_t + g lam A_{t+1}."""
    v = torch.tensor([[1.0, 2.0]])
    r = torch.tensor([[[0.0], [1.0]]])
    adv, ret = gae_advantages(v, r, torch.ones(1, 2), [0.9], lam=0.5)
    d1 = 1.0 - 2.0
    d0 = 0.0 + 0.9 * 2.0 - 1.0
    assert torch.allclose(adv, torch.tensor([[d0 + 0.45 * d1, d1]]))
    assert torch.allclose(ret, adv + v)


def test_multi_gamma_needs_lambda_one():
    r = torch.zeros(1, 2, 2)
    with pytest.raises(ValueError, match="lam = 1"):
        gae_advantages(torch.zeros(1, 2), r, torch.ones(1, 2), [1.0, 0.99], lam=0.95)
    # equal gammas are one gamma: lambda < 1 is fine
    gae_advantages(torch.zeros(1, 2), r, torch.ones(1, 2), [0.99, 0.99], lam=0.95)


def test_whiten_by_hand():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    m = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    out = whiten(x, m)
    s = math.sqrt(1.5)
    assert torch.allclose(out, torch.tensor([[-s, 0.0, s, 0.0]]), atol=1e-6)


def test_group_advantages_by_hand():
    mask = torch.ones(3, 2)
    ret = torch.tensor([[3.0, 3.0], [0.0, 0.0], [0.0, 0.0]])
    grpo = group_advantages(ret, mask, 3, eps=0.0)
    s3 = math.sqrt(3.0)  # unbiased std of [3, 0, 0]
    assert torch.allclose(grpo[:, 0], torch.tensor([2 / s3, -1 / s3, -1 / s3]), atol=1e-6)
    dr = group_advantages(ret, mask, 3, std_normalize=False)
    assert torch.allclose(dr, torch.tensor([[2.0, 2.0], [-1.0, -1.0], [-1.0, -1.0]]))
    # two groups of two: [1, 0] -> +-1/sqrt(2); [2, 2] -> zero advantage (std 0, eps keeps it finite)
    ret = torch.tensor([[1.0], [0.0], [2.0], [2.0]])
    out = group_advantages(ret, torch.ones(4, 1), 2, eps=1e-6)
    assert torch.allclose(out[:, 0], torch.tensor([1 / math.sqrt(2), -1 / math.sqrt(2), 0.0, 0.0]), atol=1e-5)
    with pytest.raises(ValueError, match="samples_per_prompt"):
        group_advantages(ret, torch.ones(4, 1), 3)


def test_group_advantages_with_per_channel_gammas():
    """Sample A: sparse 1 at t=1 (gamma 1) + dense [0, -1] (gamma 0.5) -> R = [0.5, 0]; sample B: 0.
    Dr. GRPO baseline = mean of R_0 = 0.25."""
    mask = torch.ones(2, 2)
    r = torch.tensor([[[0.0, 0.0], [1.0, -1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    ret = reinforce_returns(token_rewards(r, mask), mask, [1.0, 0.5])
    assert torch.allclose(ret, torch.tensor([[0.5, 0.0], [0.0, 0.0]]))
    dr = group_advantages(ret, mask, 2, std_normalize=False)
    assert torch.allclose(dr, torch.tensor([[0.25, -0.25], [-0.25, -0.25]]))


def test_reinforce_pp_by_hand():
    """Token-level KL in the reward, gamma 1: returns are reward-to-go, then whitened over the batch."""
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    r = torch.tensor([[[0.0], [1.0]], [[0.0], [0.0]]])
    kl = torch.tensor([[0.2, 0.2], [1.0, 0.0]])
    rew = token_rewards(r, mask, kl=kl, kl_coef=0.1)
    ret = reinforce_returns(rew, mask, [1.0])
    assert torch.allclose(ret, torch.tensor([[0.96, 0.98], [-0.1, 0.0]]))
    x = torch.tensor([0.96, 0.98, -0.1])
    expected = (x - x.mean()) / x.std(unbiased=False)
    assert torch.allclose(whiten(ret, mask)[mask.bool()], expected, atol=1e-5)


def test_kl_estimators_by_hand():
    lp, ref = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -1.0]])
    m = torch.tensor([[1.0, 0.0]])
    assert torch.allclose(approx_kl(lp, ref, m, "k1"), torch.tensor([[0.5, 0.0]]))
    assert torch.allclose(approx_kl(lp, ref, m, "k2"), torch.tensor([[0.125, 0.0]]))
    assert torch.allclose(approx_kl(lp, ref, m, "k3"), torch.tensor([[math.exp(-0.5) - 1 + 0.5, 0.0]]))
    with pytest.raises(ValueError, match="k1, k2, k3"):
        approx_kl(lp, ref, m, "k4")


def test_policy_and_value_loss_by_hand():
    lp = torch.log(torch.tensor([[1.5, 0.5, 0.5]]))
    old = torch.zeros(1, 3)
    adv = torch.tensor([[1.0, 1.0, -1.0]])
    m = torch.ones(1, 3)
    loss, frac = policy_loss(lp, old, adv, m, 0.2)
    # per token: -min(1.5, 1.2) = -1.2; -min(0.5, 0.8) = -0.5; -min(-0.5, -0.8) = 0.8
    assert torch.isclose(loss, torch.tensor((-1.2 - 0.5 + 0.8) / 3))
    assert torch.isclose(frac, torch.tensor(2 / 3))
    v = value_loss(torch.tensor([[1.0]]), torch.tensor([[0.5]]), torch.tensor([[2.0]]), torch.ones(1, 1), 0.2)
    assert torch.isclose(v, torch.tensor(0.5 * 1.69))
    # Dr. GRPO aggregation: token sums over a constant, not per-sequence means
    per_tok = torch.tensor([[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]])
    pm = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert torch.isclose(aggregate(per_tok, pm, "seq_mean_token_mean"), torch.tensor((1.5 + 3.0) / 2))
    assert torch.isclose(aggregate(per_tok, pm, "token_mean"), torch.tensor(2.0))
    assert torch.isclose(aggregate(per_tok, pm, "seq_mean_token_sum_norm", norm=10), torch.tensor((0.3 + 0.3) / 2))
    with pytest.raises(ValueError, match="valid"):
        aggregate(per_tok, pm, "nope")


def test_entropy_uniform_and_peaked():
    ent = entropy_from_logits(torch.tensor([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]]))
    assert torch.allclose(ent, torch.tensor([math.log(4), 0.0]), atol=1e-5)


def test_pack_channel_rewards():
    channels = [RewardChannel("correctness", "sparse", 1.0), RewardChannel("repetition", "dense", 0.99)]
    rows = {"correctness": [np.array([0.0, 1.0]), np.array([2.0])], "repetition": [np.array([-0.1, 0.0]), np.array([0.0])]}
    t = pack_channel_rewards(rows, channels, [2, 1], 3)
    assert t.shape == (2, 3, 2)
    assert t[0, :, 0].tolist() == [0.0, 1.0, 0.0] and t[1, 0, 0] == 2.0
    with pytest.raises(ValueError, match="rewards for"):
        pack_channel_rewards(rows, channels, [3, 1], 3)


# ---------------------------------------------------------------- against the official transcription
@pytest.mark.parametrize("seed", range(5))
def test_ppo_multi_gamma_matches_official(seed):
    mask, logp, ref, values, r = _random_rollout(seed)
    lengths = mask.sum(1).long().tolist()
    gammas = [1.0, 0.99]
    kl_ref = ref_compute_approx_kl(logp, ref, action_mask=mask)
    reward_ref = ref_compute_reward(r, 0.01, kl_ref, action_mask=mask, reward_clip_range=(-10, 10))
    adv_ref, ret_ref = ref_get_advantages_and_returns(values, reward_ref, mask, gammas, 1.0)
    norm_ref = ref_normalize([adv_ref[i, :n] for i, n in enumerate(lengths)], [mask[i, :n] for i, n in enumerate(lengths)])

    kl = approx_kl(logp, ref, mask, "k1")
    rew = token_rewards(r, mask, kl=kl, kl_coef=0.01, clip=10.0)
    adv, ret = gae_advantages(values, rew, mask, gammas, 1.0)
    white = whiten(adv, mask)
    assert torch.allclose(kl, kl_ref)
    assert torch.allclose(ret * mask, ret_ref * mask, atol=1e-5)
    assert torch.allclose(adv * mask, adv_ref * mask, atol=1e-5)
    for i, n in enumerate(lengths):
        assert torch.allclose(white[i, :n], norm_ref[i], atol=1e-4)


@pytest.mark.parametrize("seed", range(3))
def test_ppo_single_gamma_gae_matches_official(seed):
    """One sparse channel, gamma 0.99, lambda 0.95: the official 1-D reward path (scatter at the last token)."""
    mask, logp, ref, values, r = _random_rollout(seed, channels=1)
    lengths = mask.sum(1).long().tolist()
    seq_r = torch.tensor([float(r[i, n - 1, 0]) for i, n in enumerate(lengths)])
    kl_ref = ref_compute_approx_kl(logp, ref, action_mask=mask)
    reward_ref = ref_compute_reward(seq_r, 0.05, kl_ref, action_mask=mask, reward_clip_range=(-10, 10))
    adv_ref, ret_ref = ref_get_advantages_and_returns(values, reward_ref, mask, [0.99], 0.95)
    rew = token_rewards(r, mask, kl=approx_kl(logp, ref, mask), kl_coef=0.05, clip=10.0)
    adv, ret = gae_advantages(values, rew, mask, [0.99], 0.95)
    assert torch.allclose(adv * mask, adv_ref * mask, atol=1e-5)
    assert torch.allclose(ret * mask, ret_ref * mask, atol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_ppo_one_gamma_two_channels_clips_the_sum_as_official(seed):
    """Official --gamma 0.99 with two reward functions: cli/train_ppo_ray.py::reward_fn sums them
    (``torch.stack(rewards).sum(dim=0)``), compute_reward clips the (B, T) sum and adds the whole KL,
    then the single-gamma GAE. Ours: ``sum_channels=True`` (reward.repetition.gamma: null)."""
    mask, logp, ref, values, r = _random_rollout(seed)
    r = r.clone()
    r[..., 1] = r[..., 1] - 5.0 * mask  # push sums beyond the clip where the sparse reward is large
    kl_ref = ref_compute_approx_kl(logp, ref, action_mask=mask)
    reward_ref = ref_compute_reward(r.sum(dim=-1), 0.01, kl_ref, action_mask=mask, reward_clip_range=(-10, 10))
    adv_ref, ret_ref = ref_get_advantages_and_returns(values, reward_ref, mask, [0.99], 0.95)
    rew = token_rewards(r, mask, kl=approx_kl(logp, ref, mask), kl_coef=0.01, clip=10.0, sum_channels=True)
    assert rew.shape[-1] == 1 and torch.allclose(rew[..., 0], reward_ref * mask, atol=1e-6)
    adv, ret = gae_advantages(values, rew, mask, [0.99], 0.95)
    assert torch.allclose(adv * mask, adv_ref * mask, atol=1e-5)
    per_channel = token_rewards(r, mask, kl=approx_kl(logp, ref, mask), kl_coef=0.01, clip=10.0).sum(-1)
    assert not torch.allclose(per_channel, reward_ref * mask, atol=1e-3)  # the case differs from clipping each


@pytest.mark.parametrize("seed", range(3))
def test_reinforce_matches_official(seed):
    mask, logp, ref, _values, r = _random_rollout(seed)
    kl_ref = ref_compute_approx_kl(logp, ref, action_mask=mask, use_kl_estimator_k3=True)
    reward_ref = ref_compute_reward(r, 0.02, kl_ref, action_mask=mask, reward_clip_range=(-10, 10))
    ret_ref = ref_get_cumulative_returns(reward_ref, mask, [0.999, 0.9])
    kl = approx_kl(logp, ref, mask, "k3")
    assert torch.allclose(kl, kl_ref, atol=1e-6)
    ret = reinforce_returns(token_rewards(r, mask, kl=kl, kl_coef=0.02, clip=10.0), mask, [0.999, 0.9])
    assert torch.allclose(ret * mask, ret_ref * mask, atol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_losses_match_official(seed):
    mask, logp, ref, values, _r = _random_rollout(seed)
    g = torch.Generator().manual_seed(100 + seed)
    old = logp + torch.randn(logp.shape, generator=g) * 0.3
    adv = torch.randn(logp.shape, generator=g)
    loss, _ = policy_loss(logp, old, adv, mask, 0.2)
    assert torch.isclose(loss, ref_policy_loss(logp, old, adv, mask, 0.2), atol=1e-6)
    new_v = values + torch.randn(values.shape, generator=g) * 0.5
    ret = torch.randn(values.shape, generator=g)
    assert torch.isclose(value_loss(new_v, values, ret, mask, 0.2), ref_value_loss(new_v, values, ret, mask, 0.2), atol=1e-6)
