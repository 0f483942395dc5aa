"""PPO-family losses (official ``openrlhf/models/loss.py``: ``PolicyLoss``, ``ValueLoss``) and entropy.

Token aggregation (``algorithm.loss_aggregation``):

* ``seq_mean_token_mean`` (OpenRLHF, the paper's): mean over each response's tokens, then over
  responses -- every response weighs the same whatever its length;
* ``token_mean``: mean over every token of the micro batch;
* ``seq_mean_token_sum_norm`` (Dr. GRPO): each response's token sum divided by a constant (the
  generation limit), then the mean over responses -- no length normalisation.
"""

from __future__ import annotations

from typing import Optional

import torch

LOSS_AGGREGATIONS = ("seq_mean_token_mean", "token_mean", "seq_mean_token_sum_norm")


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: Optional[int] = None) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is 1 (along ``dim``, or all)."""
    m = mask.to(x.dtype)
    if dim is None:
        return (x * m).sum() / m.sum().clamp(min=1)
    return (x * m).sum(dim=dim) / m.sum(dim=dim).clamp(min=1)


def aggregate(loss: torch.Tensor, mask: torch.Tensor, how: str, norm: Optional[int] = None) -> torch.Tensor:
    """Reduce a per-token ``(B, T)`` loss to a scalar (see the module doc)."""
    if how == "seq_mean_token_mean":
        return masked_mean(loss, mask, dim=-1).mean()
    if how == "token_mean":
        return masked_mean(loss, mask)
    if how == "seq_mean_token_sum_norm":
        if not norm or norm < 1:
            raise ValueError("seq_mean_token_sum_norm needs norm = the generation limit (>= 1)")
        return ((loss * mask.to(loss.dtype)).sum(dim=-1) / float(norm)).mean()
    raise ValueError(f"algorithm.loss_aggregation: unknown value {how!r}; valid: {', '.join(LOSS_AGGREGATIONS)}")


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
    *,
    aggregation: str = "seq_mean_token_mean",
    norm: Optional[int] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped surrogate ``-min(rho A, clip(rho, 1-eps, 1+eps) A)``; returns ``(loss, clip fraction)``.

    The clip fraction is the share of tokens where the clipped term is the smaller (active) one.
    """
    ratio = (logprobs - old_logprobs).exp()
    surr1 = ratio * advantages
    surr2 = ratio.clamp(1 - clip, 1 + clip) * advantages
    loss = aggregate(-torch.min(surr1, surr2), mask, aggregation, norm)
    clipped = masked_mean(torch.lt(surr2, surr1).float(), mask).detach()
    return loss, clipped


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: Optional[float] = 0.2,
) -> torch.Tensor:
    """``0.5 * mean_seq(mean_tok(max((V_clip - R)^2, (V - R)^2)))``; ``V_clip = V_old + clip(V - V_old, +-eps)``
    (official ``ValueLoss``: per-sequence token mean, then the batch mean).

    Per-channel heads (``(B, T, C)`` values, old values and returns; ``mask`` stays ``(B, T)``): each
    channel is clipped and aggregated exactly as above, and the C losses are **summed** -- the heads are
    disjoint parameters, so each gets the gradient it would get as a lone critic of its channel (a
    mean would cut every head's learning rate by C), and the body gets the sum of the heads' gradients.
    ``C = 1`` is the scalar loss.
    """
    if values.shape != returns.shape or old_values.shape != values.shape:
        raise ValueError(
            f"value_loss: values {tuple(values.shape)}, old values {tuple(old_values.shape)} and returns "
            f"{tuple(returns.shape)} must have one shape (per-channel heads: all (B, T, C))"
        )
    if values.dim() == 3:
        per_channel = [value_loss(values[..., c], old_values[..., c], returns[..., c], mask, clip)
                       for c in range(values.shape[-1])]
        return torch.stack(per_channel).sum()
    if clip is not None:
        clipped = old_values + (values - old_values).clamp(-clip, clip)
        loss = torch.max((clipped - returns) ** 2, (values - returns) ** 2)
    else:
        loss = (values - returns) ** 2
    return 0.5 * masked_mean(loss, mask, dim=-1).mean()


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-position entropy ``-sum p log p`` of the softmax over the last axis (float32)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)
