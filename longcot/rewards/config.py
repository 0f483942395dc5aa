"""The typed schema of a reward config (``conf/reward/*.yaml``).

A reward config names a correctness reward (``kind``: classic or cosine), where correctness comes
from (``correctness``: the rule-based grader or the model-based verifier), the discount of that
sparse channel (``gamma``, γ_c = 1 in the paper) and an optional repetition penalty with its own
discount (γ_p = 0.99). :func:`longcot.rewards.channels.reward_channels` turns it into named channels.

Validation runs in ``__post_init__`` (so ``OmegaConf.to_object`` of a merged config validates) and
via :meth:`RewardConfig.validate`; :func:`to_reward_config` accepts a dataclass, a DictConfig or a
plain mapping and returns a validated :class:`RewardConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from longcot.rewards.common import DEFAULT_MARGIN

REWARD_KINDS = ("classic", "cosine")
CORRECTNESS_SOURCES = ("rule", "model")
RULE_GRADERS = ("math_verify", "hendrycks")  # hendrycks: the official §4 score_fn (longcot/grading/hendrycks.py)
REPETITION_VARIANTS = ("dense", "sequence")


def _check_gamma(where: str, gamma: float) -> None:
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"{where} must be in [0, 1], got {gamma}")


def _check_choice(where: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{where}: unknown value {value!r}; valid: {', '.join(valid)}")


@dataclass
class ClassicConfig:
    """Classic reward values (§4.1). ``exceed=None``: no exceed-length rule (graded as usual).
    ``no_answer``: the reward of a response with no extractable answer (Table 4's direct RL: -1);
    None: graded as wrong."""

    correct: float = 1.0
    wrong: float = 0.0
    exceed: Optional[float] = 0.0
    no_answer: Optional[float] = None


@dataclass
class CosineConfig:
    """Cosine reward end points (§4.2): value at t=0 (``r0_*``) and at t=T (``rL_*``); ``exceed`` = r_e."""

    r0_correct: float = 2.0
    rL_correct: float = 1.0
    r0_wrong: float = -10.0
    rL_wrong: float = 0.0
    exceed: float = -10.0


@dataclass
class RepetitionConfig:
    """A repetition penalty channel.

    ``variant``: ``dense`` -- Algorithm 1 on token ids, one value per token (the paper's);
    ``sequence`` -- open-r1's ``(1 - unique/total) * penalty`` over word N-grams, one value at the
    last token (set ``ngram_size: 3`` and ``penalty: -1.0`` for open-r1's defaults).
    ``gamma``: its own discount (official ``--gamma 1,0.99``: the channels are clipped one by one);
    ``null``: one gamma for every channel, ``reward.gamma`` (official ``--gamma G`` with several reward
    functions: ``reward_fn`` sums them and ``compute_reward`` clips the sum).
    """

    variant: str = "dense"
    ngram_size: int = 40
    penalty: float = -0.05
    gamma: Optional[float] = 0.99

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "RepetitionConfig":
        _check_choice("reward.repetition.variant", self.variant, REPETITION_VARIANTS)
        if self.ngram_size < 1:
            raise ValueError(f"reward.repetition.ngram_size must be >= 1, got {self.ngram_size}")
        if self.penalty > 0:
            raise ValueError(f"reward.repetition.penalty must be <= 0, got {self.penalty}")
        if self.gamma is not None:
            _check_gamma("reward.repetition.gamma", self.gamma)
        return self


@dataclass
class OverlongConfig:
    """DAPO's soft overlong punishment (:mod:`longcot.rewards.overlong`): 0 up to ``T - cache`` tokens,
    then linearly down to ``-factor`` at the generation limit ``T`` (DAPO: L_cache 4096 of L_max 20480)."""

    cache: int = 4096
    factor: float = 1.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "OverlongConfig":
        if self.cache < 1:
            raise ValueError(f"reward.overlong.cache must be >= 1, got {self.cache}")
        if self.factor < 0:
            raise ValueError(f"reward.overlong.factor must be >= 0, got {self.factor}")
        return self


@dataclass
class VerifierConfig:
    """The model-based verifier (§5), used when ``correctness: model``.

    ``model`` names a ``conf/model/`` config (``qwen2.5-7b-instruct`` = hub id
    ``Qwen/Qwen2.5-7B-Instruct``; ``tiny`` for CPU smoke tests).
    """

    model: str = "qwen2.5-7b-instruct"
    max_new_tokens: int = 1024  # official judge budget
    last_lines: int = 20
    temperature: float = 0.0  # greedy
    prompt: str = "official"  # official (step by step, then "Judgement: ...") | concise (one verdict line)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "VerifierConfig":
        if not self.model:
            raise ValueError("reward.verifier.model must name a model config")
        if self.max_new_tokens < 1:
            raise ValueError(f"reward.verifier.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.last_lines < 1:
            raise ValueError(f"reward.verifier.last_lines must be >= 1, got {self.last_lines}")
        if self.temperature < 0:
            raise ValueError(f"reward.verifier.temperature must be >= 0, got {self.temperature}")
        from longcot.rewards.verifier import JUDGE_STYLES

        if self.prompt not in JUDGE_STYLES:
            raise ValueError(f"reward.verifier.prompt: unknown value {self.prompt!r}; valid: {', '.join(JUDGE_STYLES)}")
        return self


@dataclass
class RewardConfig:
    """A reward: the correctness channel (sparse, ``gamma``) plus an optional repetition channel.

    ``margin``: a response with ``len >= T - margin`` tokens (or truncated) counts as over budget.
    ``verifier`` is always present so that ``reward.correctness=model`` composes with every reward
    file; it is ignored when ``correctness`` is ``rule``.
    """

    name: str = MISSING
    kind: str = "classic"  # classic | cosine
    correctness: str = "rule"  # rule | model
    rule_grader: str = "math_verify"  # correctness=rule: math_verify (longcot.grading) | hendrycks (official §4 scripts)
    gamma: float = 1.0  # discount of the correctness channel (γ_c)
    margin: int = DEFAULT_MARGIN
    classic: ClassicConfig = field(default_factory=ClassicConfig)
    cosine: CosineConfig = field(default_factory=CosineConfig)
    repetition: Optional[RepetitionConfig] = None
    overlong: Optional[OverlongConfig] = None  # DAPO soft overlong punishment channel
    verifier: VerifierConfig = field(default_factory=VerifierConfig)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "RewardConfig":
        _check_choice("reward.kind", self.kind, REWARD_KINDS)
        _check_choice("reward.correctness", self.correctness, CORRECTNESS_SOURCES)
        _check_choice("reward.rule_grader", self.rule_grader, RULE_GRADERS)
        _check_gamma("reward.gamma", self.gamma)
        if self.margin < 0:
            raise ValueError(f"reward.margin must be >= 0, got {self.margin}")
        if self.repetition is not None:
            self.repetition.validate()
        if self.overlong is not None:
            self.overlong.validate()
        self.verifier.validate()
        return self


def to_reward_config(cfg: Any) -> RewardConfig:
    """A validated :class:`RewardConfig` from a RewardConfig, an OmegaConf node or a plain mapping.

    Unknown keys and wrong types fail (the mapping is merged onto the structured schema).
    """
    from omegaconf import OmegaConf

    if isinstance(cfg, RewardConfig):
        return cfg.validate()
    merged = OmegaConf.merge(OmegaConf.structured(RewardConfig), cfg)
    obj = OmegaConf.to_object(merged)
    assert isinstance(obj, RewardConfig)
    return obj
