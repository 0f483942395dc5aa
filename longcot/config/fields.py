"""Dataclass fields that carry their own value checks (the one home of a group's value rules).

``option("hf", BACKENDS)`` or ``at_least(16, 1)`` declare a field together with what is valid for it;
:func:`longcot.config.validate.validate` walks every typed node of a composed config and applies them,
naming the key and the valid values. A field's list of valid options lives only here.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, Callable, Sequence

from omegaconf import MISSING


def option(default: Any, choices: Sequence[Any] | Callable[[], Sequence[Any]]) -> Any:
    """A field whose value must be one of ``choices`` (or of what a callable returns: a registry)."""
    return field(default=default, metadata={"choices": choices if callable(choices) else tuple(choices)})


def at_least(default: Any, lo: float, *, open_: bool = False) -> Any:
    """A number >= ``lo`` (> ``lo`` with ``open_``); None passes (it means unset / unbounded)."""
    return field(default=default, metadata={"lo": lo, "lo_open": open_})


def in_range(default: Any, lo: float, hi: float, *, open_: bool = False) -> Any:
    """A number in [lo, hi] ((lo, hi] with ``open_``); None passes."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "lo_open": open_})


def pattern(default: Any, regex: str, valid: str) -> Any:
    """A string matching ``regex``; ``valid`` describes the valid values for the message."""
    return field(default=default, metadata={"pattern": regex, "valid": valid})


__all__ = ["MISSING", "at_least", "in_range", "option", "pattern"]
