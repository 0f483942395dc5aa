"""The one record type every benchmark and prompt set is normalised to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """A problem with its reference answer.

    ``kind`` selects the grader: ``math`` (math-verify equivalence), ``aime`` (integers),
    ``theoremqa`` (typed by ``meta["answer_type"]``), ``mmlu_pro`` (option letter), ``toy``.
    """

    id: str
    problem: str
    answer: str
    kind: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False)
