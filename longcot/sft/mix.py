"""SFT data mixes by weight (paper §5.1, Table 2: "50% MATH + 50% WebIT").

``sft.source=mix`` trains on several distill subsets at once (``sft.mix``: one component per
subset, each with its teacher, data, distill settings and a weight). The weights are shares of the
mix, counted in samples (``sft.mix_unit=sample``: share of the examples) or in SFT tokens
(``token``: share of the prompt + response tokens, the distill rows' ``sft_tokens``, counted with
``distill.student``'s tokenizer). The mix is the largest one the components allow without repeating
an example (``total = min_i size_i / weight_i``, sizes in the unit), or ``sft.mix_size`` in the unit
when set (an error if a component is too small for its share). Each component contributes a prefix of
its rows in a seeded order (``sft.seed``, the component's index) reaching its share: whole samples,
so a token share is met from above by less than one sample. The paper does not say which unit its
Table 2 uses; its files choose ``sample`` and say so.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

MIX_UNITS = ("sample", "token")


@dataclass
class MixComponent:
    """One part of an SFT mix: the distill run (planned like ``sft.source=distill`` with
    ``model=<teacher>``, ``generation=<teacher_generation>``, ``data=<data>`` and the dotted
    ``overrides``, e.g. ``distill.mode=silver``) and its ``subset``, with its share ``weight``."""

    teacher: str = ""
    subset: str = "n32"
    weight: float = 1.0
    teacher_generation: Optional[str] = None
    data: Optional[str] = None  # a conf/data option; None: this run's data
    overrides: list[str] = field(default_factory=list)


def quotas(sizes: Sequence[float], weights: Sequence[float], total: Optional[float] = None) -> list[float]:
    """Each component's share of the mix in the unit: ``weight_i / sum(w) * total``; ``total``
    defaults to the largest mix that repeats nothing (``min_i size_i * sum(w) / weight_i``)."""
    if len(sizes) != len(weights) or not sizes:
        raise ValueError(f"{len(sizes)} component sizes for {len(weights)} weights")
    if any(w <= 0 for w in weights):
        raise ValueError(f"sft.mix weights must be > 0, got {list(weights)}")
    s = float(sum(weights))
    largest = min(size * s / w for size, w in zip(sizes, weights))
    if total is None:
        total = largest
    elif total > largest * (1 + 1e-12):
        short = min(range(len(sizes)), key=lambda i: sizes[i] * s / weights[i])
        raise ValueError(f"sft.mix_size={total:g}: component {short} has {sizes[short]:g} for a share of "
                         f"{weights[short] / s * total:g}; the largest mix these components allow is {largest:g}")
    return [w / s * total for w in weights]


def select_mix(components: Sequence[Sequence[Any]], weights: Sequence[float], *, unit: str = "sample",
               size: Optional[int] = None, seed: int = 0,
               tokens: Optional[Sequence[Sequence[int]]] = None) -> tuple[list[Any], list[dict[str, float]]]:
    """The mixed rows (component 0's, then 1's, ...) and per component what it gave
    (``rows``, ``tokens``, ``share`` = its fraction of the mix in the unit).

    ``components[i]``: the rows of component ``i``; ``tokens[i]``: their SFT token counts (needed for
    ``unit=token``, reported when given)."""
    if unit not in MIX_UNITS:
        raise ValueError(f"sft.mix_unit={unit!r}; valid: {', '.join(MIX_UNITS)}")
    if unit == "token" and tokens is None:
        raise ValueError("sft.mix_unit=token needs the rows' SFT token counts")
    if any(len(c) == 0 for c in components):
        raise ValueError("an sft.mix component has no rows")
    sizes = [float(len(c)) if unit == "sample" else float(sum(t)) for c, t in
             zip(components, tokens if tokens is not None else [()] * len(components))]
    want = quotas(sizes, weights, None if size is None else float(size))
    out: list[Any] = []
    stats: list[dict[str, float]] = []
    for i, (rows, q) in enumerate(zip(components, want)):
        order = list(range(len(rows)))
        random.Random(f"{seed}:mix:{i}").shuffle(order)
        took, got = [], 0.0
        for j in order:
            if got >= q - 1e-9:
                break
            took.append(j)
            got += 1.0 if unit == "sample" else float(tokens[i][j])  # type: ignore[index]
        out.extend(rows[j] for j in took)
        stats.append({"rows": float(len(took)), "tokens": float(sum(tokens[i][j] for j in took)) if tokens else 0.0,
                      "quota": q, "got": got})
    total = sum(s["got"] for s in stats)
    for s in stats:
        s["share"] = s["got"] / total if total else 0.0
    return out, stats


__all__ = ["MIX_UNITS", "MixComponent", "quotas", "select_mix"]
