"""One validation pass over a composed config, before any stage plans.

* Every key must exist in its group's dataclass: a key added with ``+`` (``+benchmark.limt=5``) that
  the schema lacks fails with the close matches (Hydra accepts it silently).
* Every field's own rule (declared with the field: :mod:`longcot.config.fields`) is applied,
  naming the key and the valid values.
* Rules across fields or groups live here (:func:`cross_checks`).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf


class ConfigError(ValueError):
    """An invalid config value; the message names the key."""


def _check_field(key: str, value: Any, meta: Any) -> None:
    if value is None:
        return
    choices = meta.get("choices")
    if choices is not None:
        valid = tuple(choices() if callable(choices) else choices)
        if value not in valid:
            raise ConfigError(f"{key}={value!r}: unknown value; valid: {', '.join(map(str, valid))}")
    if "pattern" in meta and not re.match(meta["pattern"], str(value)):
        raise ConfigError(f"{key}={value!r}: valid: {meta['valid']}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and (value <= lo if meta.get("lo_open") else value < lo):
        raise ConfigError(f"{key}={value}: must be {'>' if meta.get('lo_open') else '>='} {lo}"
                          + (" (null means no limit)" if key.endswith(("limit", "max_problems", "max_samples")) else ""))
    if hi is not None and value > hi:
        raise ConfigError(f"{key}={value}: must be <= {hi}")


def check_node(node: DictConfig, prefix: str = "") -> None:
    """Unknown keys and field rules of a typed node and of every typed node below it."""
    schema = OmegaConf.get_type(node)
    if schema is None or not dataclasses.is_dataclass(schema):
        return  # a free-form dict (e.g. distill.teachers): its values are checked by its owner
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key in node.keys():
        name = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=3)
            hint = f"; did you mean {', '.join(f'{prefix}{c}' for c in close)}?" if close else ""
            raise ConfigError(f"{name}: no such key in {schema.__name__}{hint}")
        value = node._get_node(key)
        if isinstance(value, DictConfig):
            check_node(value, f"{name}.")
        elif not isinstance(value, ListConfig):
            _check_field(name, node[key], fields[key].metadata)


def cross_checks(cfg: DictConfig, launcher_target: str | None) -> None:
    """Rules that relate several fields or groups."""
    from longcot.config.loading import group_options

    for group in ("benchmark", "data"):
        node = cfg[group]
        if node.kind == "toy" and (node.path or node.dataset_id):
            key = "path" if node.path else "dataset_id"
            raise ConfigError(f"{group}.{key}={node[key]!r} with {group}.kind=toy: the toy task is generated, "
                              f"not read; drop {group}.{key} or choose another {group}")
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


def validate(cfg: DictConfig, launcher_target: str | None = None) -> None:
    """Raise :class:`ConfigError` for the first unknown key or invalid value of ``cfg``."""
    check_node(cfg)
    cross_checks(cfg, launcher_target)
