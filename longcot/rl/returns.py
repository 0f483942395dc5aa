"""Per-token, per-channel rewards and their discounted returns (paper §4.6; official
``openrlhf/models/utils.py::compute_reward`` and ``experience_maker.py::get_advantages_and_returns``).

Each reward channel (:func:`longcot.rewards.channels.reward_channels`: the sparse correctness or
cosine channel, the dense repetition channel) becomes one slice ``[..., c]`` of a ``(B, T, C)``
tensor over response tokens. The official recipe, reproduced here:

1. every channel's token rewards are clipped to ``(-clip, clip)`` (``--reward_clip_range -10 10``);
2. the KL penalty ``-kl_coef * KL_t`` is **divided equally among the C channels and added to each**
   (``kl_reward.unsqueeze(-1) / r.shape[-1]``), the KL itself not clipped;
3. each channel is discounted with its own gamma and the channels' returns are summed
   (``--gamma 1,0.99``: returns per channel, then ``sum(dim=-1)``).

With one gamma for several channels (``reward.repetition.gamma: null``, official ``--gamma G`` with
several reward functions) the official ``reward_fn`` sums the channels first, so step 1 clips the
**sum** and the KL is added to it whole (``sum_channels=True``: one ``(B, T, 1)`` channel).

Everything is multiplied by the action mask, so right padding carries no reward.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import torch

from longcot.rewards.channels import RewardChannel, discounted_returns


def pack_channel_rewards(
    channel_rewards: Mapping[str, Sequence[np.ndarray]],
    channels: Sequence[RewardChannel],
    lengths: Sequence[int],
    width: int,
) -> torch.Tensor:
    """``(B, width, C)`` float32 tensor from :func:`~longcot.rewards.channels.compute_channel_rewards`.

    Sample ``i``'s arrays (length ``lengths[i]``, one value per response token) fill ``[i, :len]``;
    the rest is zero padding. Channel order is ``channels``'.
    """
    out = torch.zeros(len(lengths), width, len(channels), dtype=torch.float32)
    for c, ch in enumerate(channels):
        rows = channel_rewards[ch.name]
        if len(rows) != len(lengths):
            raise ValueError(f"channel {ch.name!r} has {len(rows)} samples, expected {len(lengths)}")
        for i, (row, n) in enumerate(zip(rows, lengths)):
            row = np.asarray(row, dtype=np.float64)
            if row.shape != (n,):
                raise ValueError(f"channel {ch.name!r}, sample {i}: {row.shape[0]} rewards for {n} tokens")
            if n > width:
                raise ValueError(f"sample {i} has {n} tokens, wider than {width}")
            out[i, :n, c] = torch.from_numpy(row).float()
    return out


def token_rewards(
    channel_rewards: torch.Tensor,
    mask: torch.Tensor,
    *,
    kl: Optional[torch.Tensor] = None,
    kl_coef: float = 0.0,
    clip: Optional[float] = 10.0,
    sum_channels: bool = False,
) -> torch.Tensor:
    """Clipped channel rewards plus an equal share of the KL penalty per channel, masked: ``(B, T, C)``.

    ``channel_rewards``: ``(B, T, C)``; ``kl``: ``(B, T)`` per-token KL estimate (or None: no
    penalty, e.g. GRPO puts the KL in the loss); ``clip``: rewards are clamped to ``[-clip, clip]``;
    ``sum_channels``: the channels are summed first and the sum clipped (one gamma): ``(B, T, 1)``.
    """
    if channel_rewards.dim() != 3:
        raise ValueError(f"channel_rewards must be (batch, tokens, channels), got shape {tuple(channel_rewards.shape)}")
    r = channel_rewards.float()
    if sum_channels:
        r = r.sum(dim=-1, keepdim=True)
    if clip is not None:
        if clip <= 0:
            raise ValueError(f"algorithm.reward_clip must be > 0, got {clip}")
        r = r.clamp(min=-clip, max=clip)
    if kl is not None and kl_coef > 0:
        r = r + (-kl_coef * kl.float() / r.shape[-1]).unsqueeze(-1)
    return r * mask.unsqueeze(-1).to(r.dtype)


def channel_returns(rewards: torch.Tensor, gammas: Sequence[float]) -> torch.Tensor:
    """``(B, T)``: the sum over channels of each channel's reward-to-go with its own gamma.

    ``rewards`` is ``(B, T, C)`` (already masked); channel ``c`` is discounted with ``gammas[c]`` via
    :func:`longcot.rewards.channels.discounted_returns` (float64), the result cast back to float32.
    """
    if rewards.dim() != 3 or rewards.shape[-1] != len(gammas):
        raise ValueError(f"rewards of shape {tuple(rewards.shape)} do not match {len(gammas)} gammas")
    r = rewards.detach().cpu().double().numpy()
    total = np.zeros(r.shape[:2], dtype=np.float64)
    for c, g in enumerate(gammas):
        total += discounted_returns(r[..., c], float(g))
    return torch.from_numpy(total).to(dtype=torch.float32, device=rewards.device)
