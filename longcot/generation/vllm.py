"""vLLM offline-engine backend (GPU only; the ``gpu`` extra).

Same semantics as :mod:`longcot.generation.hf`:

* every (prompt, sample index) is its own request with ``SamplingParams(n=1,
  seed=sample_seed(prompt seed, sample index), ...)``, so sample ``i`` does not depend on what else
  is in flight (vLLM's per-request seeded generators; exact equality across runs additionally
  assumes vLLM's own batch-invariance, which it does not guarantee bit-for-bit);
* the chat template is applied by the HF tokenizer loaded through :mod:`longcot.models.loading`
  (the one the HF backend uses) and the engine gets token ids (``{"prompt_token_ids": ...}``), so
  ``prompt_tokens`` is exact and both backends see identical prompts;
* ``token_ids`` end with the EOS when ``finish_reason == "stop"``; ``text`` is decoded with
  ``skip_special_tokens=True`` by the same tokenizer; ``max_tokens`` is clamped to
  ``max_model_len - prompt_tokens``;
* ``rope_theta_scale`` / ``max_model_len`` reach the engine's HF config through ``hf_overrides``
  (a picklable ``functools.partial`` of :func:`longcot.models.loading.apply_config_overrides`).

``vllm`` is imported inside :class:`VLLMGenerator` only, so importing this module is free.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any, Sequence

from longcot.generation.base import (
    Completion,
    Prompt,
    SamplingParams,
    resolve_seeds,
    sample_seed,
)

if TYPE_CHECKING:  # pragma: no cover
    from longcot.config.schema import GenerationConfig, ModelConfig

log = logging.getLogger(__name__)

VLLM_MISSING = "generation=vllm needs the gpu extra: pip install 'longcot[gpu]' (vllm==0.31.0, CUDA only)"


def _import_vllm():
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        raise ImportError(VLLM_MISSING) from exc
    return vllm


class VLLMGenerator:
    """:class:`~longcot.generation.base.Generator` over ``vllm.LLM``."""

    def __init__(self, model_cfg: "ModelConfig", gen_cfg: "GenerationConfig | None" = None, *, llm: Any = None):
        from longcot.config.schema import GenerationConfig
        from longcot.generation.hf import encode_prompt, eos_token_ids
        from longcot.models.loading import (
            apply_config_overrides,
            load_config,
            load_tokenizer,
            resolve_model_path,
            resolve_tokenizer_path,
        )

        vllm = _import_vllm()
        gen_cfg = gen_cfg or GenerationConfig(backend="vllm")
        self.model_cfg = model_cfg
        self.gen_cfg = gen_cfg
        self._encode = encode_prompt
        path = resolve_model_path(model_cfg)
        self.tokenizer = load_tokenizer(model_cfg, padding_side="left")
        hf_config = load_config(model_cfg, path)
        try:
            from transformers import GenerationConfig as HFGenerationConfig

            hf_gen = HFGenerationConfig.from_pretrained(path)
        except Exception:  # no generation_config.json
            hf_gen = None
        self.eos_ids = eos_token_ids(self.tokenizer, _HasGenCfg(hf_gen) if hf_gen is not None else None)

        if llm is None:
            overrides = functools.partial(
                apply_config_overrides,
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
            if model_cfg.max_model_len is not None:
                kwargs["max_model_len"] = int(model_cfg.max_model_len)
            llm = vllm.LLM(**kwargs)
        self.llm = llm
        self.max_model_len = self._engine_max_len(hf_config)

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
                        skip_special_tokens=True,
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
                results[i][k] = Completion(text, toks, reason, len(encoded[i]), s)
        return [[c for c in row if c is not None] for row in results]


class _HasGenCfg:
    """Adapter so :func:`eos_token_ids` can read a bare generation config."""

    def __init__(self, generation_config: Any) -> None:
        self.generation_config = generation_config


def build(model_cfg: "ModelConfig", gen_cfg: "GenerationConfig") -> VLLMGenerator:
    """Backend entry point used by :func:`longcot.generation.build_generator`."""
    return VLLMGenerator.from_config(model_cfg, gen_cfg)
