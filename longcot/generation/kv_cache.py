"""A KV cache that grows by doubling: transformers' ``DynamicCache`` without the copy per token.

transformers' :class:`~transformers.cache_utils.DynamicLayer` appends each step's keys and values with
``torch.cat``, which copies the whole cache every decoding step (quadratic in the response length; on
the tiny model on CPU, a quarter of the sampling time). :class:`GrowingLayer` writes each step into a
buffer that doubles when full and hands attention the filled prefix as a view, so the keys and values
attention sees hold the same numbers in the same order: samples and log-probs are bit-for-bit those of
``DynamicCache`` (``tests/test_kv_cache.py`` checks the completions of a padded, sampled batch).

Used by :class:`longcot.generation.hf.HFGenerator` for models whose layers all use full attention
(:func:`growing_cache_for`); a model with sliding-window or linear-attention layers keeps
transformers' own cache. The layer methods that replace ``keys``/``values`` wholesale (crop, beam
reordering, offloading) are inherited; the buffer is then dropped and rebuilt from the new tensors on
the next update.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer, get_layer_types_and_kwargs

_MIN_CAPACITY = 64


class GrowingLayer(DynamicLayer):
    """:class:`DynamicLayer` whose ``keys``/``values`` are views of a doubling buffer."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None

    def _owns(self) -> bool:
        """Whether ``keys``/``values`` are still the buffer's prefix (an inherited method may have
        replaced them: crop, batch selection, offloading)."""
        if self._buffers is None:
            return False
        kb, vb = self._buffers
        n = self.keys.shape[-2]
        return (self.keys.data_ptr() == kb.data_ptr() and self.values.data_ptr() == vb.data_ptr()
                and self.keys.shape[:-2] == kb.shape[:-2] and n <= kb.shape[-2]
                and self.keys.stride() == kb.stride())

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        cached = self.keys.shape[-2] if self.keys.numel() else 0
        n = cached + key_states.shape[-2]
        if not self._owns() or n > self._buffers[0].shape[-2]:
            old = self._buffers[0].shape[-2] if self._buffers is not None else 0
            cap = max(n, 2 * old, _MIN_CAPACITY)
            kb = key_states.new_empty((*key_states.shape[:-2], cap, key_states.shape[-1]))
            vb = value_states.new_empty((*value_states.shape[:-2], cap, value_states.shape[-1]))
            if cached:
                kb[..., :cached, :].copy_(self.keys)
                vb[..., :cached, :].copy_(self.values)
            self._buffers = (kb, vb)
        kb, vb = self._buffers
        kb[..., cached:n, :].copy_(key_states)
        vb[..., cached:n, :].copy_(value_states)
        self.keys, self.values = kb[..., :n, :], vb[..., :n, :]
        return self.keys, self.values


class GrowingCache(DynamicCache):
    """A :class:`DynamicCache` of :class:`GrowingLayer`, one per decoder layer."""

    def __init__(self, num_layers: int) -> None:
        Cache.__init__(self, layers=[GrowingLayer() for _ in range(num_layers)])


def growing_cache_for(model: Any) -> GrowingCache | None:
    """A fresh :class:`GrowingCache` for ``model``'s next ``generate`` call, or ``None`` (transformers'
    default cache) unless every cached layer is full attention (as ``DynamicCache(config=...)`` reads
    the layer types: ``transformers.cache_utils.get_layer_types_and_kwargs``)."""
    layer_types, _ = get_layer_types_and_kwargs(model.config.get_text_config(decoder=True))
    if not layer_types or any(t != "full_attention" for t in layer_types):
        return None
    return GrowingCache(len(layer_types))
