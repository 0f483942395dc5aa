"""Stages a run can execute (``stage=NAME``): one module each."""

from __future__ import annotations

import importlib
from typing import Any, Callable

STAGES = {"eval": "longcot.stages.eval", "distill": "longcot.stages.distill"}


def get_stage(name: str) -> Callable[[Any], Any]:
    """The ``run(cfg)`` function of stage ``name``."""
    if name not in STAGES:
        raise ValueError(f"stage.name={name!r}; valid: {', '.join(sorted(STAGES))}")
    return importlib.import_module(STAGES[name]).run
