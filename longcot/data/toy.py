"""A synthetic arithmetic task: deterministic from a seed, checkable, and small enough for CPU smoke runs."""

from __future__ import annotations

import random

from longcot.data.records import Problem


def toy_expression(rng: random.Random) -> tuple[str, int]:
    """One problem ``a op b op c`` with a non-negative integer answer."""
    while True:
        a, b, c = rng.randint(2, 60), rng.randint(2, 30), rng.randint(2, 12)
        op1, op2 = rng.choice("+-*"), rng.choice("+*")
        expr = f"{a} {op1} {b} {op2} {c}"
        value = eval(expr, {"__builtins__": {}})  # our own digits and operators only
        if value >= 0:
            latex = expr.replace("*", "\\times")
            return latex, value


def toy_problems(size: int, seed: int, prefix: str = "toy") -> list[Problem]:
    """``size`` problems ``Compute a op b op c.`` with integer answers; same seed, same list."""
    if size < 1:
        raise ValueError(f"toy_size must be >= 1, got {size}")
    rng = random.Random(seed)
    problems = []
    for i in range(size):
        latex, value = toy_expression(rng)
        problems.append(
            Problem(id=f"{prefix}-{seed}-{i:05d}", problem=f"Compute ${latex}$.", answer=str(value), kind="toy")
        )
    return problems
