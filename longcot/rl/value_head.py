"""The PPO critic: the causal LM's body plus a value head, initialised from the actor's checkpoint
(official ``openrlhf/models/model.py::_get_critic_model``: ``AutoModel`` body + ``value_head =
nn.Linear(hidden, 1, bias=False)``, head weights normal with std 1 / (hidden + 1)).

``critic(input_ids=..., attention_mask=..., position_ids=..., num_actions=R)`` returns the value of
the state before each of the last ``R`` tokens, ``(B, R)``: the head applied to the hidden state at
position ``P + t - 1`` (official ``values[:, :-1][:, -num_actions:]``); :func:`rollout_values` masks
it with the action mask. ``save_pretrained`` writes one ``model.safetensors`` with every weight
(``body.*``, ``value_head.weight``) plus the body's ``config.json``, so the training engine's
checkpoints save and restore a critic like any HF model.

``num_heads=C > 1`` (``algorithm.value_heads=per_channel``, one head per reward channel; beyond the
official code): the head is ``nn.Linear(hidden, C, bias=False)`` (every row initialised like the
official head) and the critic returns ``(B, R, C)``, channel ``c``'s values in ``[..., c]``. Loading a
value head of another width (a checkpoint written with the other ``algorithm.value_heads`` setting or
another number of reward channels) raises a ValueError saying so.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from longcot.rl.experience import Rollout

HEAD_FILE = "value_head.pt"


def _setting(num_heads: int) -> str:
    if num_heads == 1:
        return "algorithm.value_heads=shared (one head)"
    return f"algorithm.value_heads=per_channel ({num_heads} heads, one per reward channel)"


class Critic(nn.Module):
    """Transformer body (no LM head) + linear value head with ``num_heads`` outputs (see the module doc)."""

    def __init__(self, body: nn.Module, hidden_size: int, *, head_seed: int = 0, num_heads: int = 1) -> None:
        super().__init__()
        if int(num_heads) < 1:
            raise ValueError(f"Critic: num_heads must be >= 1, got {num_heads}")
        self.body = body
        self.num_heads = int(num_heads)
        self.hidden_size = int(hidden_size)
        self.value_head = nn.Linear(hidden_size, self.num_heads, bias=False)
        g = torch.Generator().manual_seed(head_seed)
        with torch.no_grad():
            self.value_head.weight.copy_(torch.randn(self.value_head.weight.shape, generator=g) / (hidden_size + 1))

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, dtype: torch.dtype = torch.float32, head_seed: int = 0, num_heads: int = 1,
        **from_pretrained_kwargs: object,
    ) -> "Critic":
        """Body from a causal-LM checkpoint (its LM head is dropped), fresh value head (or a saved one:
        ``<path>/value_head.pt``, which must have ``num_heads`` rows). ``from_pretrained_kwargs`` go to
        ``AutoModelForCausalLM.from_pretrained`` (the actor's ``config`` with its overrides, attention
        implementation, ``trust_remote_code``), so the critic's body is the actor's model."""
        from transformers import AutoModelForCausalLM

        # The causal LM's own body (``base_model``: e.g. LlamaModel), its LM head discarded.
        body = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, **from_pretrained_kwargs).base_model
        critic = cls(body, int(body.config.hidden_size), head_seed=head_seed, num_heads=num_heads)
        head = Path(path) / HEAD_FILE
        if head.is_file():
            state = torch.load(head, map_location="cpu", weights_only=True)
            if "weight" in state:
                critic._check_head(tuple(state["weight"].shape), str(head))
            critic.value_head.load_state_dict(state)
        return critic

    def _check_head(self, shape: tuple[int, ...], where: str) -> None:
        """A clear error for a saved value head whose shape is not this critic's ``(num_heads, hidden)``."""
        expected = (self.num_heads, self.hidden_size)  # not the parameter's: ZeRO-3 partitions it
        if tuple(shape) == expected or math.prod(shape) == 0:  # empty: a ZeRO-3 placeholder, nothing to check
            return
        saved = _setting(shape[0]) if len(shape) == 2 else "an unknown setting"
        raise ValueError(
            f"{where}: the saved critic value head has shape {tuple(shape)}, this critic's is {expected}: it was "
            f"trained with {saved}, this run uses {_setting(self.num_heads)}"
            + ("" if len(shape) == 2 and shape[1] == expected[1] else " (and another hidden size)")
            + "; load it with the algorithm.value_heads setting and reward channels it was trained with"
        )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        # Every load_state_dict of the critic (checkpoint resume: load_hf_weights, DeepSpeed, DDP) passes here.
        key = prefix + "value_head.weight"
        if key in state_dict:
            self._check_head(tuple(state_dict[key].shape), "loading the critic")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def config(self):  # the training engine reads/sets config.use_cache
        return self.body.config

    def gradient_checkpointing_enable(self, **kwargs) -> None:
        self.body.gradient_checkpointing_enable(**kwargs)

    def forward(self, input_ids, attention_mask, position_ids, num_actions: int) -> torch.Tensor:
        """Values ``(B, R)`` (one head) or ``(B, R, C)`` (``num_heads=C > 1``), float32."""
        hidden = self.body(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        values = self.value_head(hidden[:, -(num_actions + 1) : -1, :]).float()
        return values.squeeze(-1) if self.num_heads == 1 else values

    def save_pretrained(self, out_dir: str | Path, state_dict: dict | None = None, **_: object) -> None:
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        state = state_dict if state_dict is not None else self.state_dict()
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(out / "model.safetensors"))
        self.body.config.save_pretrained(out)


def rollout_values(forward, rollout: Rollout) -> torch.Tensor:
    """Values ``(B, R)`` (or ``(B, R, C)`` per channel) of a rollout through ``forward`` (a :class:`Critic`
    or its training engine), masked."""
    values = forward(
        input_ids=rollout.sequences,
        attention_mask=rollout.attention_mask,
        position_ids=rollout.position_ids,
        num_actions=rollout.width,
    )
    mask = rollout.action_mask
    return values * (mask.unsqueeze(-1) if values.dim() == 3 else mask)
