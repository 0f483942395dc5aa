"""The synthetic teachers of the CPU twin's task (:mod:`longcot.data.twin`), used by the synthetic backend.

* Long CoT searches (§3's QwQ-style reasoning, shrunk): it walks the map in its listed order, one
  pair per line, and checks each value against the target (``4>3;3 not 7.``, then ``9>7;7 is 7.
  \\boxed{9}``). A pair is copied wrong with probability :data:`SLIP_RATE` and its own check catches it
  at once (``4>2 wait 4>3;3 not 7.``). With probability :data:`GIVEUP_RATE` per line after the
  :data:`GIVEUP_AFTER`-th it stops and guesses one of the keys not yet checked (``Alternatively I
  guess \\boxed{5}``). With probability ``error_rate`` a sample makes one slip that no check catches:
  the wrong value stands, so the walk passes over the answer (and guesses at the end) or accepts a
  wrong key.
* Short CoT answers directly, as a teacher that knows the solution writes it: ``\\boxed{x}``; with
  probability ``error_rate`` the answer is wrong.

Rejection sampling (§3) keeps the correct samples only, so a kept guess is a lucky one: the SFT data
then holds a few walks cut short by a lucky guess, and a model trained on it gives up now and then.
Walking further is more often right (a guess after k of ten pairs is right with probability
1/(10 - k)), which is what a correctness-only RL reward can exploit (§4.1).
"""

from __future__ import annotations

import random

from longcot.data.twin import Lookup

SLIP_RATE = 0.08  # per pair: copied wrong, caught by the check at once
GIVEUP_RATE = 0.08  # per pair after the GIVEUP_AFTER-th: stop walking and guess
GIVEUP_AFTER = 3
MAX_RECHECKS = 3  # per checked line


def _rechecks(rng: random.Random, rate: float, check: str) -> list[str]:
    out: list[str] = []
    while rate and len(out) < MAX_RECHECKS and rng.random() < rate:
        out.append(f"recheck {check}")
    return out


def _other(rng: random.Random, value: int, size: int) -> int:
    return (value + rng.randint(1, size - 1)) % size


def write_long(p: Lookup, rng: random.Random, error_rate: float, giveup: float = GIVEUP_RATE,
               recheck: float = 0.0) -> str:
    """A walk over the map with checks; see the module docstring."""
    size = len(p.pairs)
    uncaught_at = rng.randrange(size) if rng.random() < error_rate else -1
    lines = []
    for i, (k, v) in enumerate(p.pairs):
        if i >= GIVEUP_AFTER and rng.random() < giveup:
            guess = rng.choice([key for key, _ in p.pairs[i:]])
            lines.append(f"Alternatively I guess \\boxed{{{guess}}}")
            return "\n".join(lines)
        if i == uncaught_at:
            v = _other(rng, v, size)
            line = f"{k}>{v}"
        elif rng.random() < SLIP_RATE:
            line = f"{k}>{_other(rng, v, size)} wait {k}>{v}"
        else:
            line = f"{k}>{v}"
        verdict = "is" if v == p.target else "not"
        lines.append(f"{line};{v} {verdict} {p.target}.")
        lines += _rechecks(rng, recheck, f"{k}>{v};{v} {verdict} {p.target}.")
        if verdict == "is":
            lines[-1] += f" \\boxed{{{k}}}"
            return "\n".join(lines)
    guess = rng.randrange(size)
    lines.append(f"None matched, I guess \\boxed{{{guess}}}")
    return "\n".join(lines)


def write_short(p: Lookup, rng: random.Random, error_rate: float) -> str:
    """A direct answer (a wrong one w.p. ``error_rate``)."""
    x = p.answer()
    if rng.random() < error_rate:
        x = _other(rng, x, len(p.pairs))
    return f"\\boxed{{{x}}}"
