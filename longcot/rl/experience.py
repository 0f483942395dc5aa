"""Rollout -> per-token tensors: padded sequences, action masks, log-probs, values.

Layout (as the official experience maker): prompts left-padded to width ``P``, responses
right-padded to width ``R``; action ``t`` of a response is the token at ``P + t``, predicted from
position ``P + t - 1`` -- so the log-prob of action ``t`` is read from the logits at ``P + t - 1``
and its value (the state before it) from the critic's output at ``P + t - 1`` (official
``Actor.forward`` / ``CriticModel.forward``: ``[:, :-1]`` then the last ``num_actions``).

The last token (``algorithm.truncated_eos``). The official code makes the last token of every
response that does not end in the tokenizer's EOS the EOS *before* anything is computed from it
(``RemoteExperienceMaker._generate_vllm``: ``if output_ids[output_len - 1] != eos_token_id:
output_ids[min(output_len, len(output_ids) - 1)] = eos_token_id``; with the paper's
``--micro_rollout_batch_size 1`` every response is the longest of its micro batch, so that token is
*replaced*): a response cut at the length limit, and one that stopped on another stop id (a
generation config listing several EOS ids). The rewards (``output_ids`` for the dense repetition
penalty, the decoded text for the grader), log-probs, values and advantages all see the replaced
token, and ``Actor.process_sequences`` builds the masks. ``"official"`` (default) does exactly this
(:func:`last_token_eos`); ``"truncated"`` replaces only a truncated response's last token and only
in the rollout tensors -- the rewards see the sampled tokens, other stop ids are trained as sampled
(the behaviour before this matched the official code); ``"keep"`` never replaces. The response
length (for the cosine/classic rewards) is unchanged in every mode.

Memory of the log-probs: the logits of one response are ``R x vocab`` (14,336 x 152k fp32 = 8.7 GB
in the paper's setting), kept for backward. ``chunk_tokens=k`` (``rl.logits_chunk_tokens``) runs
the model body once, takes the LM head's input at the last ``R + 1`` positions (a forward pre-hook
on ``get_output_embeddings()`` that hands the head only the last position), and applies the head
``k`` positions at a time -- each chunk under ``torch.utils.checkpoint`` when grad is enabled, so
backward recomputes its logits instead of storing them: memory scales with ``k``, not ``R``; the
numbers and gradients are those of the unchunked path (the head gets its gradient through the
chunks; a tied head sums both uses as usual). Models where this cannot work (no output embedding,
no ``logits_to_keep``, logits post-processed after the head, a head partitioned by ZeRO-3) fall
back to the unchunked path with a one-time warning.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

log = logging.getLogger(__name__)

TRUNCATED_EOS = ("official", "truncated", "keep")


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

    def to(self, device: torch.device | str) -> "Rollout":
        """The same rollout with its tensors on ``device`` (the models')."""
        return Rollout(self.sequences.to(device), self.attention_mask.to(device), self.position_ids.to(device),
                       self.action_mask.to(device), self.prompt_width, self.lengths)

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


def last_token_eos(token_ids: Sequence[int], truncated: bool, eos_id: int, mode: str, *,
                   for_reward: bool = False) -> tuple[int, ...]:
    """The response tokens the rewards (``for_reward``) or the rollout tensors see under ``mode``
    (``algorithm.truncated_eos``, see the module doc): ``"official"`` makes the last token EOS
    whenever it is not; ``"truncated"`` does so for a truncated response, in the rollout only."""
    if mode not in TRUNCATED_EOS:
        raise ValueError(f"truncated_eos: unknown value {mode!r}; valid: {', '.join(TRUNCATED_EOS)}")
    ids = tuple(int(t) for t in token_ids)
    if not ids:
        return ids
    replace = (mode == "official" and ids[-1] != eos_id) or (mode == "truncated" and truncated and not for_reward)
    return ids[:-1] + (int(eos_id),) if replace else ids


def build_rollout(
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    truncated: Sequence[bool],
    *,
    eos_id: int,
    pad_id: int,
    truncated_eos: str = "official",
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
        resp = list(last_token_eos(resp, trunc, eos_id, truncated_eos))
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
    model: torch.nn.Module, rollout: Rollout, *, with_entropy: bool = False, forward=None,
    chunk_tokens: Optional[int] = None,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Log-probs ``(B, R)`` (float32) of the response tokens under ``model``, and optionally the
    entropy of its next-token distribution at each action. Differentiable (wrap in no_grad to freeze).
    Only the last ``R + 1`` positions' logits are materialised (``logits_to_keep``); with
    ``chunk_tokens`` only ``chunk_tokens`` positions' at a time (see the module doc). ``forward``:
    what to call instead of ``model`` (its training engine: DDP / autocast wrappers)."""
    if chunk_tokens is not None:
        if chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be >= 1 or None, got {chunk_tokens}")
        why = _why_not_chunked(model, rollout)
        if why is None:
            return _chunked_logprobs(model, rollout, with_entropy, forward, chunk_tokens)
        _warn_once(f"rl.logits_chunk_tokens={chunk_tokens} is ignored for {type(model).__name__}: {why}; "
                   "its log-probs are computed unchunked (the full R x vocab logits in memory)")
    return _unchunked_logprobs(model, rollout, with_entropy, forward)


def _unchunked_logprobs(model, rollout: Rollout, with_entropy: bool, forward):
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


_WARNED: set[str] = set()
# model -> None if its logits are exactly its output embedding applied to the head's input, else why not
_PROBED: "weakref.WeakKeyDictionary[torch.nn.Module, Optional[str]]" = weakref.WeakKeyDictionary()


def _warn_once(msg: str) -> None:
    if msg not in _WARNED:
        _WARNED.add(msg)
        log.warning(msg)


def _output_head(model: torch.nn.Module) -> Optional[torch.nn.Module]:
    get = getattr(model, "get_output_embeddings", None)
    return get() if callable(get) else None


class _HeadInput:
    """Forward pre-hook on the LM head: records its input (and the autocast state it ran under);
    with ``keep_last`` hands the head only the last position, so the full logits are never built."""

    def __init__(self, keep_last: bool):
        self.keep_last = keep_last
        self.inputs: list[torch.Tensor] = []
        self.autocast: tuple[bool, torch.dtype] = (False, torch.float32)

    def __call__(self, module, args):
        if not args:  # called with keywords only: not recorded (the probe then falls back)
            return None
        h = args[0]
        self.inputs.append(h)
        dev = h.device.type
        self.autocast = (torch.is_autocast_enabled(dev), torch.get_autocast_dtype(dev))
        return (h[:, -1:], *args[1:]) if self.keep_last else None


def _why_not_chunked(model: torch.nn.Module, rollout: Rollout) -> Optional[str]:
    """None if ``model``'s log-probs can be computed in chunks, else the reason (see the module doc)."""
    if not _logits_to_keep_ok(model):
        return "its forward takes no logits_to_keep"
    head = _output_head(model)
    if head is None:
        return "it has no output embedding (get_output_embeddings)"
    if any(hasattr(p, "ds_id") for p in head.parameters()):
        return "its LM head is partitioned by DeepSpeed ZeRO-3"
    if model not in _PROBED:
        _PROBED[model] = _probe(model, head, rollout)
    return _PROBED[model]


@torch.no_grad()
def _probe(model: torch.nn.Module, head: torch.nn.Module, rollout: Rollout) -> Optional[str]:
    """Once per model, on 3 tokens (real ones: the end of the longest response): are its logits
    exactly ``head(input of head)`` (no soft-capping, scaling, ... after the head)?"""
    longest = max(range(len(rollout.lengths)), key=rollout.lengths.__getitem__)
    ids = rollout.sequences[longest : longest + 1, -3:]
    hook = _HeadInput(keep_last=False)
    handle = head.register_forward_pre_hook(hook)
    try:
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                    position_ids=torch.arange(ids.shape[1], device=ids.device).unsqueeze(0),
                    use_cache=False, logits_to_keep=ids.shape[1])
    finally:
        handle.remove()
    if len(hook.inputs) != 1:
        return f"its forward calls the LM head {len(hook.inputs)} times"
    ref = out.logits.float()
    mine = head(hook.inputs[0]).float()
    if mine.shape != ref.shape or not torch.allclose(mine, ref, rtol=1e-4, atol=1e-6):
        return "its logits are not its output embedding of the final hidden state (post-processed, e.g. soft-capped)"
    return None


def _head_chunk(head: torch.nn.Module, h: torch.Tensor, ids: torch.Tensor, with_entropy: bool,
                autocast: tuple[bool, torch.dtype]):
    """Log-prob of ``ids`` (and entropy) from LM-head inputs ``h`` (b, k, H): the logits of k positions."""
    with torch.autocast(device_type=h.device.type, dtype=autocast[1], enabled=autocast[0]):
        logits = head(h)
    logp_all = torch.log_softmax(logits.float(), dim=-1)
    logp = logp_all.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    if not with_entropy:
        return logp
    return logp, -(logp_all.exp() * logp_all).sum(dim=-1)


def _chunked_logprobs(model, rollout: Rollout, with_entropy: bool, forward, k: int):
    from torch.utils.checkpoint import checkpoint

    r = rollout.width
    head = _output_head(model)
    hook = _HeadInput(keep_last=True)
    handle = head.register_forward_pre_hook(hook)
    try:  # the body through the engine (DDP / autocast / DeepSpeed); the head sees only 1 position
        (forward or model)(
            input_ids=rollout.sequences,
            attention_mask=rollout.attention_mask,
            position_ids=rollout.position_ids,
            use_cache=False,
            logits_to_keep=r + 1,
        )
    finally:
        handle.remove()
    if len(hook.inputs) != 1 or hook.inputs[0].shape[1] != r + 1:
        raise RuntimeError(f"{type(model).__name__}: expected one LM-head call on {r + 1} positions, got "
                           f"{[tuple(h.shape) for h in hook.inputs]}; set rl.logits_chunk_tokens to null")
    # split (one backward node for all chunks) rather than slicing: h's gradient is assembled once
    hs = hook.inputs[0][:, :-1].split(k, dim=1)
    ids = rollout.response_ids.split(k, dim=1)
    grad = torch.is_grad_enabled()
    outs = [
        checkpoint(_head_chunk, head, h, t, with_entropy, hook.autocast, use_reentrant=False)
        if grad else _head_chunk(head, h, t, with_entropy, hook.autocast)
        for h, t in zip(hs, ids)
    ]
    if with_entropy:
        logp = torch.cat([o[0] for o in outs], dim=1)
        ent = torch.cat([o[1] for o in outs], dim=1)
    else:
        logp, ent = torch.cat(outs, dim=1), None
    return logp * rollout.action_mask, ent


@torch.no_grad()
def _batched(fn: "Callable[[Rollout], torch.Tensor]", rollout: Rollout, batch_size: int) -> torch.Tensor:
    """``fn`` (rows -> ``(b, width, ...)`` per-action values) over the whole rollout in no-grad
    chunks; the output ``(B, R, ...)`` takes its trailing shape from the first result."""
    out = None
    n = len(rollout.lengths)
    for s in range(0, n, batch_size):
        idx = list(range(s, min(s + batch_size, n)))
        sub = rollout.rows(idx)
        v = fn(sub)
        if out is None:
            out = rollout.action_mask.new_zeros((n, rollout.width, *v.shape[2:]))
        out[s : s + len(idx), : sub.width] = v
    return out if out is not None else torch.zeros_like(rollout.action_mask)


def batched_logprobs(model: torch.nn.Module, rollout: Rollout, batch_size: int,
                     chunk_tokens: Optional[int] = None, forward=None) -> torch.Tensor:
    """:func:`action_logprobs` over the whole rollout in no-grad chunks of ``batch_size`` rows
    (``forward``: the model's training engine, so the old log-probs see the same precision as the update)."""
    return _batched(lambda sub: action_logprobs(model, sub, chunk_tokens=chunk_tokens, forward=forward)[0],
                    rollout, batch_size)


def batched_values(critic: torch.nn.Module, rollout: Rollout, batch_size: int) -> torch.Tensor:
    """Critic values ``(B, R)`` (or ``(B, R, C)`` for ``C`` value channels) of the states before
    each action, in no-grad chunks."""
    from longcot.rl.value_head import rollout_values

    return _batched(lambda sub: rollout_values(critic, sub), rollout, batch_size)
