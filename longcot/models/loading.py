"""Load a causal LM and its tokenizer from a :class:`~longcot.config.schema.ModelConfig`.

One code path for every model: ``path`` is a hub id or a local directory, and ``"tiny"`` is first
resolved to the cached locally built model (built on first use, see :mod:`longcot.models.tiny`),
then everything goes through ``AutoConfig`` / ``AutoModelForCausalLM`` / ``AutoTokenizer``
``from_pretrained``.

Config overrides applied at load time (the same ones the vLLM backend passes as ``hf_overrides``):

* ``rope_theta_scale``: multiplies RoPE theta. In transformers 5.x theta lives in
  ``config.rope_parameters["rope_theta"]`` (or per layer type, ``rope_parameters[<type>]["rope_theta"]``);
  a legacy top-level ``rope_theta`` attribute is scaled too if a remote-code config has one.
  (Paper §3 / App. E.2 stretch Qwen2.5-Math-7B's 4k context by raising theta 10x.)
* ``max_model_len``: becomes ``max_position_embeddings``.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

    from longcot.config.schema import ModelConfig

log = logging.getLogger(__name__)

TINY = "tiny"
_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float16": "float16", "fp16": "float16", "half": "float16"}


def resolve_model_path(model_cfg: "ModelConfig") -> str:
    """Local directory or hub id of the model; ``"tiny"`` is built (once, cached) and its dir returned."""
    if model_cfg.path == TINY:
        from longcot.models.tiny import ensure_tiny

        return str(ensure_tiny(model_cfg))
    expanded = os.path.expanduser(model_cfg.path)
    if os.path.exists(expanded):
        return expanded
    if model_cfg.path.startswith(("/", "./", "../", "~")):
        raise FileNotFoundError(f"model.path={model_cfg.path!r}: no such local directory (a hub id looks like 'org/name')")
    return model_cfg.path


def resolve_tokenizer_path(model_cfg: "ModelConfig") -> str:
    """Tokenizer location: ``model_cfg.tokenizer`` if set (``"tiny"`` allowed), else the model's."""
    if model_cfg.tokenizer in (None, ""):
        return resolve_model_path(model_cfg)
    if model_cfg.tokenizer == TINY:
        from longcot.models.tiny import ensure_tiny

        return str(ensure_tiny(model_cfg))
    expanded = os.path.expanduser(model_cfg.tokenizer)
    return expanded if os.path.exists(expanded) else model_cfg.tokenizer


def resolve_device(device: str | None = "auto") -> str:
    """``"auto"``/None -> ``"cuda"`` if available else ``"cpu"``; anything else is returned as is."""
    if device in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: "str | torch.dtype | None", device: str) -> "torch.dtype | str":
    """A torch dtype for ``from_pretrained``; ``"auto"`` = float32 on CPU, the checkpoint's dtype on GPU."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "", "auto"):
        return torch.float32 if not str(device).startswith("cuda") else "auto"
    name = _DTYPES.get(str(dtype).lower())
    if name is None:
        raise ValueError(f"unknown dtype {dtype!r}; use one of auto, float32, bfloat16, float16")
    return getattr(torch, name)


# --------------------------------------------------------------------------- config overrides
def scale_rope_theta(config: "PretrainedConfig", scale: float) -> "PretrainedConfig":
    """Multiply RoPE theta by ``scale`` in place (flat or per-layer-type ``rope_parameters``)."""
    if scale == 1.0:
        return config
    found = False
    params = getattr(config, "rope_parameters", None)
    if isinstance(params, dict) and params:
        if "rope_theta" in params:
            params = dict(params)
            params["rope_theta"] = float(params["rope_theta"]) * scale
            found = True
        else:  # per layer type: {"full_attention": {...}, "sliding_attention": {...}}
            params = {k: (dict(v) if isinstance(v, dict) else v) for k, v in params.items()}
            for sub in params.values():
                if isinstance(sub, dict) and "rope_theta" in sub:
                    sub["rope_theta"] = float(sub["rope_theta"]) * scale
                    found = True
        config.rope_parameters = params
    legacy = getattr(config, "rope_theta", None)
    if isinstance(legacy, (int, float)):
        config.rope_theta = float(legacy) * scale
        found = True
    if not found:
        raise ValueError(
            f"rope_theta_scale={scale} but the config of {getattr(config, '_name_or_path', '?')} "
            "has no rope_theta (neither rope_parameters['rope_theta'] nor rope_theta)"
        )
    return config


def rope_theta_of(config: "PretrainedConfig") -> float | dict[str, float] | None:
    """The config's RoPE theta (a dict per layer type for models with several)."""
    params = getattr(config, "rope_parameters", None)
    if isinstance(params, dict) and params:
        if "rope_theta" in params:
            return float(params["rope_theta"])
        per = {k: float(v["rope_theta"]) for k, v in params.items() if isinstance(v, dict) and "rope_theta" in v}
        if per:
            return per
    legacy = getattr(config, "rope_theta", None)
    return float(legacy) if isinstance(legacy, (int, float)) else None


