"""Rollout -> per-token tensors: padded sequences, action masks, log-probs, values.

Layout (as the official experience maker): prompts left-padded to width ``P``, responses
right-padded to width ``R``; action ``t`` of a response is the token at ``P + t``, predicted from
position ``P + t - 1`` -- so the log-prob of action ``t`` is read from the logits at ``P + t - 1``
and its value (the state before it) from the critic's output at ``P + t - 1`` (official
``Actor.forward`` / ``CriticModel.forward``: ``[:, :-1]`` then the last ``num_actions``).

Truncated responses (``finish_reason == "length"``): the official code makes their last token EOS
before computing log-probs, values and advantages (``RemoteExperienceMaker._generate_vllm``:
``if output_ids[output_len - 1] != eos_token_id: output_ids[min(output_len, len(output_ids) - 1)] =
eos_token_id`` -- a length-truncated response is always the longest of its micro batch, so its last
token is *replaced*), then ``Actor.process_sequences`` builds the masks. ``truncated_eos="replace"``
(default) does the same; ``"keep"`` trains on the sampled last token instead. The reward still sees
the response as generated (its length is unchanged either way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

TRUNCATED_EOS = ("replace", "keep")


@dataclass
class Rollout:
    """Padded token tensors of B responses (row order = the order they were given in)."""

    sequences: torch.Tensor  # (B, P + R) long: left-padded prompt, right-padded response
    attention_mask: torch.Tensor  # (B, P + R) long
    position_ids: torch.Tensor  # (B, P + R) long: 0 at each prompt's first real token
    action_mask: torch.Tensor  # (B, R) float: 1 on response tokens
    prompt_width: int  # P
    lengths: list[int]  # response tokens per row

    @property
    def response_ids(self) -> torch.Tensor:
        return self.sequences[:, self.prompt_width :]

    @property
    def width(self) -> int:
        return self.action_mask.shape[1]

    def rows(self, idx: Sequence[int] | torch.Tensor) -> "Rollout":
        """A sub-batch, trimmed to its own longest response (and prompt)."""
        idx_t = torch.as_tensor(idx, dtype=torch.long)
        lengths = [self.lengths[i] for i in idx_t.tolist()]
        r = max(lengths) if lengths else 0
        attn = self.attention_mask[idx_t, : self.prompt_width]
        first = int((attn.sum(dim=0) > 0).nonzero()[0]) if attn.numel() else 0
        p = self.prompt_width
        return Rollout(
            sequences=self.sequences[idx_t, first : p + r],
            attention_mask=self.attention_mask[idx_t, first : p + r],
            position_ids=self.position_ids[idx_t, first : p + r],
            action_mask=self.action_mask[idx_t, :r],
            prompt_width=p - first,
            lengths=lengths,
        )


def build_rollout(
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    truncated: Sequence[bool],
    *,
    eos_id: int,
    pad_id: int,
    truncated_eos: str = "replace",
) -> Rollout:
    """Pad prompts (left) and responses (right) into one batch; see the module doc for truncation."""
    if truncated_eos not in TRUNCATED_EOS:
        raise ValueError(f"truncated_eos: unknown value {truncated_eos!r}; valid: {', '.join(TRUNCATED_EOS)}")
    if not (len(prompt_ids) == len(response_ids) == len(truncated)):
        raise ValueError(f"{len(prompt_ids)} prompts, {len(response_ids)} responses, {len(truncated)} truncation flags")
    if any(len(r) == 0 for r in response_ids):
        raise ValueError("a response has no tokens (its generation budget was 0); shorten the prompt or raise the context")
    b = len(prompt_ids)
    p = max(len(x) for x in prompt_ids)
    r = max(len(x) for x in response_ids)
    seq = torch.full((b, p + r), pad_id, dtype=torch.long)
    attn = torch.zeros((b, p + r), dtype=torch.long)
    amask = torch.zeros((b, r), dtype=torch.float32)
    for i, (pr, resp, trunc) in enumerate(zip(prompt_ids, response_ids, truncated)):
        resp = list(resp)
        if trunc and truncated_eos == "replace":
            resp[-1] = eos_id
        seq[i, p - len(pr) : p] = torch.as_tensor(list(pr), dtype=torch.long)
        seq[i, p : p + len(resp)] = torch.as_tensor(resp, dtype=torch.long)
        attn[i, p - len(pr) : p + len(resp)] = 1
        amask[i, : len(resp)] = 1.0
    pos = (attn.cumsum(dim=1) - 1).clamp(min=0)
    return Rollout(seq, attn, pos, amask, p, [len(x) for x in response_ids])


def _logits_to_keep_ok(model: torch.nn.Module) -> bool:
    import inspect

    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


def action_logprobs(
    model: torch.nn.Module, rollout: Rollout, *, with_entropy: bool = False, forward=None
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Log-probs ``(B, R)`` (float32) of the response tokens under ``model``, and optionally the
    entropy of its next-token distribution at each action. Differentiable (wrap in no_grad to freeze).
    Only the last ``R + 1`` positions' logits are materialised (``logits_to_keep``). ``forward``:
    what to call instead of ``model`` (its training engine: DDP / autocast wrappers)."""
    from longcot.rl.losses import entropy_from_logits

    r = rollout.width
    kwargs = {"logits_to_keep": r + 1} if _logits_to_keep_ok(model) else {}
    out = (forward or model)(
        input_ids=rollout.sequences,
        attention_mask=rollout.attention_mask,
        position_ids=rollout.position_ids,
        use_cache=False,
        **kwargs,
    )
    logits = out.logits[:, -(r + 1) : -1, :].float()
    logp = torch.log_softmax(logits, dim=-1).gather(-1, rollout.response_ids.unsqueeze(-1)).squeeze(-1)
    ent = entropy_from_logits(logits) if with_entropy else None
    return logp * rollout.action_mask, ent


@torch.no_grad()
def _batched(fn: "Callable[[Rollout], torch.Tensor]", rollout: Rollout, batch_size: int) -> torch.Tensor:
    """``fn`` (rows -> ``(b, width)`` per-action values) over the whole rollout in no-grad chunks."""
    out = torch.zeros_like(rollout.action_mask)
    for s in range(0, len(rollout.lengths), batch_size):
        idx = list(range(s, min(s + batch_size, len(rollout.lengths))))
        sub = rollout.rows(idx)
        out[s : s + len(idx), : sub.width] = fn(sub)
    return out


def batched_logprobs(model: torch.nn.Module, rollout: Rollout, batch_size: int) -> torch.Tensor:
    """:func:`action_logprobs` over the whole rollout in no-grad chunks of ``batch_size`` rows."""
    return _batched(lambda sub: action_logprobs(model, sub)[0], rollout, batch_size)


def batched_values(critic: torch.nn.Module, rollout: Rollout, batch_size: int) -> torch.Tensor:
    """Critic values ``(B, R)`` of the states before each action, in no-grad chunks."""
    from longcot.rl.value_head import rollout_values

    return _batched(lambda sub: rollout_values(critic, sub), rollout, batch_size)
