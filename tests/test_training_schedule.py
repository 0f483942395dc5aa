"""Warmup + cosine schedule against hand-computed values; process topology from launcher env vars."""

from __future__ import annotations

import math

import pytest
import torch

from longcot.training.distributed import DistEnv, detect
from longcot.training.schedule import build_scheduler, warmup_steps


def _lrs(total: int, warmup_ratio: float, min_lr_ratio: float, peak: float = 2.0) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    sched = build_scheduler(opt, total_steps=total, warmup_ratio=warmup_ratio, min_lr_ratio=min_lr_ratio)
    out = []
    for _ in range(total + 1):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_then_cosine_hand_values() -> None:
    # total 10, warmup ceil(0.2 * 10) = 2, floor 0.1 x peak, peak 2.0
    lrs = _lrs(10, 0.2, 0.1)
    assert lrs[0] == 0.0
    assert lrs[1] == pytest.approx(1.0)  # 2.0 * 1/2
    assert lrs[2] == pytest.approx(2.0)  # peak
    # step 3: progress 1/8 -> 2 * (0.1 + 0.9 * 0.5 * (1 + cos(pi / 8))) = 1.931492...
    assert lrs[3] == pytest.approx(2 * (0.1 + 0.45 * (1 + math.cos(math.pi / 8))))
    assert lrs[3] == pytest.approx(1.9314916, abs=1e-6)
    assert lrs[6] == pytest.approx(2 * (0.1 + 0.45 * (1 + math.cos(math.pi / 2))))  # midpoint: 1.1
    assert lrs[10] == pytest.approx(0.2)  # the floor
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:]))  # monotone decay after warmup


def test_no_warmup_starts_at_peak() -> None:
    lrs = _lrs(4, 0.0, 0.0, peak=1.0)
    assert lrs[:5] == pytest.approx([1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4)), 0.0])


def test_schedule_bad_values() -> None:
    assert warmup_steps(256, 0.03) == 8
    with pytest.raises(ValueError, match="warmup_ratio"):
        warmup_steps(10, 1.0)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="total_steps"):
        build_scheduler(opt, total_steps=0, warmup_ratio=0.0)


@pytest.mark.parametrize("env,expected", [
    ({}, DistEnv()),
    # without the per-node variables a job is one node
    ({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}, DistEnv(3, 8, 1, "torchrun", 0, 8)),
    ({"SLURM_PROCID": "5", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1"}, DistEnv(5, 16, 1, "slurm", 0, 16)),
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, DistEnv()),  # a single-task SLURM job is one process
    # torchrun inside a SLURM allocation: torchrun's variables win
    ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, DistEnv(1, 2, 1, "torchrun", 0, 2)),
    # several nodes: torchrun's node rank (GROUP_RANK), SLURM's SLURM_NODEID and per-node task counts
    ({"RANK": "13", "WORLD_SIZE": "16", "LOCAL_RANK": "5", "GROUP_RANK": "1", "LOCAL_WORLD_SIZE": "8"}, DistEnv(13, 16, 5, "torchrun", 1, 8)),
    ({"SLURM_PROCID": "9", "SLURM_NTASKS": "10", "SLURM_LOCALID": "1", "SLURM_NODEID": "3", "SLURM_STEP_TASKS_PER_NODE": "3(x2),2(x2)"},
     DistEnv(9, 10, 1, "slurm", 3, 2)),
])
def test_detect_topology(env, expected) -> None:
    assert detect(env) == expected


def test_detect_bad_env() -> None:
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        detect({"RANK": "0", "WORLD_SIZE": "x"})
