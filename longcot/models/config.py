"""The typed schema of a model config (``conf/model/*.yaml``): a hub id, a local path or the locally built tiny model.

It lives beside the code that loads the model (:mod:`longcot.models.loading`, :mod:`longcot.models.tiny`), so
that code needs nothing from :mod:`longcot.config.schema`, which only gathers the groups' schemas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING

from longcot.config.fields import at_least, option


@dataclass
class ModelConfig:
    """A causal LM: a hub id, a local path, or the locally built ``tiny`` model."""

    name: str = MISSING
    # Hub id (e.g. "Qwen/Qwen2.5-Math-7B"), local directory, or "tiny" (built locally, no download).
    path: str = MISSING
    tokenizer: Optional[str] = None  # defaults to ``path``
    dtype: str = option("auto", ("auto", "float32", "bfloat16", "float16"))
    # Paper §3 (App. E.2): Qwen2.5-Math-7B's 4k context is stretched by multiplying RoPE theta by 10.
    rope_theta_scale: float = at_least(1.0, 0, open_=True)
    max_model_len: Optional[int] = at_least(None, 1)  # context window; None = the model's own
    trust_remote_code: bool = False
    revision: Optional[str] = None  # hub ids: a branch, tag or commit (part of the run identity)
    # Models of more than ~1B parameters refuse to run on a CPU unless this is set.
    allow_large_on_cpu: bool = False
    role: str = "policy"  # policy | teacher | verifier
    # tiny-model shape (used only when path == "tiny")
    tiny_seed: int = 0
    tiny_hidden_size: int = 128
    tiny_layers: int = 3
    tiny_heads: int = 4
    tiny_vocab_size: int = 1024
    tiny_max_position: int = 2048
