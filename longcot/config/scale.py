"""Run scale: ``scale=smoke`` caps every stage's work (problems, new tokens, samples, training steps)
so a whole sweep can be smoke-tested on CPU in minutes; ``scale=full`` removes the caps.

The caps are applied once, when a stage plans its run, into the values the run uses; every value a
cap changes is recorded as a :class:`Cap` and reported by :func:`caps_note` (a warning at startup,
``scale_caps`` in the run's outputs, the table title), so nothing the user set is changed silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence


@dataclass(frozen=True)
class Cap:
    """``key`` was ``before`` (None: unbounded) and the scale made it ``after``."""

    key: str
    before: int | None
    after: int

    def __str__(self) -> str:
        return f"{self.key} {'all' if self.before is None else self.before} -> {self.after}"


def capped(key: str, value: int | None, limit: int | None, caps: list[Cap]) -> int | None:
    """``min(value, limit)`` (None: unbounded), appending a :class:`Cap` to ``caps`` when it changes ``value``."""
    if limit is None or (value is not None and value <= limit):
        return value
    caps.append(Cap(key, value, int(limit)))
    return int(limit)


def caps_note(scale: Any, caps: Sequence[Cap], *, real: bool = False, detail: str = "") -> str | None:
    """One warning naming every capped key, or None when the scale changed nothing.

    ``real``: the run uses a real model or engine (not the tiny model / synthetic teacher), for which
    a smoke-scale run is almost certainly a mistake."""
    if not caps:
        return None
    what = f"a real model{f' ({detail})' if detail else ''} " if real else ""
    return (f"scale={scale.name} caps {what}this run: {', '.join(map(str, caps))}; "
            "pass scale=full for a real run (or raise the scale.* limits)")


def caps_record(caps: Sequence[Cap]) -> dict[str, dict[str, int | None]]:
    """The caps as JSON (``{"key": {"set": before, "used": after}}``) for a run's outputs."""
    return {c.key: {"set": c.before, "used": c.after} for c in caps}


def capped_rollout(algorithm: Any, prompts: int | None, max_samples: int | None, caps: list[Cap]) -> None:
    """Fit one RL step into a capped scale, in place (``algorithm``: an ``AlgorithmConfig``): at most
    ``prompts`` prompts per rollout and ``max_samples`` samples per prompt, then ``train_batch_size``
    (responses per optimizer step) and ``micro_train_batch_size`` down to what one rollout holds.
    ``prompts`` None: the scale caps no prompts (``scale=full``), nothing changes."""
    if prompts is None:
        return
    a = algorithm
    a.rollout_batch_size = capped("algorithm.rollout_batch_size", a.rollout_batch_size, prompts, caps)
    a.samples_per_prompt = capped("algorithm.samples_per_prompt", a.samples_per_prompt, max_samples, caps)
    n = a.rollout_batch_size * a.samples_per_prompt
    if a.train_batch_size > n or n % a.train_batch_size:
        train = max(d for d in range(1, min(a.train_batch_size, n) + 1) if n % d == 0)
        caps.append(Cap("algorithm.train_batch_size", a.train_batch_size, train))
        a.train_batch_size = train
    if a.train_batch_size % a.micro_train_batch_size:
        micro = max(d for d in range(1, a.micro_train_batch_size + 1) if a.train_batch_size % d == 0)
        caps.append(Cap("algorithm.micro_train_batch_size", a.micro_train_batch_size, micro))
        a.micro_train_batch_size = micro
