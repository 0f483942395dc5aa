"""Repetition in responses (paper §4.5, Fig. 10: with enough compute the model pads hard questions with
repetition): the share of responses that repeat an N-gram of their own, and the share of tokens inside
such a repeat, with the N-gram coverage of the dense penalty (App. C.2, Algorithm 1;
:func:`longcot.rewards.repetition.repeated_token_mask`), so a run without the penalty is measured the
same way as a run with it."""

from __future__ import annotations

from typing import Any, Sequence

from longcot.rewards.repetition import repeated_token_mask


def repetition_stats(responses: Sequence[Any], ngram_size: int) -> dict[str, float]:
    """Over ``responses`` (each a sequence of token ids): ``rate``, the share of responses with at least
    one repeated ``ngram_size``-gram; ``token_share``, the mean over responses of the share of their
    tokens inside a repeat (an empty response counts 0). No response: both 0."""
    if not responses:
        return {"rate": 0.0, "token_share": 0.0}
    masks = [repeated_token_mask(r, ngram_size) for r in responses]
    return {"rate": sum(bool(m.any()) for m in masks) / len(masks),
            "token_share": sum(float(m.mean()) if m.size else 0.0 for m in masks) / len(masks)}
