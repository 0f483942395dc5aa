"""PPO-family losses (official ``openrlhf/models/loss.py``: ``PolicyLoss``, ``ValueLoss``) and entropy.

Token aggregation (``algorithm.loss_aggregation``):

* ``seq_mean_token_mean`` (OpenRLHF, the paper's): mean over each response's tokens, then over
  responses -- every response weighs the same whatever its length;
* ``token_mean`` (DAPO's token-level loss): the token sum divided by ``norm`` = the number of loss
  tokens of the whole optimizer step, over every micro batch and rank (verl ``agg_loss(token-mean,
  batch_num_tokens=...)``, TRL ``loss_type="dapo"``: ``num_items_in_batch``); without ``norm`` the
  mean over the given tokens;
* ``seq_mean_token_sum_norm`` (Dr. GRPO): each response's token sum divided by a constant (the
  generation limit), then the mean over responses -- no length normalisation.

The 2025 knobs of :func:`policy_loss` (``longcot.rl.config.AlgorithmConfig``), each transcribed from
verl @ b178a3c ``verl/trainer/ppo/core_algos.py`` and checked against it in
``tests/test_rl_length_control.py``:

* clip-higher (DAPO, arXiv 2503.14476): ``clip(ratio, 1 - eps_low, 1 + eps_high)``
  (``compute_policy_loss_vanilla``; verl's dual-clip bound ``clip_ratio_c`` is not used, as OpenRLHF's
  default ``dual_clip=None``);
* ``ratio_level="sequence"`` (GSPO, arXiv 2507.18071): the length-normalised sequence ratio
  ``s_i = exp(mean_t (log pi - log pi_old))`` in the GSPO-token form ``s_it = sg[s_i] pi_t / sg[pi_t]``
  (``compute_policy_loss_gspo``: the log ratio clamped at 10), so token-level advantages (a channel with
  gamma < 1) stay well defined; with one advantage per response its gradient is GSPO's;
* ``is_weights`` (truncated importance sampling, TIS): each token's loss times the detached weight
  ``min(exp(log pi_old - log pi_rollout), cap)`` (:func:`tis_weights`; verl ``rollout_corr_helper.py::
  compute_rollout_correction_weights`` with ``rollout_is="token"``, applied as ``pg_losses *
  rollout_is_weights``).
"""

from __future__ import annotations

from typing import Optional

import torch

LOSS_AGGREGATIONS = ("seq_mean_token_mean", "token_mean", "seq_mean_token_sum_norm")
RATIO_LEVELS = ("token", "sequence")
GSPO_LOG_RATIO_MAX = 10.0  # verl compute_policy_loss_gspo: torch.clamp(log_seq_importance_ratio, max=10.0)


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
        if norm is None:
            return masked_mean(loss, mask)
        return (loss * mask.to(loss.dtype)).sum() / max(float(norm), 1.0)
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
    clip_high: Optional[float] = None,
    aggregation: str = "seq_mean_token_mean",
    norm: Optional[float] = None,
    ratio_level: str = "token",
    is_weights: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped surrogate ``-min(rho A, clip(rho, 1-eps_low, 1+eps_high) A)``; returns ``(loss, clip fraction)``.

    ``clip`` is eps_low and ``clip_high`` eps_high (None: ``clip``); ``ratio_level`` and
    ``is_weights``: see the module doc. The clip fraction is the share of tokens where the clipped
    term is the smaller (active) one.
    """
    if ratio_level == "token":
        ratio = (logprobs - old_logprobs).exp()
    elif ratio_level == "sequence":
        m = mask.to(logprobs.dtype)
        seq = ((logprobs - old_logprobs) * m).sum(-1) / m.sum(-1).clamp(min=1)
        log_ratio = logprobs - logprobs.detach() + seq.detach().unsqueeze(-1)
        ratio = log_ratio.clamp(max=GSPO_LOG_RATIO_MAX).exp()
    else:
        raise ValueError(f"algorithm.ratio_level: unknown value {ratio_level!r}; valid: {', '.join(RATIO_LEVELS)}")
    high = clip if clip_high is None else clip_high
    surr1 = ratio * advantages
    surr2 = ratio.clamp(1 - clip, 1 + high) * advantages
    per_token = -torch.min(surr1, surr2)
    if is_weights is not None:
        per_token = per_token * is_weights.detach()
    loss = aggregate(per_token, mask, aggregation, norm)
    clipped = masked_mean(torch.lt(surr2, surr1).float(), mask).detach()
    return loss, clipped


def tis_weights(old_logprobs: torch.Tensor, rollout_logprobs: torch.Tensor, cap: float) -> torch.Tensor:
    """Truncated importance-sampling weights ``min(exp(log pi_old - log pi_rollout), cap)``, detached
    (verl ``compute_rollout_correction_weights``, token level: the log ratio clamped to +-20 first)."""
    if cap <= 0:
        raise ValueError(f"algorithm.rollout_is_cap must be > 0, got {cap}")
    log_ratio = (old_logprobs.float() - rollout_logprobs.float()).clamp(-20.0, 20.0)
    return log_ratio.exp().clamp(max=cap).detach()


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


def pack_rollout_logprobs(
    rollout_logprobs: "list[Optional[tuple[float, ...]]]",
    sampled_ids: "list[tuple[int, ...]]",
    response_ids: torch.Tensor,
    old_logprobs: torch.Tensor,
) -> torch.Tensor:
    """``(B, R)`` log-probs of the rollout engine for the TIS weights: row ``i`` holds the engine's
    log-probs of its sampled tokens; where the trained token is not the sampled one (a last token made
    EOS, ``algorithm.truncated_eos``) or past the response, the trainer's own ``old_logprobs`` (weight 1)."""
    out = old_logprobs.detach().clone()
    for i, (lps, ids) in enumerate(zip(rollout_logprobs, sampled_ids)):
        if lps is None or len(lps) != len(ids):
            raise RuntimeError("algorithm.rollout_is: the rollout engine returned no log-probs for a response "
                               f"({'none' if lps is None else len(lps)} for {len(ids)} tokens)")
        n = len(ids)
        lp = torch.tensor(lps, dtype=out.dtype, device=out.device)
        same = response_ids[i, :n] == torch.tensor(ids, dtype=response_ids.dtype, device=response_ids.device)
        out[i, :n] = torch.where(same, lp, out[i, :n])
    return out
