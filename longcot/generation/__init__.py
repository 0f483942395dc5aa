"""Generation backends behind one interface (:class:`~longcot.generation.base.Generator`).

``build_generator(model_cfg, gen_cfg)`` dispatches on ``gen_cfg.backend`` through the
:data:`BACKENDS` registry. Backends are imported lazily: importing this package pulls in neither
transformers nor vllm.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING, Callable

from longcot.generation.base import (
    Completion,
    FinishReason,
    Generator,
    Message,
    Prompt,
    SamplingParams,
    prompt_seed,
    sample_seed,
)

if TYPE_CHECKING:  # pragma: no cover
    from longcot.generation.config import GenerationConfig
    from longcot.models.config import ModelConfig

BackendBuilder = Callable[["ModelConfig", "GenerationConfig"], Generator]

# backend name -> "module:function" (imported on first use) or a callable builder.
# Each builder has the signature ``build(model_cfg, gen_cfg) -> Generator``.
BACKENDS: dict[str, str | BackendBuilder] = {
    "hf": "longcot.generation.hf:build",
    "vllm": "longcot.generation.vllm:build",
    "synthetic": "longcot.generation.synthetic:build",  # CPU teacher for the toy task
}


def register_backend(name: str, builder: str | BackendBuilder) -> None:
    """Add or replace a backend: a ``"module:function"`` path or a ``build(model_cfg, gen_cfg)`` callable."""
    BACKENDS[name] = builder


def _resolve_builder(name: str) -> BackendBuilder:
    builder = BACKENDS[name]
    if callable(builder):
        return builder
    module_name, _, attr = builder.partition(":")
    return getattr(importlib.import_module(module_name), attr or "build")


def build_generator(model_cfg: "ModelConfig", gen_cfg: "GenerationConfig") -> Generator:
    """The generator of ``gen_cfg.backend`` for ``model_cfg``.

    Raises ``ValueError`` naming the valid backends for an unknown one.
    """
    name = gen_cfg.backend
    if name not in BACKENDS:
        raise ValueError(f"unknown generation backend {name!r}; valid: {', '.join(sorted(BACKENDS))}")
    return _resolve_builder(name)(model_cfg, gen_cfg)


def apply_overrides(params: SamplingParams, gen_cfg: "GenerationConfig") -> SamplingParams:
    """``params`` with the non-None sampling overrides of ``gen_cfg`` (max_new_tokens, temperature, top_p, n)."""
    changes = {
        f: getattr(gen_cfg, f)
        for f in ("max_new_tokens", "temperature", "top_p", "n")
        if getattr(gen_cfg, f, None) is not None
    }
    return dataclasses.replace(params, **changes) if changes else params


__all__ = [
    "BACKENDS",
    "Completion",
    "FinishReason",
    "Generator",
    "Message",
    "Prompt",
    "SamplingParams",
    "apply_overrides",
    "build_generator",
    "prompt_seed",
    "register_backend",
    "sample_seed",
]
