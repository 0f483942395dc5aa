"""Typed settings of RL: the ``algorithm`` group (PPO, GRPO, REINFORCE++) and the rl stage's ``rl.*``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING


@dataclass
class AlgorithmConfig:
    """An RL algorithm (§4): PPO, GRPO or REINFORCE++; consumed by the rl stage."""

    name: str = MISSING  # ppo | grpo | reinforce_pp
    learning_rate: float = 1e-6
    kl_coef: float = 0.01
    clip_ratio: float = 0.2
    rollout_batch_size: int = 512
    samples_per_prompt: int = 8
    max_new_tokens: int = 14336
    temperature: float = 1.0
    top_p: float = 1.0
    gamma: float = 1.0
    lam: float = 1.0
    critic_learning_rate: Optional[float] = None  # ppo only
    epochs: int = 1


@dataclass
class RLConfig:
    """Settings of the rl stage beyond the algorithm (filled in by the RL recipe; see longcot/rl/)."""

    # The SFT run the actor (and critic) start from: None = RL directly from `model` (Table 4 "base").
    from_sft: bool = False
    eval_benchmarks: list[str] = field(default_factory=list)
