"""Process topology: one process per GPU, launched by ``torchrun`` (``RANK``/``WORLD_SIZE``/
``LOCAL_RANK``) or by ``srun``/submitit under SLURM (``SLURM_PROCID``/``SLURM_NTASKS``/
``SLURM_LOCALID``; ``tasks_per_node`` = GPUs per node, any number of nodes).

Under SLURM without torchrun's variables, submitit's ``TorchDistributedEnvironment`` exports
``MASTER_ADDR`` (first host of the job), ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``
so ``init_process_group("env://")`` works the same way in both cases.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launcher: str = "single"  # single | torchrun | slurm

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _int(env: Mapping[str, str], key: str) -> int:
    try:
        return int(env[key])
    except ValueError:
        raise ValueError(f"environment variable {key}={env[key]!r} is not an integer") from None


def detect(env: Mapping[str, str] | None = None) -> DistEnv:
    """Rank / world size from torchrun's variables, else SLURM's (an srun step), else a single process."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        return DistEnv(_int(env, "RANK"), _int(env, "WORLD_SIZE"), _int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else 0, "torchrun")
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env and _int(env, "SLURM_NTASKS") > 1:
        return DistEnv(_int(env, "SLURM_PROCID"), _int(env, "SLURM_NTASKS"), _int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0, "slurm")
    return DistEnv()


def init_distributed(backend: str | None = None) -> DistEnv:
    """Join the process group when launched with more than one process (idempotent); return the topology."""
    import torch
    import torch.distributed as dist

    info = detect()
    if not info.distributed:
        return info
    if info.launcher == "slurm" and "MASTER_ADDR" not in os.environ:
        from submitit.helpers import TorchDistributedEnvironment

        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"))
        log.info("joined process group: rank %d / %d (%s)", info.rank, info.world_size, info.launcher)
    return info


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(values: list[float], device: str | None = None) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (identity in a single process). ``device``:
    where the reduction runs (None: this rank's GPU under NCCL, else the CPU)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    if device is None:
        device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_gather_objects(obj: object) -> list:
    """Every rank's ``obj`` (picklable) in rank order (``[obj]`` in a single process)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_from_main(obj: object) -> object:
    """Rank 0's ``obj`` on every rank (``obj`` in a single process): one decision for the whole job,
    e.g. which checkpoint to resume from, whatever each node's filesystem view says."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown() -> None:
    """Leave the process group (every rank calls it), e.g. before single-process work on rank 0."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_device(setting: str, info: DistEnv) -> "torch.device":
    """The device of this process: ``auto`` = ``cuda:<local rank>`` when CUDA is available, else CPU;
    ``cuda`` = ``cuda:<local rank>``; anything else as given."""
    import torch

    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device=cuda but CUDA is not available on this machine")
        return torch.device(f"cuda:{info.local_rank}")
    if setting.startswith("cuda:") and info.distributed:
        raise ValueError(f"device={setting} in a {info.world_size}-process job would put every rank on one GPU; "
                         "use device=cuda (or auto): each rank takes cuda:<local rank>")
    return torch.device(setting)
