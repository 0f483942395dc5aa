"""``sdpa_varlen``: packed-sequence attention on CPU at the cost of the samples, not of the row.

With plain ``sdpa``, a packed row of ``T`` tokens is attended with a dense ``T x T`` block-diagonal
mask: the kernel computes every cross-sample score and then masks it (cost ~ ``T^2``). On GPU,
``flash_attention_2`` takes ``cu_seq_lens`` and runs each sample's causal block only (cost ~
``sum(l_i^2)``). This registers the same varlen behaviour for CPU as a transformers attention
implementation: given ``cu_seq_lens_q`` (passed by :meth:`longcot.sft.packing.MicroBatch.model_inputs`)
it runs ``scaled_dot_product_attention(is_causal=True)`` per sample; without them (generation,
padded batches) it is exactly transformers' ``sdpa``. Masks are built as for ``sdpa``.

Registered through transformers' public ``AttentionInterface`` / ``AttentionMaskInterface``;
import this module (the SFT recipe does) before loading a model with
``attn_implementation="sdpa_varlen"``.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "sdpa_varlen"


def sdpa_varlen_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                        is_causal=None, **kwargs):
    """``query/key/value``: [batch=1, heads, T, head_dim]; returns [1, T, heads, head_dim] like sdpa."""
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    bounds = cu.tolist()
    gqa = query.shape[1] != key.shape[1]
    drop = dropout if module.training else 0.0
    out = torch.cat([
        torch.nn.functional.scaled_dot_product_attention(
            query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], is_causal=True, dropout_p=drop, scale=scaling,
            enable_gqa=gqa)
        for s, e in zip(bounds[:-1], bounds[1:]) if e > s
    ], dim=2)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, sdpa_varlen_forward)
AttentionMaskInterface.register(NAME, sdpa_mask)


def resolve_attn(attn: str, device: torch.device, fallback: str = "sdpa") -> str:
    """``auto``: ``flash_attention_2`` on CUDA when flash_attn is importable, else ``fallback``
    (SFT's packed rows: ``sdpa_varlen``; RL's padded batches: ``sdpa``)."""
    if attn != "auto":
        return attn
    if device.type == "cuda":
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            pass
    return fallback