def apply_config_overrides(
    config: "PretrainedConfig", *, rope_theta_scale: float = 1.0, max_model_len: int | None = None
) -> "PretrainedConfig":
    """Apply the ModelConfig's load-time overrides to an HF config in place and return it.

    Module-level and argument-only so that ``functools.partial(apply_config_overrides, ...)`` is a
    picklable vLLM ``hf_overrides`` callable.
    """
    scale_rope_theta(config, float(rope_theta_scale))
    if max_model_len is not None:
        config.max_position_embeddings = int(max_model_len)
    return config


def load_config(model_cfg: "ModelConfig", path: str | None = None) -> "PretrainedConfig":
    """``AutoConfig`` of the model with ``rope_theta_scale`` / ``max_model_len`` applied."""
    from transformers import AutoConfig

    path = path or resolve_model_path(model_cfg)
    config = AutoConfig.from_pretrained(path, trust_remote_code=model_cfg.trust_remote_code)
    return apply_config_overrides(
        config, rope_theta_scale=model_cfg.rope_theta_scale, max_model_len=model_cfg.max_model_len
    )


# --------------------------------------------------------------------------- loading
def load_tokenizer(model_cfg: "ModelConfig", *, padding_side: str = "left") -> "PreTrainedTokenizerBase":
    """``AutoTokenizer`` with a pad token (falls back to EOS) and the given padding side."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        resolve_tokenizer_path(model_cfg), trust_remote_code=model_cfg.trust_remote_code
    )
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"tokenizer of {model_cfg.path} has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def load_model_and_tokenizer(
    model_cfg: "ModelConfig",
    device: str | None = "auto",
    dtype: "str | torch.dtype | None" = None,
    **from_pretrained_kwargs: Any,
) -> tuple["PreTrainedModel", "PreTrainedTokenizerBase"]:
    """Load ``(model, tokenizer)``: model in eval mode on ``device``, tokenizer left-padded.

    ``dtype`` overrides ``model_cfg.dtype``; ``"auto"`` means float32 on CPU and the checkpoint's
    dtype on GPU. Extra kwargs go to ``AutoModelForCausalLM.from_pretrained`` (e.g.
    ``attn_implementation``).
    """
    from transformers import AutoModelForCausalLM

    device = resolve_device(device)
    path = resolve_model_path(model_cfg)
    tokenizer = load_tokenizer(model_cfg, padding_side="left")
    config = load_config(model_cfg, path)
    model = AutoModelForCausalLM.from_pretrained(
        path,
        config=config,
        dtype=resolve_dtype(dtype if dtype is not None else model_cfg.dtype, device),
        trust_remote_code=model_cfg.trust_remote_code,
        **from_pretrained_kwargs,
    )
    model.to(device)
    model.eval()
    if getattr(model.generation_config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
