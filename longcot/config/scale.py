"""Run scale: ``scale=smoke`` caps every stage's work (problems, new tokens, samples) so a whole
sweep can be smoke-tested on CPU in minutes; ``scale=full`` removes the caps."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, TypeVar

from longcot.generation.base import SamplingParams

T = TypeVar("T")


def cap(value: int | None, limit: int | None) -> int | None:
    """``min(value, limit)`` where ``None`` means unbounded."""
    if limit is None:
        return value
    return limit if value is None else min(value, limit)


def cap_problems(items: list[T], scale: Any) -> list[T]:
    """The first ``scale.max_problems`` items (all of them at full scale)."""
    return items[: scale.max_problems] if scale.max_problems is not None else items


def cap_sampling(params: SamplingParams, scale: Any, *, samples: bool = True) -> SamplingParams:
    """``params`` with ``max_new_tokens`` (and, if ``samples``, ``n``) capped by the scale."""
    changes: dict[str, int] = {"max_new_tokens": cap(params.max_new_tokens, scale.max_new_tokens)}  # type: ignore[dict-item]
    if samples:
        changes["n"] = cap(params.n, scale.max_samples)  # type: ignore[assignment]
    return replace(params, **changes)


def smoke_warning(scale: Any, real: bool, detail: str = "", *, samples: bool = True) -> str | None:
    """The warning a real (non-toy) run at smoke scale must print, or None (``samples``: whether the
    stage caps samples per problem too)."""
    if scale.name != "smoke" or not real:
        return None
    caps = f"{scale.max_problems} problems, " + (f"{scale.max_samples} samples, " if samples else "")
    caps += f"{scale.max_new_tokens} new tokens"
    return f"scale=smoke caps this run to {caps}{f' ({detail})' if detail else ''}; pass scale=full for a real run"
