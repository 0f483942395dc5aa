"""One validation pass over a composed config, before any stage starts.

Hydra and the dataclass schemas already reject misspelled keys, wrong types and unknown group
options; this pass rejects values the types cannot express (an unknown choice, a probability
outside [0, 1], a launcher that does not match ``cluster``), naming the key and the valid options.
"""

from __future__ import annotations

import re
from typing import Any

from omegaconf import DictConfig


class ConfigError(ValueError):
    """An invalid config value; the message names the key."""


CHOICES: dict[str, tuple[str, ...]] = {
    "model.dtype": ("auto", "float32", "bfloat16", "float16"),
    "generation.style": ("long", "short"),
    "cluster.name": ("local", "slurm"),
    "logger.name": ("none", "wandb"),
    "logger.mode": ("online", "offline", "disabled"),
    "data.kind": ("math", "toy", "webinstruct"),
    "benchmark.kind": ("math", "aime", "theoremqa", "mmlu_pro", "toy"),
    "algorithm.name": ("ppo", "grpo", "reinforce_pp"),
}
DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def _get(cfg: DictConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _check_range(key: str, value: Any, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False) -> None:
    if value is None:
        return
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise ConfigError(f"{key}={value}: must be {'>' if lo_open else '>='} {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{key}={value}: must be <= {hi}")


def validate(cfg: DictConfig, launcher_target: str | None = None) -> None:
    """Raise :class:`ConfigError` for the first invalid value of ``cfg``."""
    from longcot.config.loading import group_options
    from longcot.generation import BACKENDS

    for key, valid in {**CHOICES, "generation.backend": tuple(BACKENDS)}.items():
        value = _get(cfg, key)
        if value not in valid:
            raise ConfigError(f"{key}={value!r}: unknown value; valid: {', '.join(valid)}")
    if not DEVICE.match(str(cfg.generation.device)):
        raise ConfigError(f"generation.device={cfg.generation.device!r}: valid: auto, cpu, cuda, cuda:N")
    for key in ("benchmark.temperature", "generation.temperature", "algorithm.temperature"):
        _check_range(key, _get(cfg, key), 0)
    for key in ("benchmark.top_p", "generation.top_p", "algorithm.top_p"):
        _check_range(key, _get(cfg, key), 0, 1, lo_open=True)
    for key in ("benchmark.num_samples", "benchmark.max_new_tokens", "generation.max_new_tokens", "generation.n",
                "generation.batch_size", "scale.max_problems", "scale.max_new_tokens", "scale.max_samples",
                "eval.grader_workers", "eval.chunk_problems"):
        _check_range(key, _get(cfg, key), 1)
    _check_range("generation.error_rate", cfg.generation.error_rate, 0, 1)
    _check_range("model.rope_theta_scale", cfg.model.rope_theta_scale, 0, lo_open=True)
    _check_range("eval.grader_timeout", cfg.eval.grader_timeout, 0, lo_open=True)
    unknown = [b for b in cfg.eval.benchmarks if b not in group_options("benchmark")]
    if unknown:
        raise ConfigError(f"eval.benchmarks: unknown {unknown}; valid: {', '.join(group_options('benchmark'))}")
    from longcot.rewards.config import to_reward_config

    try:
        to_reward_config(cfg.reward)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if launcher_target is not None:
        on_slurm = "submitit" in launcher_target.lower()
        if on_slurm != (cfg.cluster.name == "slurm"):
            raise ConfigError(
                f"cluster.name={cfg.cluster.name!r} does not match the launcher ({launcher_target}): select the "
                "cluster group (cluster=slurm or cluster=local), which sets both")
