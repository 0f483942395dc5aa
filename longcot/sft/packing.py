"""Packing: samples of one optimizer step into token buckets, one flattened row per micro-batch,
with no attention across sample boundaries.

How the boundaries are enforced (transformers 5.17, ``masking_utils``):

* sdpa / eager: the causal mask is made block-diagonal from ``position_ids`` that restart at 0 for
  every sample (``find_packed_sequence_indices``) -- but only when ``attention_mask is None`` and
  there is no KV cache (``_preprocess_mask_arguments``: ``position_ids is not None and
  attention_mask is None and past_key_values is None``). ``use_cache`` defaults to True from the
  model config and then a ``DynamicCache`` is created, the check fails silently and every token
  attends to all previous samples of the row. So :meth:`MicroBatch.model_inputs` passes
  ``attention_mask=None`` and ``use_cache=False`` (tested both ways in tests/test_sft_packing.py).
* flash_attention_2 (GPU): the same flattened row with restarting position ids, plus explicit
  ``cu_seq_lens_q/k`` and ``max_length_q/k`` (the varlen kernel's sample boundaries).
* sdpa_varlen (:mod:`longcot.training.attention`, CPU): the same ``cu_seq_lens``; each sample's
  causal block is attended on its own, so the cost is sum(l_i^2) instead of T^2.

The targets are shifted per sample before concatenation (:mod:`longcot.sft.data`), so the last
position of a sample never predicts the next sample's first token.

Buckets: first-fit decreasing over the step's samples (sorted by length, ties by index:
deterministic) into rows of at most ``max_tokens`` tokens. A flattened row has no padding; the
padding fraction (pad tokens / tokens processed) is reported for comparison with padded batching
and is 0 here. ``fill`` is tokens / (rows x max_tokens), the bucket utilisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from longcot.sft.data import IGNORE, TokenizedExample


def first_fit_decreasing(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices of ``lengths`` grouped into bins of total length <= ``max_tokens`` (FFD; deterministic).

    Bins are returned in creation order (longest first sample first); within a bin, indices keep
    the order they were placed in."""
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda k: (-lengths[k], k)):
        n = lengths[i]
        if n > max_tokens:
            raise ValueError(f"a sample of {n} tokens exceeds max_tokens_per_micro_batch={max_tokens}")
        for b, free in enumerate(room):
            if n <= free:
                bins[b].append(i)
                room[b] -= n
                break
        else:
            bins.append([i])
            room.append(max_tokens - n)
    return bins


@dataclass
class MicroBatch:
    """One flattened row of packed samples."""

    input_ids: torch.Tensor  # [1, T]
    position_ids: torch.Tensor  # [1, T], restarting at 0 per sample
    targets: torch.Tensor  # [1, T], shifted labels (IGNORE where no target)
    seq_lens: tuple[int, ...]
    num_targets: int

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[1])

    def to(self, device: torch.device | str) -> "MicroBatch":
        return MicroBatch(self.input_ids.to(device), self.position_ids.to(device), self.targets.to(device),
                          self.seq_lens, self.num_targets)

    def model_inputs(self, attn_implementation: str = "sdpa") -> dict[str, Any]:
        """Forward kwargs that keep samples apart (see the module doc): no mask, no cache."""
        inputs: dict[str, Any] = {"input_ids": self.input_ids, "position_ids": self.position_ids,
                                  "attention_mask": None, "use_cache": False}
        if attn_implementation in ("flash_attention_2", "sdpa_varlen"):
            cu = torch.tensor([0, *torch.tensor(self.seq_lens).cumsum(0).tolist()], dtype=torch.int32,
                              device=self.input_ids.device)
            inputs.update(cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=max(self.seq_lens),
                          max_length_k=max(self.seq_lens))
        return inputs


def pack(samples: Sequence[TokenizedExample]) -> MicroBatch:
    """Concatenate ``samples`` into one row (in the given order)."""
    if not samples:
        raise ValueError("pack() needs at least one sample")
    ids: list[int] = []
    pos: list[int] = []
    tgt: list[int] = []
    for s in samples:
        ids.extend(s.input_ids)
        pos.extend(range(len(s)))
        tgt.extend(s.targets)
    t = lambda xs: torch.tensor([xs], dtype=torch.long)  # noqa: E731
    return MicroBatch(t(ids), t(pos), t(tgt), tuple(len(s) for s in samples), sum(s.num_targets for s in samples))


def pack_step(samples: Sequence[TokenizedExample], max_tokens: int) -> list[MicroBatch]:
    """The micro-batches of one optimizer step (FFD buckets of at most ``max_tokens`` tokens)."""
    return [pack([samples[i] for i in b]) for b in first_fit_decreasing([len(s) for s in samples], max_tokens)]


def shard_micro_batches(batches: Sequence[MicroBatch], rank: int, world_size: int) -> list[MicroBatch | None]:
    """This rank's micro-batches: heaviest first, round-robin; every rank gets the same count (a
    ``None`` is a dummy micro-batch that contributes no loss but keeps collectives in step)."""
    order = sorted(range(len(batches)), key=lambda i: (-batches[i].num_tokens, i))
    per_rank = -(-len(order) // world_size)
    mine: list[MicroBatch | None] = [batches[i] for i in order[rank::world_size]]
    return mine + [None] * (per_rank - len(mine))


def token_loss_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum of next-token cross-entropy over target positions (targets already shifted)."""
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )


def per_sample_loss_sums(logits: torch.Tensor, batch: MicroBatch) -> list[float]:
    """Each sample's summed token loss in a packed row (for checks and analysis)."""
    losses = torch.nn.functional.cross_entropy(
        logits[0].float(), batch.targets[0], ignore_index=IGNORE, reduction="none"
    )
    out, start = [], 0
    for n in batch.seq_lens:
        out.append(float(losses[start:start + n].sum()))
        start += n
    return out


def padding_stats(batches: Sequence[MicroBatch], max_tokens: int) -> dict[str, float]:
    tokens = sum(b.num_tokens for b in batches)
    return {"tokens": tokens, "padding_fraction": 0.0,
            "fill": tokens / (len(batches) * max_tokens) if batches else 0.0}
