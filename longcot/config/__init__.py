"""Typed Hydra configs: dataclass schemas registered in Hydra's ConfigStore."""
