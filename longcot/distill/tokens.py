"""SFT token accounting with the student's tokenizer (the paper's budgets count student tokens).

Counts are of the plain prompt and response texts (no special or chat-template tokens).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence


def resolve_model(name: str | None, default: Any = None, *, key: str = "model") -> Any:
    """A ModelConfig: None -> ``default``; a ``conf/model`` option name; else a hub id / local path."""
    from longcot.config.loading import group_options, load_group_option
    from longcot.models.config import ModelConfig

    if name in (None, ""):
        if default is None:
            raise ValueError(f"{key}: no model given")
        return default
    if default is not None and name == default.name:
        return default
    if name in group_options("model"):
        return load_group_option("model", name, ModelConfig)
    if "/" in name or name.startswith((".", "~")):
        from omegaconf import OmegaConf

        return OmegaConf.structured(ModelConfig(name=name.rstrip("/").rsplit("/", 1)[-1], path=name))
    raise ValueError(f"{key}={name!r}: not a conf/model option ({', '.join(group_options('model'))}), a hub id or a path")


class StudentTokenizer:
    """Counts tokens of texts with the student model's tokenizer."""

    def __init__(self, name: str):
        from longcot.models.loading import load_tokenizer

        self.name = name
        self.tokenizer = load_tokenizer(resolve_model(name, key="distill.student"))

    def count(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        ids = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [len(x) for x in ids]


@lru_cache(maxsize=4)
def student_tokenizer(name: str) -> StudentTokenizer:
    return StudentTokenizer(name)
