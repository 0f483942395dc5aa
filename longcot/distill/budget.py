"""Token budgets (the paper sweeps about 0.25B to 3.5B SFT tokens): nested, deterministic subsets.

Every response gets a fixed rank from a seeded hash of (prompt id, candidate index), independent
of which other responses exist. A budget takes the shortest prefix of that order whose tokens
reach it, so a smaller budget is always a subset of a larger one, and a response's rank is the
same in the datasets of every N.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Sequence

_SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12}
_BUDGET = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KkMmBbGgTt]?)\s*$")


def parse_budget(text: str | int) -> int:
    """``"250M"`` -> 250_000_000, ``"3.5B"`` -> 3_500_000_000, ``"1e6"`` / ``1000`` -> as is."""
    m = _BUDGET.match(str(text))
    if not m:
        raise ValueError(f"distill.token_budgets: cannot parse {text!r}; use e.g. 1000, 250M, 0.25B, 3.5B")
    value = round(float(m.group(1)) * _SUFFIX[m.group(2).upper()])
    if value < 1:
        raise ValueError(f"distill.token_budgets: {text!r} is less than one token")
    return int(value)


def budget_label(tokens: int) -> str:
    """Directory name of a budget: ``budget-250000000``."""
    return f"budget-{tokens}"


def rank_key(seed: int, prompt_id: str, candidate_index: int) -> bytes:
    """The fixed position of a response in the budget order (a seeded hash; ties impossible in practice)."""
    return hashlib.blake2b(f"{seed}:{prompt_id}:{candidate_index}".encode(), digest_size=16).digest()


@dataclass(frozen=True)
class BudgetPick:
    tokens: int  # the budget asked
    selected: frozenset[int]  # row positions in the source dataset
    selected_tokens: int
    reached: bool  # False: the dataset has fewer tokens than the budget (all of it is selected)


def select_budget(keys: Sequence[bytes], tokens: Sequence[int], budget: int) -> BudgetPick:
    """Rows (by position) of the shortest prefix of the ``keys`` order whose ``tokens`` reach ``budget``."""
    if len(keys) != len(tokens):
        raise ValueError(f"{len(keys)} keys but {len(tokens)} token counts")
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    chosen: list[int] = []
    total = 0
    for i in order:
        if total >= budget:
            break
        chosen.append(i)
        total += int(tokens[i])
    return BudgetPick(budget, frozenset(chosen), total, total >= budget)
