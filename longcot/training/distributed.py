"""Process topology: one process per GPU, launched by ``torchrun`` (``RANK``/``WORLD_SIZE``/
``LOCAL_RANK``/``GROUP_RANK``/``LOCAL_WORLD_SIZE``) or by ``srun`` under SLURM (``SLURM_PROCID``/
``SLURM_NTASKS``/``SLURM_LOCALID``/``SLURM_NODEID``; ``tasks_per_node`` = GPUs per node, any number of
nodes: one task per GPU on every node of the allocation).

Under SLURM the rendezvous comes from the allocation (:func:`slurm_rendezvous`): ``MASTER_ADDR`` = the
job's head node (the first of ``SLURM_JOB_NODELIST``, where task 0 runs), ``MASTER_PORT`` = the port the
batch script found free on that node (study jobs export both, see :mod:`longcot.study.slurm`), else one
derived from the job id and its restart count. The torchrun names (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``GROUP_RANK``) are exported too, so ``init_process_group("env://")``
and DeepSpeed see one topology either way.

Rank 0 (global) writes the shared run directory's files (summary, metrics, DONE, the model); every rank
writes its own part of a checkpoint (``rng/rank-<r>.pt``, DeepSpeed shards) into the same shared
directory, so the run directory must be on a filesystem every node sees: :func:`check_shared_dir`
refuses a job where a node cannot see it. Node-local scratch (``TMPDIR`` and caches) is per node.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
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
    node_rank: int = 0  # torchrun's GROUP_RANK / SLURM_NODEID
    local_world_size: int = 1  # processes on this node

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_local_main(self) -> bool:
        """The first process of this node (node-local work: a node's scratch, its caches)."""
        return self.local_rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def num_nodes(self) -> int:
        return max(1, self.world_size // max(1, self.local_world_size))


def _int(env: Mapping[str, str], key: str) -> int:
    try:
        return int(env[key])
    except ValueError:
        raise ValueError(f"environment variable {key}={env[key]!r} is not an integer") from None


def tasks_on_node(spec: str, node: int) -> int:
    """Tasks on node ``node`` from SLURM's compressed per-node counts, e.g. ``2(x3),1``: 2, 2, 2, 1."""
    counts: list[int] = []
    for part in spec.split(","):
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if not m:
            raise ValueError(f"cannot read SLURM's tasks per node {spec!r}")
        counts += [int(m.group(1))] * int(m.group(2) or 1)
    if not 0 <= node < len(counts):
        raise ValueError(f"node {node} is not in SLURM's tasks per node {spec!r}")
    return counts[node]


def detect(env: Mapping[str, str] | None = None) -> DistEnv:
    """Rank / world size / node from torchrun's variables, else SLURM's (an srun step with more than one
    task), else a single process. Without the per-node variables a job is taken to be one node."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        world = _int(env, "WORLD_SIZE")
        return DistEnv(_int(env, "RANK"), world, _int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else 0, "torchrun",
                       _int(env, "GROUP_RANK") if "GROUP_RANK" in env else 0,
                       _int(env, "LOCAL_WORLD_SIZE") if "LOCAL_WORLD_SIZE" in env else world)
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env and _int(env, "SLURM_NTASKS") > 1:
        world = _int(env, "SLURM_NTASKS")
        node = _int(env, "SLURM_NODEID") if "SLURM_NODEID" in env else 0
        spec = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE")
        return DistEnv(_int(env, "SLURM_PROCID"), world, _int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0,
                       "slurm", node, tasks_on_node(spec, node) if spec else world)
    return DistEnv()


def head_node(nodelist: str) -> str:
    """The first host of a SLURM node list: ``gpu[07-09,12],cpu1`` -> ``gpu07``."""
    m = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not m:
        raise ValueError(f"cannot read SLURM's node list {nodelist!r}")
    prefix, ranges = m.group(1), m.group(2)
    return prefix if ranges is None else prefix + ranges.split(",")[0].split("-")[0]


def derived_port(job_id: str, restart: int = 0) -> int:
    """A port in [20000, 60000) from the job id and its restart count (a requeued job does not meet
    the sockets its previous start left behind)."""
    import zlib

    return 20000 + zlib.crc32(f"{job_id}.{restart}".encode()) % 40000


def slurm_rendezvous(env: Mapping[str, str]) -> dict[str, str]:
    """The ``env://`` variables of an srun task: head node, port, and the torchrun rank names."""
    info = detect(env)
    out = {"RANK": str(info.rank), "WORLD_SIZE": str(info.world_size), "LOCAL_RANK": str(info.local_rank),
           "LOCAL_WORLD_SIZE": str(info.local_world_size), "GROUP_RANK": str(info.node_rank)}
    nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
    if env.get("MASTER_ADDR"):
        out["MASTER_ADDR"] = env["MASTER_ADDR"]
    elif nodes:
        out["MASTER_ADDR"] = head_node(nodes)
    else:
        raise ValueError("an srun task without SLURM_JOB_NODELIST or MASTER_ADDR: cannot find the head node")
    out["MASTER_PORT"] = env.get("MASTER_PORT") or str(derived_port(env.get("SLURM_JOB_ID", "0"),
                                                                     int(env.get("SLURM_RESTART_COUNT", "0") or 0)))
    return out


def init_distributed(backend: str | None = None, shared_dir: str | Path | None = None) -> DistEnv:
    """Join the process group when launched with more than one process (idempotent); return the topology.
    ``shared_dir``: a directory every rank writes into (the run directory): checked to be one
    directory for all nodes (:func:`check_shared_dir`)."""
    import torch
    import torch.distributed as dist

    info = detect()
    if not info.distributed:
        return info
    if info.launcher == "slurm":
        os.environ.update(slurm_rendezvous(os.environ))
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"))
        # leave the group before the interpreter tears down: a live gloo / NCCL group at exit can abort
        # the process ("terminate called without an active exception"), failing a finished job's task
        atexit.register(_leave_at_exit)
        log.info("joined process group: rank %d / %d, node %d / %d, local rank %d / %d (%s, head %s:%s)", info.rank,
                 info.world_size, info.node_rank, info.num_nodes, info.local_rank, info.local_world_size, info.launcher,
                 os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT"))
    if shared_dir is not None:
        check_shared_dir(Path(shared_dir))
    return info


def _leave_at_exit() -> None:
    try:
        shutdown()
    except Exception:  # exiting anyway (e.g. a peer is gone): nothing left to clean
        pass


def check_shared_dir(path: Path, wait_s: float = 10.0) -> None:
    """Every rank must see the files rank 0 writes in ``path`` (the run directory: checkpoints, DONE).
    Rank 0 writes a token there; a rank that cannot read it (``path`` is node-local on its node) fails
    the whole job with the nodes that cannot see it, instead of training into separate directories."""
    import socket

    token = broadcast_from_main(secrets.token_hex(8))
    probe = Path(path) / f".shared-check-{token}.tmp"  # .tmp: a crashed check is swept like any temp file
    if detect().is_main:
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_text(token)
    barrier()
    t0 = time.monotonic()
    seen = False
    while not seen:
        try:
            seen = probe.read_text() == token
        except OSError:
            seen = False
        if seen or time.monotonic() - t0 > wait_s:
            break
        time.sleep(0.2)  # network filesystems may show a new file a moment later
    views = all_gather_objects((seen, socket.gethostname()))
    barrier()
    if detect().is_main:
        probe.unlink(missing_ok=True)
    blind = sorted({host for ok, host in views if not ok})
    if blind:
        raise RuntimeError(f"{path} is not one shared directory for this job: rank 0's file there is not "
                           f"visible on {', '.join(blind)}; put output_root on a filesystem every node mounts "
                           "(node-local scratch is for temporary files only)")


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
