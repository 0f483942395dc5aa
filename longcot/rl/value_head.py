"""The PPO critic: the causal LM's body plus a scalar value head, initialised from the actor's checkpoint
(official ``openrlhf/models/model.py::_get_critic_model``: ``AutoModel`` body + ``value_head =
nn.Linear(hidden, 1, bias=False)``, head weights normal with std 1 / (hidden + 1)).

``Critic(rollout)`` returns the value of the state before each response token, ``(B, R)``: the head
applied to the hidden state at position ``P + t - 1`` (official ``values[:, :-1][:, -num_actions:]``),
masked by the action mask.
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
        from transformers import AutoModel

        body = AutoModel.from_pretrained(str(path), dtype=dtype)
        critic = cls(body, int(body.config.hidden_size), head_seed=head_seed)
        head = Path(path) / HEAD_FILE
        if head.is_file():
            critic.value_head.load_state_dict(torch.load(head, map_location="cpu", weights_only=True))
        return critic

    def forward(self, rollout: Rollout) -> torch.Tensor:
        r = rollout.width
        hidden = self.body(
            input_ids=rollout.sequences,
            attention_mask=rollout.attention_mask,
            position_ids=rollout.position_ids,
            use_cache=False,
        ).last_hidden_state
        values = self.value_head(hidden[:, -(r + 1) : -1, :]).squeeze(-1).float()
        return values * rollout.action_mask
