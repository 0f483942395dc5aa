"""A synthetic arithmetic task: deterministic from a seed, checkable, and small enough for CPU smoke runs."""

from __future__ import annotations

import random

from longcot.data.records import Problem


LEVELS = ("standard", "easy", "search")


def toy_expression(rng: random.Random, level: str = "standard") -> tuple[str, int]:
    """One problem ``a op b op c`` with a non-negative integer answer.

    ``standard``: a in 2..60, b in 2..30, c in 2..12, operators + - * (beyond what a ~1M-parameter
    model learns in minutes: it learns the format, not the arithmetic). ``easy``: three digits 1..9
    added (answers up to 27; 729 problems): a tiny model can learn it in a CPU demo, and the
    step-by-step CoT (two single-digit-table lookups) is what makes it learnable. ``search``: the CPU
    twin's task (:mod:`longcot.data.twin`), drawn by :func:`toy_problems`, not here."""
    if level == "easy":
        a, b, c = rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 9)
        return f"{a} + {b} + {c}", a + b + c
    if level not in LEVELS:
        raise ValueError(f"toy level {level!r}; valid: {', '.join(LEVELS)}")
    while True:
        a, b, c = rng.randint(2, 60), rng.randint(2, 30), rng.randint(2, 12)
        op1, op2 = rng.choice("+-*"), rng.choice("+*")
        expr = f"{a} {op1} {b} {op2} {c}"
        value = eval(expr, {"__builtins__": {}})  # our own digits and operators only
        if value >= 0:
            latex = expr.replace("*", "\\times")
            return latex, value


def toy_problems(size: int, seed: int, prefix: str = "toy", level: str = "standard", split: str = "train",
                 split_seed: int = 0) -> list[Problem]:
    """``size`` problems with integer answers; same seed (and level), same list.

    ``standard`` / ``easy``: ``Compute a op b op c.`` drawn independently (``split`` is not used: training
    prompts and benchmarks may overlap). ``search``: the twin's problems (:mod:`longcot.data.twin`) from
    the ``split`` pool (train | eval) of ``split_seed``, never overlapping the other pool."""
    if size < 1:
        raise ValueError(f"toy_size must be >= 1, got {size}")
    if level == "search":
        from longcot.data import twin

        return [Problem(id=f"{prefix}-{e.key()}", problem=e.text(), answer=str(e.answer()), kind="toy")
                for e in twin.draw(size, seed, split, split_seed)]
    rng = random.Random(seed)
    problems = []
    for i in range(size):
        latex, value = toy_expression(rng, level)
        problems.append(
            Problem(id=f"{prefix}-{seed}-{i:05d}", problem=f"Compute ${latex}$.", answer=str(value), kind="toy")
        )
    return problems
