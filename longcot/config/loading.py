"""Locate the config tree and load single group options outside of a Hydra composition."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def group_options(group: str) -> list[str]:
    """Names of the YAML options of a config group."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def load_group_option(group: str, name: str, schema: type) -> DictConfig:
    """``conf/<group>/<name>.yaml`` merged onto its dataclass schema (typos fail with the key's name)."""
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown {group} {name!r}; valid: {', '.join(group_options(group))}")
    node = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.load(path))
    OmegaConf.set_struct(node, True)
    return node
