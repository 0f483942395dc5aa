"""Rejection sampling (§3): N teacher candidates per prompt, graded; smaller N derived as prefixes.

Candidate ``i`` of a prompt is drawn from ``sample_seed(prompt_seed(distill.seed, prompt id), i)``
whatever the batch or shard, so the first N candidates of one sampling at ``M >= N`` are exactly
the N candidates a sampling at N would draw: the Fig. 1 grid (N = 32 ... 256) costs one sampling
at the largest N instead of the sum of all N.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from longcot.data.prompts import problem_text
from longcot.data.records import Problem
from longcot.generation.base import Generator, Message, SamplingParams, prompt_seed

log = logging.getLogger(__name__)

Row = dict[str, Any]


@dataclass(frozen=True)
class TeacherPlan:
    """What one teacher samples: the sampling settings (``params.n`` = the largest N) and every N served."""

    teacher: str
    params: SamplingParams
    ns: tuple[int, ...]  # sorted, the last is params.n

    @property
    def candidates_naive(self) -> int:
        """Candidates per prompt if every N were sampled separately."""
        return sum(self.ns)

    @property
    def saving(self) -> float:
        """Fraction of candidates saved by deriving smaller N from the largest."""
        return 1.0 - self.params.n / self.candidates_naive


def teacher_plan(cfg: Any) -> TeacherPlan:
    """Resolve sampling settings, per key: ``generation.*`` > ``distill.*`` (when not null) >
    ``distill.teachers[model.name]`` > :data:`~longcot.distill.config.SAMPLING_DEFAULTS`.

    ``generation`` has temperature, top_p, max_new_tokens and n (not derive_n).
    """
    from longcot.distill.config import SAMPLING_DEFAULTS

    d, gen = cfg.distill, cfg.generation
    teacher = str(cfg.model.name)
    over = d.teachers.get(teacher) if d.teachers else None

    def pick(key: str) -> Any:
        layers = (gen if key != "derive_n" else None, d, over)
        for layer in layers:
            value = getattr(layer, key, None) if layer is not None else None
            if value is not None:
                return value
        return SAMPLING_DEFAULTS[key]

    n = int(pick("n"))
    derive = [int(x) for x in (pick("derive_n") or [])]
    bad = [x for x in derive if not 1 <= x <= n]
    if n < 1 or bad:
        raise ValueError(f"distill.derive_n={derive} must lie in 1..distill.n={n} (n >= 1)")
    params = SamplingParams(
        temperature=float(pick("temperature")),
        top_p=float(pick("top_p")),
        max_new_tokens=int(pick("max_new_tokens")),
        n=n,
        seed=int(d.seed),
    )
    return TeacherPlan(teacher=teacher, params=params, ns=tuple(sorted(set(derive) | {n})))


def user_prompt(problem: Problem, template: str) -> str:
    return problem_text(problem, template)


def chat(problem: Problem, system_prompt: str | None, template: str) -> list[Message]:
    messages: list[Message] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages.append({"role": "user", "content": user_prompt(problem, template)})
    return messages


def candidate_seeds(problems: Sequence[Problem], seed: int) -> list[int]:
    """Each prompt's seed, fixed by the run seed and the prompt id (not its position or shard)."""
    return [prompt_seed(seed, p.id) for p in problems]


def sample_candidates(
    generator: Generator,
    problems: Sequence[Problem],
    params: SamplingParams,
    *,
    system_prompt: str | None,
    template: str,
    progress: bool = True,
) -> list[Row]:
    """``params.n`` candidate rows per problem (ungraded), ordered by problem then candidate index."""
    prompts = [chat(p, system_prompt, template) for p in problems]
    outs = generator.generate(prompts, params, seeds=candidate_seeds(problems, params.seed), progress=progress)
    rows: list[Row] = []
    for p, prompt, comps in zip(problems, prompts, outs):
        for c in sorted(comps, key=lambda c: c.sample_index):
            rows.append(
                {
                    "prompt_id": p.id,
                    "candidate_index": int(c.sample_index),
                    "prompt": prompt[-1]["content"],
                    "response": c.text,
                    "answer": p.answer,
                    "finish_reason": c.finish_reason,
                    "teacher_tokens": int(c.num_tokens),
                }
            )
    return rows


def grade_rows(problems: Sequence[Problem], rows: list[Row], *, timeout: float, workers: int) -> None:
    """Set ``correct`` and ``extracted_answer`` of each row (graded against ``row["answer"]``)."""
    from longcot.grading import extract_answer
    from longcot.grading.by_kind import grade_batch

    by_id = {p.id: p for p in problems}
    refs = [Problem(id=r["prompt_id"], problem="", answer=r["answer"], kind=by_id[r["prompt_id"]].kind, meta=by_id[r["prompt_id"]].meta) for r in rows]
    verdicts = grade_batch(refs, [r["response"] for r in rows], timeout=timeout, workers=workers)
    for r, ok in zip(rows, verdicts):
        r["correct"] = bool(ok)
        r["extracted_answer"] = extract_answer(r["response"])


@dataclass
class Selection:
    """Which graded candidates become SFT data (does not change the sampling)."""

    dedupe: bool = True
    max_per_prompt: int | None = None
    keep_truncated: bool = False


@dataclass
class SelectStats:
    candidates: int = 0
    correct: int = 0
    truncated_dropped: int = 0
    duplicates_removed: int = 0
    capped: int = 0

    def add(self, other: "SelectStats") -> None:
        for k in vars(self):
            setattr(self, k, getattr(self, k) + getattr(other, k))


def select_prefix(candidates: Iterable[Row], n: int, sel: Selection) -> tuple[list[Row], SelectStats]:
    """The kept responses of one prompt at N = ``n``: candidates ``0..n-1``, correct, deduplicated, capped.

    Nested in ``n``: every row kept at ``n`` is kept at any larger N (dedupe and the cap keep the
    earliest candidates).
    """
    stats = SelectStats()
    kept: list[Row] = []
    seen: set[str] = set()
    for row in sorted(candidates, key=lambda r: r["candidate_index"]):
        if row["candidate_index"] >= n:
            break
        stats.candidates += 1
        if not row["correct"]:
            continue
        stats.correct += 1
        if row["finish_reason"] == "length" and not sel.keep_truncated:
            stats.truncated_dropped += 1
            continue
        if sel.dedupe:
            if row["response"] in seen:
                stats.duplicates_removed += 1
                continue
            seen.add(row["response"])
        if sel.max_per_prompt is not None and len(kept) >= sel.max_per_prompt:
            stats.capped += 1
            continue
        kept.append(row)
    return kept, stats
