"""Per-token KL estimators between the policy and the frozen reference (Schulman, "Approximating KL
Divergence"; official ``openrlhf/models/utils.py::compute_approx_kl``).

With ``log_ratio = log pi(a) - log pi_ref(a)`` at the sampled token ``a``:

* ``k1``: ``log_ratio`` (unbiased, can be negative; the paper's runs, ``use_kl_estimator_k3`` off);
* ``k2``: ``log_ratio**2 / 2`` (biased, non-negative);
* ``k3``: ``exp(-log_ratio) - 1 + log_ratio`` (unbiased, non-negative; GRPO's KL loss).

The log ratio is multiplied by the action mask first, as the official code does, so padding gives 0.
"""

from __future__ import annotations

from typing import Optional

import torch

KL_ESTIMATORS = ("k1", "k2", "k3")


def approx_kl(
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    estimator: str = "k1",
) -> torch.Tensor:
    """Per-token KL estimate, same shape as ``logprobs``; 0 where ``mask`` is 0."""
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"algorithm.kl_estimator: unknown value {estimator!r}; valid: {', '.join(KL_ESTIMATORS)}")
    log_ratio = logprobs.float() - ref_logprobs.float()
    if mask is not None:
        log_ratio = log_ratio * mask
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio.pow(2)
    return torch.exp(-log_ratio) - 1.0 + log_ratio
