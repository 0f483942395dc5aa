"""Advantages of the four estimators on one loop (``algorithm.advantage``).

* ``gae`` (PPO, the paper's): with one distinct gamma, GAE(gamma, lambda) on the summed channel
  rewards (official ``get_advantages_and_returns``, single-gamma branch); with several gammas the
  official code supports only lambda = 1 (``assert lambd == 1``): returns = sum of per-channel
  discounted returns, advantages = returns - values. We raise a ValueError for lambda < 1 there.
  :func:`per_channel_gae` (``algorithm.value_heads=per_channel``, beyond the official code) lifts
  that restriction with one value head per channel.
* ``reinforce`` (REINFORCE++): advantages = the per-channel discounted returns of the rewards with the
  token-level KL penalty in them (official ``get_cumulative_returns``), then whitened over the batch.
* ``group`` (GRPO) and ``dr_group`` (Dr. GRPO): samples of one prompt form a group (rows
  ``[g*G, (g+1)*G)``). The per-token return ``R_t`` is the sum of each channel's discounted
  reward-to-go with **its own gamma** (OpenRLHF forces gamma = 1 for group estimators; we do not);
  the baseline is the group mean of the sequence returns ``R_0`` (the return from the first token),
  so ``A_t = (R_t - mean_g R_0) / (std_g R_0 + eps)`` (GRPO; unbiased std) or ``R_t - mean_g R_0``
  (Dr. GRPO: no std). For a sparse reward with gamma = 1, ``R_t = R_0 = r`` and this is exactly
  GRPO's ``(r - mean) / std`` broadcast over tokens.

:func:`whiten` is the official replay-buffer normalisation (``NaiveReplayBuffer.normalize``):
mean and biased variance over every unmasked token of the whole rollout buffer,
``(x - mean) * rsqrt(max(var, 1e-8))``.
"""

from __future__ import annotations

from typing import Sequence

import torch

from longcot.rl.returns import channel_returns

ADVANTAGE_ESTIMATORS = ("gae", "reinforce", "group", "dr_group")


