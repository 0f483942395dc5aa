"""Silver supervision from noisy web data (§5): extracted reference answers, then rejection sampling.

WebInstruct-style records are a question and a scraped solution with no reliable short answer. An
instruct model extracts one (greedy, at most 512 new tokens, answering
``The final answer is $\\boxed{...}$``); prompts with no extractable answer are dropped; teacher
responses (2 per prompt in the paper) are graded against the extracted reference and a prompt is
kept when at least one matches. Near-duplicate questions can be removed first (MinHash LSH,
``datasketch``, imported lazily).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any, Sequence

from longcot.data.records import Problem
from longcot.generation.base import Generator, SamplingParams

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- loading
def load_web_problems(data: Any, silver: Any) -> list[Problem]:
    """The question/solution records of ``data`` as Problems with an empty answer and
    ``meta["solution"]`` (the scraped solution). ``data.kind=toy`` builds noisy ones (:func:`toy_web_problems`)."""
    from longcot.data.loading import DataError, _hub_records, read_records, resolve_source
    from longcot.data.toy import toy_problems

    if data.kind == "toy":
        base = toy_problems(data.toy_size, data.toy_seed, prefix=data.name, level=data.toy_level)
        problems = toy_web_problems(base, silver.toy_noise, silver.toy_missing, seed=data.toy_seed)
    else:
        source, where = resolve_source(data.path, data.shared_file, data.dataset_id, "data")
        rows = read_records(Path(where)) if source == "file" else _hub_records(where, data.dataset_config, data.split)
        problems = []
        for i, row in enumerate(rows):
            for key in (data.problem_field, data.solution_field):
                if key not in row:
                    raise DataError(f"{where} record {i}: missing field {key!r} (fields: {sorted(row)}); "
                                    "set data.problem_field / data.solution_field")
            rid = str(row.get(data.id_field or "", i)) if data.id_field in row else str(i)
            problems.append(Problem(id=rid, problem=str(row[data.problem_field]), answer="", kind="math",
                                    meta={"solution": str(row[data.solution_field])}))
        if len({p.id for p in problems}) != len(problems):
            problems = [Problem(str(i), p.problem, p.answer, p.kind, p.meta) for i, p in enumerate(problems)]
    return problems[: data.limit] if data.limit else problems


def toy_web_problems(problems: Sequence[Problem], noise: float, missing: float, seed: int = 0) -> list[Problem]:
    """WebInstruct-like records for toy problems: a scraped prose solution whose final number is
    wrong with probability ``noise`` and absent with probability ``missing``. ``meta["true_answer"]``
    keeps the truth (for checking the pipeline; the pipeline never reads it)."""
    from longcot.generation.synthetic import parse_expression, reduce_once, render

    out = []
    for p in problems:
        rng = random.Random(f"toy-web:{seed}:{p.id}")
        expr = parse_expression(p.problem.split("$")[1])
        assert expr is not None, p.problem
        parts = []
        while len(expr) > 1:
            expr, (a, op, b, v) = reduce_once(expr)  # type: ignore[misc]
            parts.append(f"${render([a, op, b])} = {v}$")
        u = rng.random()
        if u < missing:
            solution = "The answer follows directly from the figure in the original post."
        else:
            final = int(expr[0]) + (rng.choice([-1, 1]) * rng.randint(1, 20) if u < missing + noise else 0)
            solution = f"First {', then '.join(parts)}. Hence the result is {final}."
        out.append(Problem(p.id, p.problem, "", "math", {"solution": solution, "true_answer": p.answer}))
    return out


# --------------------------------------------------------------------------- extraction
def extraction_prompt(problem: Problem, template: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": template.format(question=problem.problem, solution=problem.meta["solution"])}]


def extract_references(
    generator: Generator, problems: Sequence[Problem], template: str, max_new_tokens: int, *, progress: bool = True
) -> list[tuple[str | None, str]]:
    """(reference answer or None, the extractor's raw output) per problem; greedy decoding."""
    from longcot.grading import extract_answer

    params = SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens, n=1, seed=0)
    outs = generator.generate([extraction_prompt(p, template) for p in problems], params, progress=progress)
    refs = []
    for out in outs:
        text = out[0].text
        ans = extract_answer(text)
        refs.append((ans if ans and ans.strip() else None, text))
    return refs


def with_references(problems: Sequence[Problem], refs: Sequence[tuple[str | None, str]]) -> list[Problem]:
    """Problems whose answer is the extracted reference; those without one are dropped."""
    return [
        Problem(p.id, p.problem, ref, p.kind, {**p.meta, "extraction": raw})
        for p, (ref, raw) in zip(problems, refs)
        if ref is not None
    ]


# --------------------------------------------------------------------------- near-duplicates
def near_duplicate_ids(texts: Sequence[str], *, threshold: float, num_perm: int, shingle_size: int) -> list[int]:
    """Positions of texts that near-duplicate an earlier one (MinHash LSH over character shingles).

    Deterministic: the first of each group is kept, later ones are reported.
    """
    try:
        from datasketch import MinHash, MinHashLSH
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "distill.silver.near_dedup=true needs the datasketch package: pip install 'longcot[silver]' "
            "(from a checkout: pip install -e '.[silver]'), or set distill.silver.near_dedup=false"
        ) from exc
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    dups = []
    for i, text in enumerate(texts):
        norm = " ".join(text.lower().split())
        shingles = {norm[k : k + shingle_size] for k in range(max(1, len(norm) - shingle_size + 1))}
        mh = MinHash(num_perm=num_perm, seed=1)
        for s in sorted(shingles):
            mh.update(s.encode("utf-8"))
        if lsh.query(mh):
            dups.append(i)
        else:
            lsh.insert(str(i), mh)
    return dups


def dedupe_questions(problems: Sequence[Problem], silver: Any) -> tuple[list[Problem], int]:
    """``problems`` without near-duplicate questions (if ``silver.near_dedup``), and how many were removed."""
    if not silver.near_dedup:
        return list(problems), 0
    dups = set(near_duplicate_ids([p.problem for p in problems], threshold=float(silver.minhash_threshold),
                                  num_perm=int(silver.minhash_num_perm), shingle_size=int(silver.shingle_size)))
    return [p for i, p in enumerate(problems) if i not in dups], len(dups)
