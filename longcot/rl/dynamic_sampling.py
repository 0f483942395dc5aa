"""DAPO's dynamic sampling (Yu et al. 2025, arXiv 2503.14476, §3.2): over-sample and drop the prompts
whose samples all score the same, so every group in the step has a non-zero advantage.

Transcribed from verl @ 9d77200 ``recipe/dapo/dapo_ray_trainer.py`` (``filter_groups``): per prompt,
the standard deviation of the chosen metric over its samples (``np.std``); a group is kept when it is
> 0 or the group has one sample; kept groups are appended in generation order until the step has its
``train_batch_size`` prompts, then the surplus is cut (``batch[:traj_bsz]``); generation rounds are
capped by ``max_num_gen_batches``. The metric (``algorithm.dynamic_sampling``): ``accuracy`` (verl
``acc``, DAPO's choice) or ``reward`` (``seq_reward``: the sum of the response's token rewards over the
reward channels).

Differences, on purpose: verl draws the extra prompts by consuming its data loader; here round ``k >= 1``
of step ``s`` draws ``rollout_batch_size`` prompts with a seeded shuffle of its own
(:func:`extra_round_problems`), so the data position stays the step number (resume and the other arms'
prompt order are unchanged) and a prompt may come back in a later step. When the cap is reached short
of a full batch verl raises; here the step is filled with the first dropped groups (their advantages
are zero, so they add no policy gradient: a plain GRPO step for those slots), with a warning and the
``ds_filled_groups`` metric, so a long run is not lost to one hard batch. With several ranks, the
rounds are global (every rank generates another round while any rank is short, so ZeRO-3's synced
generation stays in step) and each rank fills its own share from its own block of each round's prompts.
"""

from __future__ import annotations

import random
from typing import Sequence, TypeVar

import numpy as np

T = TypeVar("T")


def group_keep(values: Sequence[float], group_size: int) -> list[bool]:
    """Per group of ``group_size`` consecutive responses: keep it (its values are not all equal)?"""
    v = np.asarray(values, dtype=np.float64)
    if group_size < 1 or v.size % group_size:
        raise ValueError(f"{v.size} responses do not split into groups of {group_size}")
    groups = v.reshape(-1, group_size)
    return [bool(group_size == 1 or np.std(g) > 0) for g in groups]


def extra_round_problems(problems: Sequence[T], step: int, round_: int, batch: int, seed: int) -> list[T]:
    """The ``batch`` prompts of generation round ``round_ >= 1`` of ``step``: a seeded draw without
    replacement from all prompts, the same on every rank (each rank then takes its block)."""
    if round_ < 1:
        raise ValueError("round 0 takes the step's own prompts")
    order = list(range(len(problems)))
    random.Random(f"{seed}:dynamic-sampling:{step}:{round_}").shuffle(order)
    return [problems[i] for i in order[:batch]]


def select_groups(keep_rounds: Sequence[Sequence[bool]], needed: int) -> tuple[list[tuple[int, int]], int]:
    """Which groups train: ``(round, group)`` pairs, the kept ones in generation order, cut to
    ``needed``; if fewer were kept, filled with the first dropped ones. Returns ``(chosen, filled)``."""
    kept = [(r, g) for r, row in enumerate(keep_rounds) for g, k in enumerate(row) if k]
    dropped = [(r, g) for r, row in enumerate(keep_rounds) for g, k in enumerate(row) if not k]
    chosen = kept[:needed]
    filled = max(0, needed - len(chosen))
    if filled > len(dropped):
        raise ValueError(f"{len(kept) + len(dropped)} groups generated, {needed} needed")
    chosen += dropped[:filled]
    return chosen, filled


__all__ = ["group_keep", "extra_round_problems", "select_groups"]
