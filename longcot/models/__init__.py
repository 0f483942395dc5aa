"""Model loading (hub id, local path, or the locally built ``tiny`` model)."""

from longcot.models.loading import (
    apply_config_overrides,
    load_config,
    load_model_and_tokenizer,
    load_tokenizer,
    resolve_device,
    resolve_dtype,
    resolve_model_path,
    resolve_tokenizer_path,
    rope_theta_of,
    scale_rope_theta,
)
from longcot.models.tiny import ensure_tiny, tiny_model_dir

__all__ = [
    "apply_config_overrides",
    "ensure_tiny",
    "load_config",
    "load_model_and_tokenizer",
    "load_tokenizer",
    "resolve_device",
    "resolve_dtype",
    "resolve_model_path",
    "resolve_tokenizer_path",
    "rope_theta_of",
    "scale_rope_theta",
    "tiny_model_dir",
]
