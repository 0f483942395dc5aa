"""HF transformers generation backend (CPU or GPU).

Sampling is done by :class:`PerRowSampler`, a ``LogitsProcessor`` that ``model.generate`` runs in
greedy mode (``do_sample=False``): for each row it applies temperature and top-p, draws the next
token with the Gumbel-max trick from that row's own ``torch.Generator`` (seeded with
:func:`~longcot.generation.base.sample_seed`; one uniform per vocabulary entry per step), and
returns scores that are ``-inf`` everywhere except the drawn token, so greedy selection picks it.
Row ``r`` of a batch therefore consumes the random stream of its own (prompt seed, sample index)
and nothing else: a sample is the same whatever batch it lands in, up to float noise from padding
(see below).
``generate`` never reorders rows in greedy/sampling mode (only beam search does).

Temperature 0 is greedy (argmax, no random draws); top-p keeps the smallest set of most likely
tokens whose mass reaches ``top_p`` (always at least the top token), so a tiny ``top_p`` is greedy.

Completions:

* ``token_ids``: the generated ids up to and *including* the first EOS (any id of the generation
  config's / tokenizer's EOS set); nothing after it (generate pads finished rows). So
  ``num_tokens`` counts the EOS as a generated token.
* ``finish_reason``: ``"stop"`` if an EOS was generated, ``"length"`` if the row reached its token
  budget without one (then ``num_tokens == budget``).
* ``text``: ``decode(token_ids, skip_special_tokens=True)``.
* ``prompt_tokens``: length of the chat-templated prompt, without padding.
* ``logprobs`` (``return_logprobs=True``, RL's truncated importance sampling): each token's log-prob
  under the model's own distribution, ``log_softmax`` of the logits the sampler sees (before
  temperature and top-p, as vLLM's default ``logprobs_mode="raw_logprobs"``), in float32.

Budget: ``max_new_tokens`` is clamped per prompt to ``max_position_embeddings - prompt_tokens``
(warned once); a batch generates up to its largest row budget and each row is cut back to its own,
which keeps results independent of the batch composition.

Batch invariance caveat: a row's logits in a left-padded batch can differ from the unpadded ones
in the last float bits (different reduction lengths). With Gumbel-max a sampled token only changes
if the two best perturbed scores are within that noise (or a greedy argmax is a near-tie), or a
token at the top-p boundary that flips in/out would have won: rare, not impossible. Samples are
bit-for-bit stable for a fixed batch composition and device.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Sequence

import torch
from transformers import LogitsProcessor

from longcot.generation.base import (
    Completion,
    Prompt,
    SamplingParams,
    resolve_seeds,
    sample_seed,
)
from longcot.generation.kv_cache import growing_cache_for

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from longcot.generation.config import GenerationConfig
    from longcot.models.config import ModelConfig

log = logging.getLogger(__name__)

# Used only when a tokenizer has no chat template (e.g. a base model): contents joined by blank lines.
_FALLBACK_SEPARATOR = "\n\n"
_warned_no_template: set[int] = set()
KV_CACHES = ("growing", "dynamic")


def render_prompt(tokenizer: "PreTrainedTokenizerBase", prompt: Prompt) -> str:
    """The chat-templated prompt text, with the generation prompt (assistant header) appended."""
    messages = [dict(m) for m in prompt]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if id(tokenizer) not in _warned_no_template:
        _warned_no_template.add(id(tokenizer))
        log.warning("tokenizer %s has no chat template; joining message contents with blank lines",
                    getattr(tokenizer, "name_or_path", "?"))
    return _FALLBACK_SEPARATOR.join(m["content"] for m in messages) + _FALLBACK_SEPARATOR


def encode_prompts(tokenizer: "PreTrainedTokenizerBase", prompts: Sequence[Prompt]) -> list[list[int]]:
    """Token ids of each rendered prompt (the template carries BOS itself, so no special tokens added),
    tokenized in one batch call (RL encodes every training prompt up front)."""
    if not prompts:
        return []
    texts = [render_prompt(tokenizer, p) for p in prompts]
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def encode_prompt(tokenizer: "PreTrainedTokenizerBase", prompt: Prompt) -> list[int]:
    """Token ids of one rendered prompt (:func:`encode_prompts`)."""
    return encode_prompts(tokenizer, [prompt])[0]


def eos_token_ids(tokenizer: "PreTrainedTokenizerBase", model: Any = None) -> list[int]:
    """Union of the tokenizer's EOS and the model generation config's EOS ids (ordered, unique)."""
    ids: list[int] = []
    cand: list[Any] = []
    gen_cfg = getattr(model, "generation_config", None) if model is not None else None
    if gen_cfg is not None:
        cand.append(gen_cfg.eos_token_id)
    cand.append(tokenizer.eos_token_id)
    for c in cand:
        for i in (c if isinstance(c, (list, tuple)) else [c]):
            if i is not None and int(i) not in ids:
                ids.append(int(i))
    if not ids:
        raise ValueError("no EOS token id in the tokenizer or the model's generation config")
    return ids


_NUCLEUS_FIRST_K = 64


def nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """The top-p set per row (bool, ``probs``' shape): in descending order of probability, ties by
    token index (a stable sort), each token whose predecessors' mass is below ``top_p``, and always
    the first. On CPU it is read from the top 64 tokens (from the whole vocabulary, for every row,
    when a row's set reaches 64): the same values in the same order give the same prefix sums (a CPU
    scan adds left to right), and ties at the cut are kept lowest index first, so the set is exactly
    the full stable sort's (``tests/test_generation_hf.py``). Elsewhere the scan runs over the whole
    vocabulary, as a full sort's does (a CUDA scan's rounding depends on its length)."""
    vocab = probs.shape[-1]
    k = min(_NUCLEUS_FIRST_K, vocab) if probs.device.type == "cpu" else vocab
    while True:
        top = torch.topk(probs, k, dim=-1, largest=True, sorted=True).values
        keep_sorted = (top.cumsum(dim=-1) - top) < top_p
        keep_sorted[:, 0] = True
        if k == vocab or not bool(keep_sorted[:, -1].any()):
            break
        k = vocab
    size = keep_sorted.sum(dim=-1, keepdim=True)  # a prefix of the sorted order
    last = top.gather(-1, size - 1)  # the smallest kept probability
    above, tie = probs > last, probs == last
    return above | (tie & (tie.cumsum(dim=-1) <= size - above.sum(dim=-1, keepdim=True)))


class PerRowSampler(LogitsProcessor):
    """LogitsProcessor: temperature + top-p sampling with one seeded generator per batch row.

    Each step, row ``r`` draws one uniform per vocabulary entry from its own generator and picks
    ``argmax_i log p_i + Gumbel_i`` over the nucleus (the Gumbel-max trick, an exact sample of the
    renormalized nucleus distribution). Unlike inverse-CDF sampling, the result only moves under a
    tiny perturbation of ``p`` (e.g. padding noise) if the two best perturbed scores are within that
    noise, or if a token swapping in/out at the nucleus boundary would have won; near-equal
    probabilities trading places have no effect. Generators live on the scores' device (created on
    the first call), so CPU and CUDA runs draw different (but each reproducible) streams.

    Returns ``-inf`` everywhere except the chosen token (0), for use with greedy ``generate``.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float, *, record_logprobs: bool = False) -> None:
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.seeds = [int(s) for s in seeds]
        self.generators: list[torch.Generator] | None = None
        # record_logprobs: per step, each row's log-prob of its chosen token (``logprobs``: list of (batch,))
        self.record_logprobs = bool(record_logprobs)
        self.logprobs: list[torch.Tensor] = []

    def _generators(self, device: torch.device) -> list[torch.Generator]:
        if self.generators is None:
            self.generators = [torch.Generator(device=device).manual_seed(s) for s in self.seeds]
        return self.generators

    def choose(self, scores: torch.Tensor) -> torch.Tensor:
        """Next token per row, shape ``(batch,)``."""
        if scores.shape[0] != len(self.seeds):
            raise RuntimeError(f"PerRowSampler built for {len(self.seeds)} rows, got {scores.shape[0]}")
        if self.temperature == 0:
            return scores.argmax(dim=-1)
        logp = torch.log_softmax(scores.to(torch.float64) / self.temperature, dim=-1)
        if self.top_p < 1.0:
            logp = logp.masked_fill(~nucleus(logp.exp(), self.top_p), float("-inf"))
        vocab = scores.shape[-1]
        # Gumbel(0, 1) = -log(-log U), in float32 (float64 log is slow on CPU), computed row by row
        # so a row's noise never depends on its position in the batch; the clamp keeps U > 0.
        gumbel = torch.stack(
            [
                torch.rand(vocab, generator=g, device=scores.device).clamp_(min=1e-30).log_().neg_().log_().neg_()
                for g in self._generators(scores.device)
            ]
        )
        return (logp + gumbel).argmax(dim=-1)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        chosen = self.choose(scores)
        if self.record_logprobs:
            raw = torch.log_softmax(scores.float(), dim=-1)
            self.logprobs.append(raw.gather(-1, chosen.unsqueeze(-1)).squeeze(-1).cpu())
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, chosen.unsqueeze(-1), 0.0)
        return out


