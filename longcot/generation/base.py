"""The generation layer's one interface: chat prompts in, sampled completions out.

Every backend (HF transformers, vLLM, the synthetic teacher) implements :class:`Generator`.
Sampling is reproducible per (prompt seed, sample index): sample ``i`` of a prompt whose seed
is ``s`` is drawn with ``sample_seed(s, i)`` whatever the batch it lands in, so the first ``N``
of ``M > N`` samples are exactly the ``N`` samples one would get asking for ``N``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
import os
from typing import Literal, Protocol, Sequence, runtime_checkable

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": str}
Prompt = Sequence[Message]
FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings shared by every backend (paper eval defaults: t=0.7, top-p=0.95)."""

    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 16384
    n: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")


@dataclass(frozen=True)
class Completion:
    """One sampled response."""

    text: str
    token_ids: tuple[int, ...]
    finish_reason: FinishReason  # "stop": ended by EOS/stop string; "length": hit max_new_tokens
    prompt_tokens: int
    sample_index: int = 0
    # log-prob of each of ``token_ids`` under the engine's model, before temperature and top-p (vLLM's
    # default logprobs_mode="raw_logprobs"), when the backend was asked for them (``return_logprobs``
    # of the HF and vLLM generators: RL's truncated importance sampling); else None
    logprobs: tuple[float, ...] | None = None

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


def sample_seed(prompt_seed: int, sample_index: int) -> int:
    """Seed of sample ``sample_index`` of a prompt: a stable 63-bit hash, independent of batching."""
    digest = hashlib.blake2b(f"{prompt_seed}:{sample_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def prompt_seed(base_seed: int, prompt_key: str) -> int:
    """Seed of a prompt from the run seed and a stable prompt key (e.g. the problem id)."""
    digest = hashlib.blake2b(f"{base_seed}:{prompt_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def resolve_seeds(n_prompts: int, params: SamplingParams, seeds: Sequence[int] | None, first_sample: int = 0) -> list[int]:
    """Per-prompt seeds for a ``generate`` call (default: ``prompt_seed(params.seed, str(i))``), validated."""
    if first_sample < 0:
        raise ValueError(f"first_sample must be >= 0, got {first_sample}")
    if seeds is None:
        return [prompt_seed(params.seed, str(i)) for i in range(n_prompts)]
    if len(seeds) != n_prompts:
        raise ValueError(f"got {len(seeds)} seeds for {n_prompts} prompts")
    return [int(s) for s in seeds]


class Generator(Protocol):
    """A generation backend."""

    def generate(
        self,
        prompts: Sequence[Prompt],
        params: SamplingParams,
        *,
        seeds: Sequence[int] | None = None,
        first_sample: int = 0,
        progress: bool = True,
    ) -> list[list[Completion]]:
        """Sample ``params.n`` completions for each chat prompt.

        ``seeds[i]`` is prompt i's seed (default: ``prompt_seed(params.seed, str(i))``);
        completions are sample indices ``first_sample .. first_sample + n - 1``, so a caller can
        extend an earlier call without redrawing. Returns one list of ``n`` completions per prompt.
        """
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts of plain texts under this backend's tokenizer."""
        ...


@runtime_checkable
class WeightReloadable(Protocol):
    """A backend that can swap in new policy weights without being rebuilt (RL rollouts)."""

    def reload_weights(self, checkpoint_dir: str | os.PathLike) -> float:
        """Load the weights in ``checkpoint_dir`` (an HF ``save_pretrained`` directory with
        ``*.safetensors`` files of the same architecture) into the running engine, in place.

        After it returns, every later ``generate`` call samples from the new weights. Returns the
        seconds the reload took.
        """
        ...


def reload_weights(generator: Generator, checkpoint_dir: str | os.PathLike) -> float:
    """``generator.reload_weights(checkpoint_dir)``, or a ValueError naming the backends that can."""
    if not isinstance(generator, WeightReloadable):
        raise ValueError(
            f"generation backend {type(generator).__name__} cannot reload weights in place; "
            "use generation=vllm (VLLMGenerator.reload_weights)"
        )
    return generator.reload_weights(checkpoint_dir)
