"""Stages a run can execute (``stage=NAME``): one module each."""

from __future__ import annotations

import importlib
from typing import Any, Callable

STAGES = {"eval": "longcot.stages.eval", "distill": "longcot.stages.distill"}


def _module(name: str) -> Any:
    if name not in STAGES:
        raise ValueError(f"stage.name={name!r}; valid: {', '.join(sorted(STAGES))}")
    return importlib.import_module(STAGES[name])


def get_stage(name: str) -> Callable[[Any], Any]:
    """The ``run(cfg)`` function of stage ``name``."""
    return _module(name).run


def validate_stage(name: str, cfg: Any) -> None:
    """Run stage ``name``'s own up-front checks (its ``validate(cfg)``, if it has one)."""
    check = getattr(_module(name), "validate", None)
    if check is not None:
        check(cfg)