class HFGenerator:
    """:class:`~longcot.generation.base.Generator` over a transformers causal LM."""

    def __init__(
        self,
        model: "PreTrainedModel",
        tokenizer: "PreTrainedTokenizerBase",
        *,
        batch_size: int = 16,
        device: str | None = None,
        synced_gpus: bool = False,
        return_logprobs: bool = False,
        kv_cache: str = "growing",
    ) -> None:
        """``synced_gpus``: every rank of a process group keeps stepping until all ranks' sequences
        are done (transformers' ``generate(synced_gpus=True)``), for a model whose forward is a
        collective (DeepSpeed ZeRO-3 gathers its partitioned weights in every forward); each rank
        must then generate for the same number of (prompt, sample) pairs. ``return_logprobs``: fill
        each completion's ``logprobs`` (see the module doc). ``kv_cache``: ``growing``
        (:mod:`longcot.generation.kv_cache`: on CPU, the same samples without a copy per token;
        elsewhere, or for a model with other than full-attention layers, transformers' own cache) or
        ``dynamic`` (transformers' ``DynamicCache``, the benchmark's baseline)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if kv_cache not in KV_CACHES:
            raise ValueError(f"kv_cache={kv_cache!r}; valid: {', '.join(KV_CACHES)}")
        self.kv_cache = kv_cache
        self.synced_gpus = bool(synced_gpus)
        self.return_logprobs = bool(return_logprobs)
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = int(batch_size)
        if device not in (None, "auto"):
            self.model.to(device)
        self.device = next(model.parameters()).device
        self.eos_ids = eos_token_ids(tokenizer, model)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.eos_ids[0]
        bos = getattr(model.generation_config, "bos_token_id", None)
        self.bos_id = bos if bos is not None else tokenizer.bos_token_id
        self.max_positions: int | None = getattr(model.config, "max_position_embeddings", None)
        self._warned_clamp = False

    @classmethod
    def from_config(cls, model_cfg: "ModelConfig", gen_cfg: "GenerationConfig") -> "HFGenerator":
        from longcot.models.loading import load_model_and_tokenizer, resolve_device

        device = resolve_device(gen_cfg.device)
        model, tokenizer = load_model_and_tokenizer(model_cfg, device=device)
        return cls(model, tokenizer, batch_size=gen_cfg.batch_size)

    # ------------------------------------------------------------------ helpers
    def render(self, prompt: Prompt) -> str:
        return render_prompt(self.tokenizer, prompt)

    def encode(self, prompt: Prompt) -> list[int]:
        return encode_prompt(self.tokenizer, prompt)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        enc = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in enc]

    def _budget(self, prompt_len: int, max_new_tokens: int) -> int:
        if self.max_positions is None:
            return max_new_tokens
        room = int(self.max_positions) - prompt_len
        if room < max_new_tokens:
            if not self._warned_clamp:
                self._warned_clamp = True
                log.warning(
                    "max_new_tokens=%d exceeds the context (%d positions) for a %d-token prompt; "
                    "clamping to %d (warned once)",
                    max_new_tokens, self.max_positions, prompt_len, max(room, 0),
                )
            return max(room, 0)
        return max_new_tokens

    def _clean_generation_config(self, max_new_tokens: int):
        from transformers import GenerationConfig

        return GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            num_return_sequences=1,
            use_cache=True,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            min_length=0,
            eos_token_id=list(self.eos_ids),
            pad_token_id=self.pad_id,
            bos_token_id=self.bos_id,
        )

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
        # Inference mode, except for a ZeRO-3 model (synced_gpus): its weights are re-gathered inside
        # the forward, and weights materialised in inference mode cannot be trained on afterwards.
        with torch.no_grad() if self.synced_gpus else torch.inference_mode():
            return self._generate(prompts, params, seeds=seeds, first_sample=first_sample, progress=progress)

    def _generate(
        self,
        prompts: Sequence[Prompt],
        params: SamplingParams,
        *,
        seeds: Sequence[int] | None,
        first_sample: int,
        progress: bool,
    ) -> list[list[Completion]]:
        from longcot.progress import bar

        seeds = resolve_seeds(len(prompts), params, seeds, first_sample)

        encoded = encode_prompts(self.tokenizer, prompts)
        results: list[list[Completion | None]] = [[None] * params.n for _ in prompts]
        # One job per (prompt, sample): (prompt index, k, sample index, seed, budget).
        jobs = []
        for i, ids in enumerate(encoded):
            budget = self._budget(len(ids), params.max_new_tokens)
            for k in range(params.n):
                s = first_sample + k
                if budget < 1:
                    if self.synced_gpus:  # this rank would run fewer forward passes than the others
                        raise ValueError(f"a {len(ids)}-token prompt leaves no room to generate in the "
                                         f"{self.max_positions}-position context (synced generation needs a budget)")
                    results[i][k] = Completion("", (), "length", len(ids), s)
                else:
                    jobs.append((i, k, s, sample_seed(int(seeds[i]), s), budget))
        # Longest prompts first, so each batch pads little and OOMs (if any) show up early.
        jobs.sort(key=lambda j: (-len(encoded[j[0]]), j[0], j[1]))
        batches = [jobs[b : b + self.batch_size] for b in range(0, len(jobs), self.batch_size)]

        saved_gen_cfg = self.model.generation_config
        try:
            from transformers import GenerationConfig

            # generate() fills unset options from model.generation_config (e.g. a checkpoint's
            # repetition_penalty or top_k): swap in a neutral one so only our sampler decides.
            self.model.generation_config = GenerationConfig(
                eos_token_id=list(self.eos_ids), pad_token_id=self.pad_id, bos_token_id=self.bos_id
            )
            for batch in bar(batches, desc="generate", unit="batch", disable=not progress):
                for (i, k, s, _seed, _b), comp in zip(batch, self._run_batch(batch, encoded, params)):
                    results[i][k] = comp
        finally:
            self.model.generation_config = saved_gen_cfg
        return [[c for c in row if c is not None] for row in results]

    def _run_batch(self, batch, encoded, params: SamplingParams) -> list[Completion]:
        from transformers import LogitsProcessorList

        lengths = [len(encoded[i]) for i, *_ in batch]
        width = max(lengths)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for r, (i, *_rest) in enumerate(batch):
            ids = encoded[i]
            input_ids[r, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention[r, width - len(ids) :] = 1
        budgets = [b for *_x, b in batch]
        sampler = PerRowSampler([seed for *_x, seed, _b in batch], params.temperature, params.top_p,
                                record_logprobs=self.return_logprobs)
        cache = growing_cache_for(self.model, width + max(budgets)) if self.kv_cache == "growing" else None
        out = self.model.generate(
            input_ids=input_ids.to(self.device),
            attention_mask=attention.to(self.device),
            past_key_values=cache,
            generation_config=self._clean_generation_config(max(budgets)),
            logits_processor=LogitsProcessorList([sampler]),
            synced_gpus=self.synced_gpus,
        )
        generated = out[:, width:].tolist()
        eos = set(self.eos_ids)
        token_lists: list[list[int]] = []
        reasons: list[str] = []
        for row, budget in zip(generated, budgets):
            row = row[:budget]
            stop = next((j for j, t in enumerate(row) if t in eos), None)
            if stop is None:
                assert len(row) == budget, (len(row), budget)
                token_lists.append(row)
                reasons.append("length")
            else:
                token_lists.append(row[: stop + 1])
                reasons.append("stop")
        texts = self.tokenizer.batch_decode(token_lists, skip_special_tokens=True)
        logps: list[tuple[float, ...] | None] = [None] * len(batch)
        if self.return_logprobs:
            steps = torch.stack(sampler.logprobs, dim=1) if sampler.logprobs else torch.zeros(len(batch), 0)
            logps = [tuple(steps[r, : len(toks)].tolist()) for r, toks in enumerate(token_lists)]
        return [
            Completion(text, tuple(toks), reason, plen, s, lp)  # type: ignore[arg-type]
            for (i, k, s, _seed, _b), toks, reason, text, plen, lp in zip(batch, token_lists, reasons, texts, lengths, logps)
        ]


def build(model_cfg: "ModelConfig", gen_cfg: "GenerationConfig") -> HFGenerator:
    """Backend entry point used by :func:`longcot.generation.build_generator`."""
    return HFGenerator.from_config(model_cfg, gen_cfg)
