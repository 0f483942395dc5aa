"""RL prompts with silver answers (paper §5.2, Table 3): ``rl.prompts`` names a silver distill run.

A ``distill.mode=silver`` run extracts a short reference answer from each noisy web solution and
samples the teacher on every prompt that has one (:mod:`longcot.distill.silver`). Its graded candidates
give the RL prompt set with the *extracted* answer as the reference (the official scripts'
``--answer_key ref_ans_boxed`` / ``extracted_answer``):

* ``filter: all`` -- "unfiltered": every prompt with an extracted answer;
* ``filter: agreed`` -- "filtered": prompts where at least one of the teacher's first ``n`` samples
  (the paper: QwQ-32B-Preview, 2) matched the extracted answer (Table 3's note: ~189k responses for
  115k prompts, i.e. not both).

The distill run's data is ``rl.prompts.data`` (default: the RL config's data group without its
``limit``). The prompts keep the distill run's order; ``data.limit`` of the RL config takes the first
ones (the official ``--max_samples 30000``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

from longcot.data.records import Problem

PROMPT_FILTERS = ("all", "agreed")


@dataclass
class DistillPrompts:
    """``rl.prompts``: the silver distill run (planned like an ``sft.mix`` component: ``model=<teacher>``,
    ``generation=<teacher_generation>``, ``data=<data>``, then the dotted ``overrides``) and the filter.
    An empty ``teacher`` (the default) means the RL prompts are the ``data`` group's."""

    teacher: str = ""
    teacher_generation: Optional[str] = None
    data: Optional[str] = None
    overrides: list[str] = field(default_factory=list)
    filter: str = "agreed"  # all | agreed
    n: int = 2  # samples per prompt that may agree (filter=agreed)

    @property
    def enabled(self) -> bool:
        return bool(self.teacher)

    def validate(self) -> "DistillPrompts":
        if self.filter not in PROMPT_FILTERS:
            raise ValueError(f"rl.prompts.filter={self.filter!r}; valid: {', '.join(PROMPT_FILTERS)}")
        if self.n < 1:
            raise ValueError(f"rl.prompts.n must be >= 1, got {self.n}")
        return self


def select_prompts(problems: Sequence[Problem], rows: Iterable[dict[str, Any]], *, filter: str, n: int,
                   limit: Optional[int] = None) -> list[Problem]:
    """``problems`` (the distill run's prompt set, in its order) that have graded candidates ``rows``
    (``prompt_id``, ``candidate_index``, ``answer`` = the extracted reference, ``correct``), answered
    with that reference and filtered; the first ``limit`` of them."""
    if filter not in PROMPT_FILTERS:
        raise ValueError(f"rl.prompts.filter={filter!r}; valid: {', '.join(PROMPT_FILTERS)}")
    answer: dict[str, str] = {}
    agreed: set[str] = set()
    for r in rows:
        pid = str(r["prompt_id"])
        answer.setdefault(pid, str(r["answer"]))
        if r.get("correct") and int(r["candidate_index"]) < n:
            agreed.add(pid)
    keep = answer.keys() if filter == "all" else agreed
    out = [Problem(p.id, p.problem, answer[p.id], p.kind, dict(p.meta)) for p in problems if p.id in keep]
    return out[:limit] if limit else out


__all__ = ["PROMPT_FILTERS", "DistillPrompts", "select_prompts"]
