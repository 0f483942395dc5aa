"""Reward channels: what a reward config hands the RL stage.

A reward config yields named channels (:func:`reward_channels`), each ``sparse`` (one value at the
last response token) or ``dense`` (one value per token), with its own discount gamma -- the paper's
§4 setup is a sparse correctness/cosine channel with γ_c = 1 plus a dense repetition channel with
γ_p = 0.99 (official ``--gamma 1,0.99``). :func:`compute_channel_rewards` gives every channel's
token-level reward array for each scored response; :func:`discounted_returns` is the reward-to-go
``G[t] = sum_{k >= t} gamma**(k - t) r[k]``; :func:`combined_returns` sums the channels' returns, as
the official multi-gamma PPO does (returns per channel, then summed).

Channel names: ``correctness`` (always; classic or cosine reward) and ``repetition`` (when the
config has one; ``dense`` for Algorithm 1, ``sparse`` for the sequence-level variant) and ``overlong``
(``reward.overlong``: DAPO's soft overlong punishment, :mod:`longcot.rewards.overlong`; sparse, γ_c).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Optional, Sequence

import numpy as np

from longcot.rewards.classic import classic_reward_batch
from longcot.rewards.config import RewardConfig, to_reward_config
from longcot.rewards.cosine import cosine_scaled_reward_batch
from longcot.rewards.repetition import dense_repetition_penalty, sequence_repetition_penalty

CORRECTNESS_CHANNEL = "correctness"
REPETITION_CHANNEL = "repetition"
OVERLONG_CHANNEL = "overlong"


@dataclass(frozen=True)
class RewardChannel:
    """One reward stream: its name, ``sparse`` (last token only) or ``dense`` (per token), and discount."""

    name: str
    kind: Literal["sparse", "dense"]
    gamma: float


@dataclass(frozen=True)
class ScoredSample:
    """One response ready to be rewarded.

    ``token_ids``: exactly the response's tokens (its length is t); ``correct``: the correctness
    verdict; ``max_len``: the generation limit T; ``truncated``: the generator stopped it at its
    limit; ``text``: the decoded response (needed only by the sequence-level repetition variant).
    """

    token_ids: Any
    correct: bool
    max_len: int
    truncated: bool = False
    text: Optional[str] = None

    @property
    def length(self) -> int:
        return len(self.token_ids)

    @classmethod
    def from_completion(cls, completion: Any, correct: bool, max_len: int) -> "ScoredSample":
        """From a :class:`longcot.generation.base.Completion`."""
        return cls(
            token_ids=completion.token_ids,
            correct=bool(correct),
            max_len=max_len,
            truncated=completion.truncated,
            text=completion.text,
        )


def reward_channels(cfg: Any) -> list[RewardChannel]:
    """The channels a reward config yields, in a fixed order (correctness first)."""
    cfg = to_reward_config(cfg)
    channels = [RewardChannel(CORRECTNESS_CHANNEL, "sparse", float(cfg.gamma))]
    if cfg.repetition is not None:
        kind = "dense" if cfg.repetition.variant == "dense" else "sparse"
        gamma = cfg.gamma if cfg.repetition.gamma is None else cfg.repetition.gamma
        channels.append(RewardChannel(REPETITION_CHANNEL, kind, float(gamma)))
    if cfg.overlong is not None:  # DAPO's soft overlong punishment, discounted like correctness
        channels.append(RewardChannel(OVERLONG_CHANNEL, "sparse", float(cfg.gamma)))
    return channels


def single_gamma(cfg: Any) -> bool:
    """Whether the config gives one gamma for all its channels (``reward.repetition.gamma: null``, the
    official single ``--gamma``): the RL stage then sums the channels before clipping (official
    ``reward_fn`` + ``compute_reward``) and discounts the sum. Two channels with equal explicit gammas
    (official ``--gamma 1,1``) are clipped one by one."""
    cfg = to_reward_config(cfg)
    return cfg.repetition is not None and cfg.repetition.gamma is None


def correctness_rewards(cfg: RewardConfig, samples: Sequence[ScoredSample]) -> np.ndarray:
    """The sequence-level correctness reward (classic or cosine) of each sample, float64."""
    correct = np.array([bool(s.correct) for s in samples], dtype=bool)
    gen_len = np.array([s.length for s in samples], dtype=np.int64)
    max_len = np.array([s.max_len for s in samples], dtype=np.int64)
    truncated = np.array([bool(s.truncated) for s in samples], dtype=bool)
    if cfg.kind == "classic":
        c = cfg.classic
        answered = None
        if c.no_answer is not None:
            from longcot.grading import extract_answer

            if any(s.text is None for s in samples):
                raise ValueError("reward.classic.no_answer needs ScoredSample.text (whether an answer was given)")
            answered = [extract_answer(s.text) is not None for s in samples]
        return classic_reward_batch(
            correct, gen_len, max_len, truncated,
            correct_reward=c.correct, wrong_reward=c.wrong, exceed=c.exceed, margin=cfg.margin,
            no_answer=c.no_answer, answered=answered,
        )
    c = cfg.cosine
    return cosine_scaled_reward_batch(
        correct, gen_len, max_len, truncated,
        r0_correct=c.r0_correct, rL_correct=c.rL_correct, r0_wrong=c.r0_wrong, rL_wrong=c.rL_wrong,
        exceed=c.exceed, margin=cfg.margin,
    )


def _sparse(value: float, length: int) -> np.ndarray:
    out = np.zeros(length, dtype=np.float64)
    if length:
        out[-1] = value
    return out


def compute_channel_rewards(cfg: Any, samples: Sequence[ScoredSample]) -> dict[str, list[np.ndarray]]:
    """Token-level rewards of every channel for every sample: ``{channel name: [array(len_i)]}``.

    Sparse channels are zero except at the last response token. A zero-length response has no
    token to carry a reward, so its arrays are empty (generators should count the EOS token).
    """
    cfg = to_reward_config(cfg)
    out: dict[str, list[np.ndarray]] = {}
    values = correctness_rewards(cfg, samples)
    out[CORRECTNESS_CHANNEL] = [_sparse(float(v), s.length) for v, s in zip(values, samples)]
    rep = cfg.repetition
    if rep is not None:
        if rep.variant == "dense":
            out[REPETITION_CHANNEL] = [
                dense_repetition_penalty(s.token_ids, rep.ngram_size, rep.penalty) for s in samples
            ]
        else:
            rows = []
            for s in samples:
                if s.text is None:
                    raise ValueError("the sequence-level repetition penalty needs ScoredSample.text")
                rows.append(_sparse(sequence_repetition_penalty(s.text, rep.ngram_size, rep.penalty), s.length))
            out[REPETITION_CHANNEL] = rows
    if cfg.overlong is not None:
        from longcot.rewards.overlong import overlong_penalty_batch

        pen = overlong_penalty_batch([s.length for s in samples], [s.max_len for s in samples],
                                     cfg.overlong.cache, cfg.overlong.factor)
        out[OVERLONG_CHANNEL] = [_sparse(float(v), s.length) for v, s in zip(pen, samples)]
    return out


# Largest exponent magnitude used to rescale within a block: gamma**k >= exp(-_LOG_LIMIT).
_LOG_LIMIT = 230.0  # ~1e-100


def discounted_returns(rewards: Any, gamma: float) -> np.ndarray:
    """Reward-to-go ``G[t] = r[t] + gamma * G[t + 1]`` along the last axis (1-D or batched 2-D), float64.

    Vectorised: reverse cumulative sums of ``r[k] * gamma**k``, rescaled by ``gamma**-t`` blockwise
    (blocks short enough that ``gamma**-t`` stays far from overflow), carrying ``G`` across blocks.
    Right padding with zeros leaves the real tokens' returns unchanged.
    """
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim == 0:
        raise ValueError("rewards must have at least one axis")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    length = r.shape[-1]
    if length == 0 or gamma == 0.0:
        return r.copy()
    if gamma == 1.0:
        return np.flip(np.cumsum(np.flip(r, axis=-1), axis=-1), axis=-1).copy()
    block = max(1, min(length, int(_LOG_LIMIT / -math.log(gamma))))
    out = np.empty_like(r)
    carry = np.zeros(r.shape[:-1], dtype=np.float64)  # G at the first token after the block
    for end in range(length, 0, -block):
        start = max(0, end - block)
        n = end - start
        k = np.arange(n, dtype=np.float64)
        pw = np.power(gamma, k)
        scaled = r[..., start:end] * pw
        seg = np.flip(np.cumsum(np.flip(scaled, axis=-1), axis=-1), axis=-1) / pw
        seg += carry[..., None] * np.power(gamma, n - k)
        out[..., start:end] = seg
        carry = seg[..., 0]
    return out


def combined_returns(
    channel_rewards: Mapping[str, Sequence[np.ndarray]], channels: Sequence[RewardChannel]
) -> list[np.ndarray]:
    """Per sample, the sum over channels of each channel's discounted returns (its own gamma)."""
    if not channels:
        raise ValueError("no channels")
    missing = [c.name for c in channels if c.name not in channel_rewards]
    if missing:
        raise KeyError(f"no rewards for channel(s) {missing}; have {sorted(channel_rewards)}")
    num = {len(channel_rewards[c.name]) for c in channels}
    if len(num) != 1:
        raise ValueError(f"channels disagree on the number of samples: {sorted(num)}")
    totals: list[np.ndarray] = []
    for i in range(num.pop()):
        total: Optional[np.ndarray] = None
        for c in channels:
            g = discounted_returns(channel_rewards[c.name][i], c.gamma)
            if total is not None and g.shape != total.shape:
                raise ValueError(f"sample {i}: channel {c.name!r} has shape {g.shape}, expected {total.shape}")
            total = g if total is None else total + g
        assert total is not None
        totals.append(total)
    return totals
