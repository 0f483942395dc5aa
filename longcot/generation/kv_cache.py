"""A KV cache written in place: transformers' ``DynamicCache`` without the copy per token (CPU).

transformers' :class:`~transformers.cache_utils.DynamicLayer` appends each step's keys and values with
``torch.cat``, which copies the whole cache every decoding step (quadratic in the response length; on
the tiny model on CPU, a quarter of the sampling time). :class:`GrowingLayer` writes each step into a
buffer sized for the whole generation (``capacity``: prompt width + token budget; it doubles if that
is ever exceeded) and hands attention the filled prefix as a view, so the keys and values attention
sees hold the same numbers in the same order: on CPU, samples and log-probs are bit-for-bit those of
``DynamicCache`` (``tests/test_kv_cache.py`` checks the completions of a padded, sampled batch).

Used by :class:`longcot.generation.hf.HFGenerator` on CPU for models whose layers all use full
attention (:func:`growing_cache_for`). Elsewhere transformers' own cache stays: on CUDA, attention
given strided views may take another kernel (not checked to give the same bits), and sliding-window
or linear-attention layers need their own cache. The layer methods that replace ``keys``/``values``
with new tensors (batch selection and reordering) are inherited, and the next update rebuilds the
buffer from them; ``crop`` leaves a shorter view of the buffer, whose dropped slots the next update
overwrites.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer, get_layer_types_and_kwargs

_MIN_CAPACITY = 64


class GrowingLayer(DynamicLayer):
    """:class:`DynamicLayer` whose ``keys``/``values`` are views of a preallocated buffer."""

    def __init__(self, capacity: int = 0) -> None:
        super().__init__()
        self.capacity = int(capacity)

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None

    def _owns(self) -> bool:
        """Whether ``keys``/``values`` are still a prefix of the buffer (batch selection and reordering
        replace them with new tensors)."""
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
            cap = max(n, 2 * old, self.capacity, _MIN_CAPACITY)
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

    def __init__(self, num_layers: int, capacity: int = 0) -> None:
        Cache.__init__(self, layers=[GrowingLayer(capacity) for _ in range(num_layers)])


def growing_cache_for(model: Any, capacity: int = 0) -> GrowingCache | None:
    """A fresh :class:`GrowingCache` (``capacity`` positions per layer) for ``model``'s next ``generate``
    call, or ``None`` (transformers' default cache) unless the model is on CPU and every cached layer is
    full attention (as ``DynamicCache(config=...)`` reads the layer types:
    ``transformers.cache_utils.get_layer_types_and_kwargs``)."""
    if next(model.parameters()).device.type != "cpu":
        return None
    layer_types, _ = get_layer_types_and_kwargs(model.config.get_text_config(decoder=True))
    if not layer_types or any(t != "full_attention" for t in layer_types):
        return None
    return GrowingCache(len(layer_types), capacity)
