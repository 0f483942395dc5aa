"""``sdpa_varlen``: packed-sequence attention on CPU at the cost of the samples, not of the row.

With plain ``sdpa``, a packed row of ``T`` tokens is attended with a dense ``T x T`` block-diagonal
mask: the kernel computes every cross-sample score and then masks it (cost ~ ``T^2``). On GPU,
``flash_attention_2`` takes ``cu_seq_lens`` and runs each sample's causal block only (cost ~
``sum(l_i^2)``). This registers the same varlen behaviour for CPU as a transformers attention
implementation: given ``cu_seq_lens_q`` (passed by :meth:`longcot.sft.packing.MicroBatch.model_inputs`)
it runs ``scaled_dot_product_attention(is_causal=True)`` per sample; without them (generation,
padded batches) it is exactly transformers' ``sdpa``.

Two costs of the packed row are avoided, neither changing a value: the samples are cut with one
``split`` (its backward is one ``cat``; slicing each sample's ``q/k/v`` instead builds a zero-filled
gradient of the whole row per sample), and the ``T x T`` mask that transformers builds for a one-row
input is deferred until an attention call without ``cu_seq_lens`` asks for it (the packed path never
does). ``tests/test_sft_packing.py`` checks the packed row's logits and gradients against each
sample alone.

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


class DeferredMask:
    """A one-row input's mask, built (once) only if an attention call without ``cu_seq_lens`` needs it."""

    def __init__(self, **mask_kwargs):
        self._kwargs = mask_kwargs
        self._built = False
        self._mask: torch.Tensor | None = None

    def get(self) -> torch.Tensor | None:
        if not self._built:
            self._mask, self._built = sdpa_mask(**self._kwargs), True
        return self._mask


def varlen_mask(batch_size: int, q_length: int, kv_length: int, attention_mask=None, **kwargs):
    """``sdpa_mask``, deferred for a one-row input called without a mask (a packed SFT row, or a plain
    forward of one sequence); built at once otherwise (a 2-D mask given, as generation gives; decoding)."""
    kwargs.update(batch_size=batch_size, q_length=q_length, kv_length=kv_length, attention_mask=attention_mask)
    if batch_size == 1 and attention_mask is None and q_length == kv_length and q_length > 1:
        return DeferredMask(**kwargs)
    return sdpa_mask(**kwargs)


def sdpa_varlen_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                        is_causal=None, **kwargs):
    """``query/key/value``: [batch=1, heads, T, head_dim]; returns [1, T, heads, head_dim] like sdpa."""
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        if isinstance(attention_mask, DeferredMask):
            attention_mask = attention_mask.get()
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    bounds = cu.tolist()
    if bounds[0] != 0 or bounds[-1] != query.shape[2]:
        raise ValueError(f"sdpa_varlen: cu_seq_lens_q spans [{bounds[0]}, {bounds[-1]}], the row has "
                         f"{query.shape[2]} tokens")
    lens = [e - s for s, e in zip(bounds[:-1], bounds[1:])]
    gqa = query.shape[1] != key.shape[1]
    drop = dropout if module.training else 0.0
    out = torch.cat([
        torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=drop, scale=scaling,
                                                         enable_gqa=gqa)
        for q, k, v, n in zip(query.split(lens, dim=2), key.split(lens, dim=2), value.split(lens, dim=2), lens)
        if n > 0
    ], dim=2)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, sdpa_varlen_forward)
AttentionMaskInterface.register(NAME, varlen_mask)


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
