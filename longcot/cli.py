"""The ``longcot`` command: compose a run from ``conf/`` with Hydra, plan its stage, run it.

    longcot                                   # the embedded CPU default (tiny model, eval)
    longcot model=qwen2.5-math-7b generation=vllm benchmark=aime24
    longcot +experiment=NAME                  # an ablation grid from experiments/
    longcot -m +experiment=NAME cluster=slurm # a study: its stage graph, each stage run a SLURM job
    longcot status +experiment=NAME           # a study's points x stages; collect: its results

Config errors (an unknown key, value or option) exit 2 with one line naming the key; errors while
running (a malformed data line, a missing model) exit 1 with one line. ``HYDRA_FULL_ERROR=1`` or
``LONGCOT_DEBUG=1`` shows the traceback instead.
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


def debug() -> bool:
    return any(os.environ.get(v, "") not in ("", "0") for v in ("HYDRA_FULL_ERROR", "LONGCOT_DEBUG"))


def fail(kind: str, exc: BaseException, code: int) -> None:
    """Print ``exc`` as one line (the traceback with HYDRA_FULL_ERROR=1 / LONGCOT_DEBUG=1) and exit."""
    if debug():
        raise exc
    message = " ".join(str(exc).split()) or type(exc).__name__
    print(f"longcot: {kind}: {message}", file=sys.stderr)
    sys.exit(code)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _main(cfg: DictConfig) -> object:
    from hydra.core.hydra_config import HydraConfig

    from longcot.config.validate import validate
    from longcot.stages import plan_all, run_all

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from longcot.training.distributed import detect

    if not detect().is_main:  # one process of a multi-process job (torchrun / srun): rank 0 logs the run
        logging.getLogger("longcot").setLevel(logging.WARNING)
    try:
        validate(cfg, HydraConfig.get().launcher.get("_target_"))
        plans = plan_all(cfg)  # the stage's own checks and identities, before anything runs
    except (ValueError, FileNotFoundError) as exc:  # ConfigError, the stages' checks, a missing file
        fail("config error", exc, 2)
    try:
        return run_all(plans)
    except (ValueError, OSError, RuntimeError, KeyError) as exc:
        fail("error", exc, 1)
    return None


def main() -> None:
    from longcot.study.cli import maybe_study

    code = maybe_study(sys.argv[1:])  # a study (+experiment=NAME with study.name), status or collect
    if code is not None:
        sys.exit(code)
    _main()
