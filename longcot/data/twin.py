"""The CPU twin's task (toy level ``search``): find the key of a value in a shuffled map, a problem
whose answer is cheap to check step by step but takes a lookup by content to give directly.

A problem lists a random permutation f of the digits 0-9 as ten pairs ``k>f(k)`` in a shuffled order
and asks for the x with f(x) = t::

    Map: 9>6;4>3;8>9;6>2;0>7;1>8;7>0;2>1;3>5;5>4; Find x with x>4.

Every digit is one token of the tiny tokenizer. The long-CoT teacher (:mod:`longcot.generation.search_teacher`)
walks the map in its listed order, one pair per line, and checks each value against t: what a model
must learn is to copy the next pair and compare one digit with t, local work that the tiny model
(hidden 128, 3 layers, random init) learned to 53-55% held-out within 1,000 optimizer steps on 2 of 3
seeds. The short-CoT teacher answers ``\\boxed{x}`` at once: a model must find the pair whose value
is t and copy the key before it, a content lookup inside one forward pass, which the same model did
not learn in any run (README "The CPU twin" has the measured curves). That difference is the twin's
intended mechanism for Fig. 1, stated here so no reader mistakes it for something else; chance is 10%.

The eval pool (:data:`EVAL_POOL` problems) is drawn once from ``split_seed``; training problems are
drawn from their own stream and never equal an eval problem (10! x 10 problems exist, so the pools
are disjoint by construction and the training pool is as large as asked). The eval stage reports the
overlap (``train_overlap``), which must be 0.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache

SIZE = 10  # the map's keys and values: the digits 0..9
EVAL_POOL = 300
SPLITS = ("train", "eval")

_PROBLEM = re.compile(r"Map: ((?:\d>\d;){%d}) Find x with x>(\d)\." % SIZE)


@dataclass(frozen=True)
class Lookup:
    """The map as ``(key, value)`` pairs in their listed order, and the target value."""

    pairs: tuple[tuple[int, int], ...]
    target: int

    def __post_init__(self) -> None:
        keys, values = ({p[i] for p in self.pairs} for i in (0, 1))
        if keys != set(range(SIZE)) or values != set(range(SIZE)) or len(self.pairs) != SIZE:
            raise ValueError(f"a twin map is a permutation of 0..{SIZE - 1}: {self.pairs}")
        if self.target not in values:
            raise ValueError(f"twin target {self.target} is not a value of the map")

    def answer(self) -> int:
        return next(k for k, v in self.pairs if v == self.target)

    def text(self) -> str:
        return f"Map: {''.join(f'{k}>{v};' for k, v in self.pairs)} Find x with x>{self.target}."

    def key(self) -> str:
        """A short unique name (the id of its :class:`~longcot.data.problems.Problem`)."""
        return "".join(f"{k}{v}" for k, v in self.pairs) + f"-{self.target}"


def parse(text: str) -> Lookup | None:
    """The problem stated in ``text`` (a prompt), or None."""
    m = _PROBLEM.search(text)
    if not m:
        return None
    pairs = tuple((int(p[0]), int(p[2])) for p in m.group(1).split(";") if p)
    try:
        return Lookup(pairs, int(m.group(2)))
    except ValueError:
        return None


def random_problem(rng: random.Random) -> Lookup:
    values = list(range(SIZE))
    rng.shuffle(values)
    keys = list(range(SIZE))
    rng.shuffle(keys)
    return Lookup(tuple((k, values[k]) for k in keys), rng.randrange(SIZE))


@lru_cache(maxsize=8)
def eval_pool(split_seed: int) -> tuple[Lookup, ...]:
    rng = random.Random(f"longcot-twin-eval:{split_seed}")
    seen: dict[str, Lookup] = {}
    while len(seen) < EVAL_POOL:
        p = random_problem(rng)
        seen.setdefault(p.text(), p)
    return tuple(seen.values())


def draw(size: int, seed: int, split: str, split_seed: int) -> list[Lookup]:
    """``size`` distinct problems of ``split`` (train | eval) under ``split_seed``, in an order drawn from
    ``seed``. The eval pool has :data:`EVAL_POOL` problems (an error past it: repeating problems would
    silently weight some twice); training problems are drawn fresh and never equal an eval problem."""
    if split not in SPLITS:
        raise ValueError(f"twin split {split!r}; valid: {', '.join(SPLITS)}")
    held = eval_pool(split_seed)
    if split == "eval":
        if size > len(held):
            raise ValueError(f"toy_size={size}: the twin's eval pool has {len(held)} problems (toy_level=search)")
        order = list(held)
        random.Random(f"longcot-twin-draw:{seed}").shuffle(order)
        return order[:size]
    excluded = {p.text() for p in held}
    rng = random.Random(f"longcot-twin-train:{split_seed}:{seed}")
    out: dict[str, Lookup] = {}
    while len(out) < size:
        p = random_problem(rng)
        if p.text() not in excluded:
            out.setdefault(p.text(), p)
    return list(out.values())
