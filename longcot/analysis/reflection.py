"""Reflection-pattern frequencies (paper §3.1, Fig. 2 and §4): how often responses say
"wait", "recheck", "alternatively", "retry", "however"."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Sequence

REFLECTION_KEYWORDS = ("wait", "recheck", "alternatively", "retry", "however")


@lru_cache(maxsize=64)
def _pattern(keyword: str) -> re.Pattern[str]:
    # Whole words, case-insensitive: "Wait," and "wait" count; "awaited" does not.
    return re.compile(rf"(?<![A-Za-z]){re.escape(keyword)}(?![A-Za-z])", re.IGNORECASE)


def keyword_counts(text: str, keywords: Sequence[str] = REFLECTION_KEYWORDS) -> dict[str, int]:
    """Occurrences of each keyword in ``text``."""
    return {kw: len(_pattern(kw).findall(text)) for kw in keywords}


def keyword_frequency(texts: Sequence[str], keywords: Sequence[str] = REFLECTION_KEYWORDS) -> dict[str, dict[str, float]]:
    """Per keyword: mean occurrences per response and fraction of responses containing it."""
    n = max(len(texts), 1)
    out: dict[str, dict[str, float]] = {}
    counts = [keyword_counts(t, keywords) for t in texts]
    for kw in keywords:
        per = [c[kw] for c in counts]
        out[kw] = {"per_response": sum(per) / n, "response_rate": sum(1 for x in per if x) / n}
    return out
