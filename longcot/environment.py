"""What computed a run, kept beside its identity: the host, Python and library versions, the CPU kernels
torch dispatches to (``torch.backends.cpu.get_cpu_capability()``), the GPU and the thread count.

Not part of the identity: the same config on another machine is the same experiment, and its outputs
are meant to agree. They do not always agree bit for bit (other kernels, other rounding), and on the
twin task the tiny student's SFT can land on either side of its learning jump from a last-bit
difference (README "Run identity"), so every (re)start of a run appends its environment to
``environment.json`` in the run directory: a run resumed elsewhere shows both. A multi-process job
records rank 0's process only; nvidia-smi's GPU name is the machine's first GPU.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from longcot import runs

log = logging.getLogger(__name__)
FILE = "environment.json"
PACKAGES = ("torch", "transformers", "vllm", "math-verify")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu() -> str | None:
    """The GPU's name, without initialising CUDA in this process (a CUDA context before a fork breaks
    forked workers): torch's name once CUDA is up, else nvidia-smi's; None without a GPU."""
    import torch

    if torch.cuda.is_initialized():
        return torch.cuda.get_device_name(torch.cuda.current_device())
    if torch.cuda.device_count() == 0:  # NVML first: unlike is_available(), it leaves fork safe
        return None
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=20, check=True).stdout.splitlines()
            return out[0].strip() if out else "cuda"
        except (OSError, subprocess.SubprocessError):
            pass
    return "cuda"


def describe() -> dict[str, Any]:
    """This process's environment, as recorded in a run directory."""
    import torch

    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": os.uname().nodename,
        "python": platform.python_version(),
        "packages": {p: v for p in PACKAGES if (v := _version(p)) is not None},
        "cpu": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "cuda": _gpu(),
    }


def kernels(env: dict[str, Any]) -> str:
    """The part of an environment that decides the arithmetic: torch's version, CPU kernels and GPU."""
    parts = (f"torch {env.get('packages', {}).get('torch')}", env.get("cpu_capability"), env.get("cuda"))
    return " ".join(str(x) for x in parts if x)


def read(run_dir: Path) -> list[dict[str, Any]]:
    """Every environment a run was (re)started in, oldest first ([] for a run from before this file, or
    one whose file cannot be read: a diagnostic never stops a run or a collect)."""
    path = Path(run_dir) / FILE
    if not path.is_file():
        return []
    try:
        envs = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable (%s); its environments are not known", path, exc)
        return []
    return envs if isinstance(envs, list) else []


def record(run_dir: Path) -> dict[str, Any]:
    """Append this process's environment to the run directory's ``environment.json`` (atomic write:
    concurrent starts of one run, such as distill shard jobs, may keep one entry of theirs, never a torn file)."""
    env = describe()
    try:
        runs.write_json(Path(run_dir) / FILE, [*read(run_dir), env])
    except OSError as exc:
        log.warning("%s: not written (%s)", Path(run_dir) / FILE, exc)
    return env
