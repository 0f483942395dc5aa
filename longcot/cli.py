"""The ``longcot`` command: compose a run from ``conf/`` with Hydra and execute its stage.

    longcot                                   # the embedded CPU default (tiny model, eval)
    longcot model=qwen2.5-math-7b generation=vllm benchmark=aime24
    longcot +experiment=NAME                  # an ablation grid from experiments/
    longcot -m +experiment=NAME cluster=slurm # fan the grid out to SLURM via submitit
"""

from __future__ import annotations

import logging
import os
import sys

import hydra
from omegaconf import DictConfig

from longcot.config.loading import CONF_DIR
from longcot.config.schema import register_configs

log = logging.getLogger("longcot")
register_configs()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _main(cfg: DictConfig) -> object:
    from hydra.core.hydra_config import HydraConfig

    from longcot.config.validate import validate
    from longcot.stages import get_stage, validate_stage

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        validate(cfg, HydraConfig.get().launcher.get("_target_"))
        validate_stage(cfg.stage.name, cfg)
        stage = get_stage(cfg.stage.name)
    except ValueError as exc:  # ConfigError and the stages' own config checks
        print(f"longcot: config error: {exc}", file=sys.stderr)
        sys.exit(2)
    return stage(cfg)


def main() -> None:
    _main()
