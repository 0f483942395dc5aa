"""Load a causal LM and its tokenizer from a :class:`~longcot.models.config.ModelConfig`.

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

Failing fast (issue 7, "Clean failures"): a hub id is looked up in the local Hugging Face cache
first (``model.revision``, None = ``main``) and loaded from its snapshot folder without any network
call; if it is not cached, ``HF_HUB_OFFLINE`` set is one clear error, and otherwise the hub is asked
once, with a ``HUB_PROBE_TIMEOUT`` (2 s) limit, whether the repository and revision exist; an
unreachable hub or a missing repository is one line naming ``model.path`` (no minute of retries).
A model of more than ``MAX_CPU_PARAMETERS`` parameters (counted on the meta device from its config,
before any weight is read) is refused on a CPU unless ``model.allow_large_on_cpu=true``.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

    from longcot.models.config import ModelConfig

log = logging.getLogger(__name__)

TINY = "tiny"
_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float16": "float16", "fp16": "float16", "half": "float16"}
HUB_PROBE_TIMEOUT = 2.0  # seconds for the one request that asks the hub whether a repo exists
# "~1B": Llama-3.2-1B (1.24B) runs on a CPU; Qwen2.5-1.5B (1.54B) and anything larger needs the flag.
MAX_CPU_PARAMETERS = 1_300_000_000


class ModelUnavailable(ValueError):
    """A model (or tokenizer) that cannot be used here; the message is one line naming the key."""


class ModelNotFound(ModelUnavailable, FileNotFoundError):
    """No such local directory, or a hub id that is neither cached nor reachable."""


def probe_hub(repo_id: str, *, repo_type: str = "model", revision: str | None = None,
              timeout: float = HUB_PROBE_TIMEOUT) -> str | None:
    """None if the Hugging Face Hub says the repo (at `revision`) exists; else why not, in a few words.

    One request (``HfApi.repo_info``) with a hard `timeout` and no retries.
    """
    import httpx
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        HfApi().repo_info(repo_id, repo_type=repo_type, revision=revision, timeout=timeout)
    except RevisionNotFoundError:
        return f"the hub has no revision {revision!r} of {repo_id}"
    except GatedRepoError:
        return f"{repo_id} is gated: accept its licence on the hub and log in (`hf auth login`)"
    except RepositoryNotFoundError:
        return f"the hub has no {repo_type} repository {repo_id!r} (or it is private)"
    except (httpx.HTTPError, OSError) as exc:
        return f"the Hugging Face Hub is unreachable ({_first_line(exc)})"
    except Exception as exc:  # noqa: BLE001 - any other hub answer is a reason not to proceed
        return f"the Hugging Face Hub refused ({_first_line(exc)})"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _cached_snapshot(repo_id: str, revision: str | None) -> str | None:
    """The local snapshot folder of a hub repo at `revision` (default main), if it is cached."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, revision=revision, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached (LocalEntryNotFoundError), or an invalid repo id
        return None


_RESOLVED: dict[tuple[str, str | None], str] = {}  # hub lookups done in this process (successes only)


def _resolve_location(location: str, revision: str | None, key: str) -> str:
    """A local directory, a cached hub snapshot folder, or (when the hub confirms it) the hub id."""
    expanded = os.path.expanduser(location)
    if os.path.exists(expanded):
        return expanded
    if location.startswith(("/", "./", "../", "~")) or location.count("/") > 1:
        raise ModelNotFound(f"{key}={location!r}: no such local directory (a hub id looks like 'org/name')")
    if (location, revision) in _RESOLVED:
        return _RESOLVED[(location, revision)]
    from huggingface_hub import constants

    at = f" at revision {revision!r}" if revision else ""
    snapshot = _cached_snapshot(location, revision)
    if snapshot is not None:
        resolved = snapshot
    elif constants.HF_HUB_OFFLINE:
        raise ModelNotFound(
            f"{key}={location!r}{at}: not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and "
            f"HF_HUB_OFFLINE is set; download it where there is network (`hf download {location}`) or set {key} "
            "to a local directory"
        )
    else:
        reason = probe_hub(location, revision=revision)
        if reason is not None:
            raise ModelNotFound(
                f"{key}={location!r}{at}: {reason}; it is not in the local Hugging Face cache "
                f"({constants.HF_HUB_CACHE}) either (set {key} to a local directory)"
            )
        resolved = location
    _RESOLVED[(location, revision)] = resolved
    return resolved