def gae_advantages(
    values: torch.Tensor,
    rewards: torch.Tensor,
    mask: torch.Tensor,
    gammas: Sequence[float],
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(advantages, returns)``, both ``(B, T)``, from values ``(B, T)`` and masked rewards ``(B, T, C)``."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"algorithm.lam must be in [0, 1], got {lam}")
    m = mask.to(torch.float32)
    v = values.float() * m
    distinct = sorted({float(g) for g in gammas})
    if len(distinct) == 1:
        g = distinct[0]
        r = rewards.float().sum(dim=-1) * m
        next_v = torch.cat([v[:, 1:], torch.zeros_like(v[:, :1])], dim=1)
        delta = r + g * next_v - v
        # A_t = sum_k (g * lam)^k delta_{t+k}: a discounted reward-to-go of the TD errors.
        adv = channel_returns(delta.unsqueeze(-1), [g * lam])
        return adv, adv + v
    if lam != 1.0:
        raise ValueError(
            f"algorithm.lam={lam}: several reward channel gammas {list(gammas)} need lam = 1 "
            "(as the official code asserts); set algorithm.lam=1, give every channel the same gamma, or use "
            "algorithm.value_heads=per_channel (one value head per channel: per_channel_gae)"
        )
    returns = channel_returns(rewards.float() * m.unsqueeze(-1), gammas)
    return returns - v, returns


def per_channel_gae(
    values: torch.Tensor,
    rewards: torch.Tensor,
    mask: torch.Tensor,
    gammas: Sequence[float],
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE per reward channel, each against its own value head: ``(advantages (B, T), returns (B, T, C))``.

    ``values`` ``(B, T, C)``: head ``c`` estimates channel ``c``'s discounted return (a ``(B, T)``
    tensor is accepted for one channel; ``returns`` then is ``(B, T)`` too: always ``values``' shape).
    ``rewards`` ``(B, T, C)``. Channel ``c`` runs the official single-gamma GAE (``experience_maker.py::
    get_advantages_and_returns``) with its own ``gammas[c]`` and the common ``lam``:
    ``delta^c_t = r^c_t + gamma_c V^c_{t+1} - V^c_t``, ``A^c_t = sum_k (gamma_c lam)^k delta^c_{t+k}``;
    the advantages are ``sum_c A^c`` and ``returns[..., c] = A^c + V^c`` is head ``c``'s value target.

    This goes beyond the official code, which with several gammas asserts ``lambd == 1`` and uses one
    scalar head. It is sound: the objective is the sum of the channels' discounted returns (as in the
    official code), and by linearity the sum of per-channel advantage estimators is an advantage
    estimator of that sum (each A^c the usual GAE bias/variance trade-off for its own channel). With
    ``lam = 1`` each ``A^c_t`` telescopes to ``G^c_t - V^c_t``, so the sum equals the official
    ``returns_sum - values_sum`` with the single head's value ``V = sum_c V^c``; with equal gammas it
    equals single-gamma GAE on the summed rewards with ``V = sum_c V^c``.
    """
    if rewards.dim() != 3 or rewards.shape[-1] != len(gammas):
        raise ValueError(f"rewards of shape {tuple(rewards.shape)} do not match {len(gammas)} channel gammas")
    squeeze = values.dim() == 2 and rewards.shape[-1] == 1
    v = values.unsqueeze(-1) if squeeze else values
    if v.shape != rewards.shape:
        raise ValueError(
            f"per-channel values of shape {tuple(values.shape)} do not match rewards {tuple(rewards.shape)}: "
            "algorithm.value_heads=per_channel needs a critic with one head per reward channel"
        )
    advs, rets = [], []
    for c, g in enumerate(gammas):
        adv_c, ret_c = gae_advantages(v[..., c], rewards[..., c : c + 1], mask, [float(g)], lam)
        advs.append(adv_c)
        rets.append(ret_c)
    returns = torch.stack(rets, dim=-1)
    return torch.stack(advs, dim=-1).sum(dim=-1), returns.squeeze(-1) if squeeze else returns


def reinforce_returns(rewards: torch.Tensor, mask: torch.Tensor, gammas: Sequence[float]) -> torch.Tensor:
    """Sum over channels of each channel's discounted reward-to-go, ``(B, T)``, masked."""
    m = mask.to(torch.float32)
    return channel_returns(rewards.float() * m.unsqueeze(-1), gammas) * m


def group_advantages(
    returns: torch.Tensor,
    mask: torch.Tensor,
    group_size: int,
    *,
    std_normalize: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
    """GRPO (``std_normalize``) / Dr. GRPO advantages from per-token returns ``(B, T)``; see the module doc."""
    b = returns.shape[0]
    if group_size < 1 or b % group_size:
        raise ValueError(f"{b} samples do not split into groups of algorithm.samples_per_prompt={group_size}")
    seq = returns[:, 0].float().view(-1, group_size)
    mean = seq.mean(dim=1, keepdim=True)
    centred = returns.float().view(-1, group_size, returns.shape[1]) - mean.unsqueeze(-1)
    if std_normalize:
        std = seq.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(mean)
        centred = centred / (std.unsqueeze(-1) + eps)
    return centred.view_as(returns) * mask.to(torch.float32)


def whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Official buffer whitening over all unmasked tokens: ``(x - mean) * rsqrt(max(var, 1e-8))``, masked.
    With several processes the mean and variance are over every rank's tokens (all-reduced, as
    OpenRLHF's distributed ``normalize``)."""
    from longcot.training.distributed import all_reduce_sum

    m = mask.to(torch.float32)
    xf = x.float()
    total, count = all_reduce_sum([float((xf * m).sum()), float(m.sum())])
    if count == 0:
        raise ValueError("cannot whiten advantages of an empty rollout (no response tokens)")
    mean = total / count
    (sq,) = all_reduce_sum([float(((xf - mean).pow(2) * m).sum())])
    var = max(sq / count, 1e-8)
    return (xf - mean) * (var ** -0.5) * m
