"""The PPO critic: the causal LM's body plus a scalar value head, initialised from the actor's checkpoint
(official ``openrlhf/models/model.py::_get_critic_model``: ``AutoModel`` body + ``value_head =
nn.Linear(hidden, 1, bias=False)``, head weights normal with std 1 / (hidden + 1)).

``critic(input_ids=..., attention_mask=..., position_ids=..., num_actions=R)`` returns the value of
the state before each of the last ``R`` tokens, ``(B, R)``: the head applied to the hidden state at
position ``P + t - 1`` (official ``values[:, :-1][:, -num_actions:]``); :func:`rollout_values` masks
it with the action mask. ``save_pretrained`` writes one ``model.safetensors`` with every weight
(``body.*``, ``value_head.weight``) plus the body's ``config.json``, so the training engine's
checkpoints save and restore a critic like any HF model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from longcot.rl.experience import Rollout

HEAD_FILE = "value_head.pt"


class Critic(nn.Module):
    """Transformer body (no LM head) + linear value head."""

    def __init__(self, body: nn.Module, hidden_size: int, *, head_seed: int = 0) -> None:
        super().__init__()
        self.body = body
        self.value_head = nn.Linear(hidden_size, 1, bias=False)
        g = torch.Generator().manual_seed(head_seed)
        with torch.no_grad():
            self.value_head.weight.copy_(torch.randn(self.value_head.weight.shape, generator=g) / (hidden_size + 1))

    @classmethod
    def from_pretrained(cls, path: str | Path, *, dtype: torch.dtype = torch.float32, head_seed: int = 0) -> "Critic":
        """Body from a causal-LM checkpoint (its LM head is dropped), fresh value head (or a saved one)."""
        from transformers import AutoModelForCausalLM

        # The causal LM's own body (``base_model``: e.g. LlamaModel), its LM head discarded.
        body = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).base_model
        critic = cls(body, int(body.config.hidden_size), head_seed=head_seed)
        head = Path(path) / HEAD_FILE
        if head.is_file():
            critic.value_head.load_state_dict(torch.load(head, map_location="cpu", weights_only=True))
        return critic

    @property
    def config(self):  # the training engine reads/sets config.use_cache
        return self.body.config

    def gradient_checkpointing_enable(self, **kwargs) -> None:
        self.body.gradient_checkpointing_enable(**kwargs)

    def forward(self, input_ids, attention_mask, position_ids, num_actions: int) -> torch.Tensor:
        hidden = self.body(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        return self.value_head(hidden[:, -(num_actions + 1) : -1, :]).squeeze(-1).float()

    def save_pretrained(self, out_dir: str | Path, state_dict: dict | None = None, **_: object) -> None:
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        state = state_dict if state_dict is not None else self.state_dict()
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(out / "model.safetensors"))
        self.body.config.save_pretrained(out)


def rollout_values(forward, rollout: Rollout) -> torch.Tensor:
    """Values ``(B, R)`` of a rollout through ``forward`` (a :class:`Critic` or its training engine), masked."""
    values = forward(
        input_ids=rollout.sequences,
        attention_mask=rollout.attention_mask,
        position_ids=rollout.position_ids,
        num_actions=rollout.width,
    )
    return values * rollout.action_mask