def resolve_model_path(model_cfg: "ModelConfig") -> str:
    """Local directory, cached snapshot folder or hub id of the model (fails fast, see the module doc);
    ``"tiny"`` is built (once, cached) and its dir returned."""
    if model_cfg.path == TINY:
        from longcot.models.tiny import ensure_tiny

        return str(ensure_tiny(model_cfg))
    return _resolve_location(model_cfg.path, getattr(model_cfg, "revision", None), "model.path")


def resolve_tokenizer_path(model_cfg: "ModelConfig") -> str:
    """Tokenizer location: ``model_cfg.tokenizer`` if set (``"tiny"`` allowed), else the model's.

    A separate tokenizer hub id is taken at its ``main`` revision (``model.revision`` is the model's).
    """
    if model_cfg.tokenizer in (None, "", model_cfg.path):
        return resolve_model_path(model_cfg)
    if model_cfg.tokenizer == TINY:
        from longcot.models.tiny import ensure_tiny

        return str(ensure_tiny(model_cfg))
    return _resolve_location(model_cfg.tokenizer, None, "model.tokenizer")


def _revision(model_cfg: "ModelConfig", path: str) -> dict[str, Any]:
    """``revision=`` for ``from_pretrained`` when `path` is still a hub id (not a local folder)."""
    revision = getattr(model_cfg, "revision", None)
    return {"revision": revision} if revision and path == model_cfg.path and not os.path.exists(path) else {}


def count_parameters_from_config(config: "PretrainedConfig", trust_remote_code: bool = False) -> int:
    """Parameters of the causal LM a config describes, counted on the meta device (no weights read)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    return sum(p.numel() for p in model.parameters())


def check_fits_device(model_cfg: "ModelConfig", config: "PretrainedConfig", device: str) -> None:
    """Refuse a model of more than ``MAX_CPU_PARAMETERS`` on a CPU unless ``model.allow_large_on_cpu``."""
    if not str(device).startswith("cpu") or getattr(model_cfg, "allow_large_on_cpu", False):
        return
    n = count_parameters_from_config(config, trust_remote_code=model_cfg.trust_remote_code)
    if n > MAX_CPU_PARAMETERS:
        raise ModelUnavailable(
            f"model {model_cfg.name!r} ({model_cfg.path}) has {n / 1e9:.1f}B parameters, too many to run on a CPU "
            f"(limit {MAX_CPU_PARAMETERS / 1e9:.1f}B); use a GPU, or set model.allow_large_on_cpu=true to run it anyway"
        )


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
    config = AutoConfig.from_pretrained(
        path, trust_remote_code=model_cfg.trust_remote_code, **_revision(model_cfg, path)
    )
    return apply_config_overrides(
        config, rope_theta_scale=model_cfg.rope_theta_scale, max_model_len=model_cfg.max_model_len
    )


# --------------------------------------------------------------------------- loading
def load_tokenizer(model_cfg: "ModelConfig", *, padding_side: str = "left") -> "PreTrainedTokenizerBase":
    """``AutoTokenizer`` with a pad token (falls back to EOS) and the given padding side."""
    from transformers import AutoTokenizer

    path = resolve_tokenizer_path(model_cfg)
    tokenizer = AutoTokenizer.from_pretrained(
        path, trust_remote_code=model_cfg.trust_remote_code, **_revision(model_cfg, path)
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
    ``attn_implementation``). A model too large for a CPU is refused before its weights are read
    (``check_fits_device``).
    """
    path = resolve_model_path(model_cfg)  # fails fast, before the heavy imports below
    device = resolve_device(device)
    from transformers import AutoModelForCausalLM

    config = load_config(model_cfg, path)
    check_fits_device(model_cfg, config, device)
    tokenizer = load_tokenizer(model_cfg, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(
        path,
        config=config,
        dtype=resolve_dtype(dtype if dtype is not None else model_cfg.dtype, device),
        trust_remote_code=model_cfg.trust_remote_code,
        **_revision(model_cfg, path),
        **from_pretrained_kwargs,
    )
    model.to(device)
    model.eval()
    if getattr(model.generation_config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
