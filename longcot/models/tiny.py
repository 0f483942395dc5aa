"""The ``tiny`` model: a random-init Llama-architecture causal LM with a locally trained tokenizer.

It lets every stage (generation, SFT, RL, eval) run end to end on a CPU without downloading
anything. It is built deterministically from :class:`~longcot.models.config.ModelConfig`'s
``tiny_*`` fields (same fields => byte-identical ``save_pretrained`` output), cached under
``$LONGCOT_CACHE/models/tiny-<hash>`` (default ``~/.cache/longcot/models``), and then loaded through
exactly the same ``from_pretrained`` path as a real checkpoint (see :mod:`longcot.models.loading`).

The tokenizer is a byte-level BPE (digits split individually, as in Llama/Qwen) trained with the
``tokenizers`` library on a seeded synthetic corpus of math-like text: digits, operators, LaTeX
(``\\frac{}{}``, ``\\boxed{}``, ``\\sqrt{}``) and the reflection words the paper counts ("Wait",
"recheck", "Alternatively", "However", ...). Byte-level BPE round-trips any text exactly.

Special tokens: ``<|pad|>`` (0), ``<|bos|>`` (1), ``<|eos|>`` (2, also the end-of-turn marker),
``<|system|>``, ``<|user|>``, ``<|assistant|>``. The chat template renders::

    <|bos|><|system|>\\n{system}<|eos|>\\n<|user|>\\n{user}<|eos|>\\n<|assistant|>\\n

so a generated assistant turn ends at ``<|eos|>``, the generation config's EOS.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from longcot.models.config import ModelConfig

log = logging.getLogger(__name__)

# Bump whenever the corpus, tokenizer, architecture or init below changes: it is part of the cache key.
TINY_CODE_VERSION = 2

PAD_TOKEN = "<|pad|>"
BOS_TOKEN = "<|bos|>"
EOS_TOKEN = "<|eos|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, *ROLE_TOKENS)

CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] -%}"
    "{{- raise_exception('tiny chat template: unknown role ' + message['role']) -}}"
    "{%- endif -%}"
    "{{- '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}"
)

INITIALIZER_RANGE = 0.02
ROPE_THETA = 10000.0
_CORPUS_LINES = 6000


# --------------------------------------------------------------------------- shape / cache key
# spec key -> ModelConfig field. The spec's defaults are ModelConfig's (hidden 128, 4 heads: head
# size 32, which both transformers and vLLM's CPU attention backend support).
SPEC_FIELDS = {
    "seed": "tiny_seed",
    "hidden_size": "tiny_hidden_size",
    "layers": "tiny_layers",
    "heads": "tiny_heads",
    "vocab_size": "tiny_vocab_size",
    "max_position": "tiny_max_position",
}


def tiny_spec(model_cfg: "ModelConfig | None" = None, **overrides: Any) -> dict[str, int]:
    """The fields that determine the tiny model (and its cache key), from a ModelConfig or defaults."""
    if model_cfg is None:
        # The one source of truth for the default shape: ModelConfig's tiny_* defaults (model=tiny).
        from longcot.models.config import ModelConfig

        model_cfg = ModelConfig(name="tiny", path="tiny")
    spec = {key: int(getattr(model_cfg, field)) for key, field in SPEC_FIELDS.items()}
    unknown = sorted(set(overrides) - set(SPEC_FIELDS))
    if unknown:
        raise ValueError(f"unknown tiny model field(s) {unknown}; valid: {', '.join(SPEC_FIELDS)}")
    spec.update(overrides)
    if spec["hidden_size"] % spec["heads"]:
        raise ValueError(f"tiny_hidden_size={spec['hidden_size']} must be a multiple of tiny_heads={spec['heads']}")
    if (spec["hidden_size"] // spec["heads"]) % 2:
        raise ValueError("tiny model head dim (tiny_hidden_size / tiny_heads) must be even for RoPE")
    if spec["vocab_size"] < 300:
        raise ValueError(f"tiny_vocab_size must be >= 300 (256 bytes + specials + merges), got {spec['vocab_size']}")
    return spec


def tiny_key(spec: dict[str, int]) -> str:
    """Short stable hash of the shape, seed and code version."""
    payload = json.dumps({"version": TINY_CODE_VERSION, **spec}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def cache_root() -> Path:
    """``$LONGCOT_CACHE/models`` if set, else ``~/.cache/longcot/models``."""
    base = os.environ.get("LONGCOT_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "longcot"
    return root / "models"


def tiny_model_dir(model_cfg: "ModelConfig | None" = None, **overrides: Any) -> Path:
    """Where the tiny model of this config lives (whether or not it is built yet)."""
    return cache_root() / f"tiny-{tiny_key(tiny_spec(model_cfg, **overrides))}"


# --------------------------------------------------------------------------- corpus + tokenizer
_WORDS = [
    "Wait", "let", "me", "recheck", "Alternatively", "However", "answer", "step", "Step", "So",
    "the", "is", "we", "have", "Let", "us", "compute", "Therefore", "Hence", "Thus", "check",
    "verify", "that", "again", "Hmm", "maybe", "final", "solution", "equation", "value", "of",
    "and", "then", "First", "Next", "Finally", "gives", "equals", "sum", "product", "number",
    "problem", "reason", "by", "put", "your", "within", "Please", "think", "mistake", "correct",
]
_SYLLABLES = [
    "ka", "ro", "mi", "te", "lu", "sa", "ne", "po", "di", "fa", "gu", "he", "ji", "ko", "la", "mo",
    "nu", "pe", "qi", "ra", "si", "to", "vu", "we", "xi", "yo", "za", "an", "en", "in", "on", "un",
    "er", "or", "ar", "st", "th", "ch", "sh", "tr", "pl", "gr", "ion", "ing", "ed", "ly", "al", "ic",
]
_LATEX = [
    "\\frac", "\\sqrt", "\\boxed", "\\times", "\\cdot", "\\pi", "\\alpha", "\\beta", "\\theta",
    "\\sin", "\\cos", "\\tan", "\\log", "\\ln", "\\sum", "\\prod", "\\int", "\\infty", "\\leq",
    "\\geq", "\\neq", "\\approx", "\\left(", "\\right)", "\\binom", "\\dfrac", "\\text",
]
_PROMPT_TAIL = "Please reason step by step, and put your final answer within \\boxed{}."


def _math_expr(rng: random.Random) -> str:
    a, b, c = rng.randint(0, 99), rng.randint(1, 99), rng.randint(0, 999)
    op = rng.choice(["+", "-", "\\times", "\\cdot", "/", "="])
    kind = rng.randrange(8)
    if kind == 0:
        return f"{a} {op} {b} = {c}"
    if kind == 1:
        return f"\\frac{{{a}}}{{{b}}}"
    if kind == 2:
        return f"\\sqrt{{{c}}}"
    if kind == 3:
        return f"x^{{{rng.randint(2, 5)}}} + {a}x - {b} = 0"
    if kind == 4:
        return f"({a} + {b})^2 = {(a + b) ** 2}"
    if kind == 5:
        return f"\\frac{{{a} + {b}}}{{{c + 1}}} = {a + b}/{c + 1}"
    if kind == 6:
        return f"{a}.{rng.randint(0, 99):02d}"
    return f"\\pi r^2 = {a}\\pi"


def _pseudo_words(rng: random.Random, count: int) -> list[str]:
    """A Zipf-ish lexicon of pronounceable pseudo-words, so BPE has merges to learn up to large vocabs."""
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < count:
        w = "".join(rng.choices(_SYLLABLES, k=rng.randint(1, 4)))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def synthetic_corpus(seed: int, vocab_size: int = 1024) -> list[str]:
    """Deterministic math-like training text for the tiny tokenizer (grows with the vocab size)."""
    rng = random.Random(f"longcot-tiny-corpus:{seed}")
    scale = max(1.0, vocab_size / 1024)
    lines = int(_CORPUS_LINES * scale)
    lexicon = _pseudo_words(rng, int(4000 * scale))
    weights = [1.0 / (rank + 1) for rank in range(len(lexicon))]
    out: list[str] = []
    for _ in range(lines):
        kind = rng.randrange(8)
        if kind >= 6:
            words = rng.choices(lexicon, weights=weights, k=rng.randint(4, 16))
            words += rng.choices(_LATEX, k=rng.randint(0, 3))
            rng.shuffle(words)
            out.append(" ".join(words) + rng.choice([".", ",", ":", "?", ""]))
            continue
        if kind == 0:
            line = f"Step {rng.randint(1, 20)}: {' '.join(rng.choices(_WORDS, k=rng.randint(3, 10)))} {_math_expr(rng)}."
        elif kind == 1:
            line = f"Wait, let me recheck: {_math_expr(rng)}. However, {_math_expr(rng)}."
        elif kind == 2:
            line = f"Alternatively, {' '.join(rng.choices(_WORDS, k=rng.randint(2, 8)))}: ${_math_expr(rng)}$."
        elif kind == 3:
            line = f"So the answer is $\\boxed{{{rng.choice([str(rng.randint(0, 999)), _math_expr(rng)])}}}$."
        elif kind == 4:
            line = f"Compute ${_math_expr(rng)}$ and ${_math_expr(rng)}$.\n\n{_PROMPT_TAIL}"
        else:
            line = " ".join(rng.choice([*_WORDS, _math_expr(rng)]) for _ in range(rng.randint(4, 14)))
        out.append(line)
    return out


def build_tokenizer_object(spec: dict[str, int]):
    """Train the byte-level BPE ``tokenizers.Tokenizer`` (deterministic in the spec)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec["vocab_size"],
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(synthetic_corpus(spec["seed"], spec["vocab_size"]), trainer=trainer)
    return tok


def build_hf_tokenizer(spec: dict[str, int]):
    """The tokenizer as a transformers ``PreTrainedTokenizerFast`` with specials and chat template."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer_object(spec),
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        extra_special_tokens=list(ROLE_TOKENS),
        clean_up_tokenization_spaces=False,
        model_max_length=spec["max_position"],
        padding_side="left",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


# --------------------------------------------------------------------------- model
def build_model(spec: dict[str, int], vocab_size: int, *, bos_id: int, eos_id: int, pad_id: int):
    """Random-init ``LlamaForCausalLM``; every parameter drawn from one seeded generator in name order."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    h = spec["hidden_size"]
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=h,
        intermediate_size=4 * h,
        num_hidden_layers=spec["layers"],
        num_attention_heads=spec["heads"],
        num_key_value_heads=spec["heads"],
        max_position_embeddings=spec["max_position"],
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
        rms_norm_eps=1e-5,
        initializer_range=INITIALIZER_RANGE,
        tie_word_embeddings=False,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec["seed"])
        model = LlamaForCausalLM(config).to(torch.float32)
        gen = torch.Generator().manual_seed(spec["seed"])
        with torch.no_grad():
            for name, param in sorted(model.named_parameters(), key=lambda kv: kv[0]):
                if param.ndim == 1:  # RMSNorm weights
                    param.fill_(1.0)
                else:
                    param.copy_(torch.randn(param.shape, generator=gen, dtype=torch.float32) * INITIALIZER_RANGE)
    model.generation_config = GenerationConfig(bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=pad_id)
    model.eval()
    return model


def build_tiny(out_dir: str | os.PathLike, model_cfg: "ModelConfig | None" = None, **overrides: Any) -> Path:
    """Build the tiny model + tokenizer and ``save_pretrained`` both into ``out_dir`` (not atomic)."""
    spec = tiny_spec(model_cfg, **overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_hf_tokenizer(spec)
    vocab = len(tokenizer)
    if vocab != spec["vocab_size"]:
        log.warning("tiny tokenizer reached %d tokens (asked %d); the model uses %d", vocab, spec["vocab_size"], vocab)
    model = build_model(
        spec,
        vocab,
        bos_id=tokenizer.bos_token_id,
        eos_id=tokenizer.eos_token_id,
        pad_id=tokenizer.pad_token_id,
    )
    # transformers 5 writes a model only on rank 0 of an initialised process group; every rank of a
    # torchrun job may build its own copy here (ensure_tiny: the first rename wins), so write on all.
    model.should_save_on_this_rank = lambda is_main_process: is_main_process
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "longcot_tiny.json").write_text(
        json.dumps({"version": TINY_CODE_VERSION, **spec}, sort_keys=True, indent=2) + "\n"
    )
    return out


def ensure_tiny(model_cfg: "ModelConfig | None" = None, **overrides: Any) -> Path:
    """The cached tiny model dir, building it first if absent.

    Built in a temp dir next to the target and moved in with one ``os.rename``, so a reader never
    sees a half-written model and concurrent builders cannot corrupt each other: the first rename
    wins, later builders discard their copy (the contents are identical anyway).
    """
    target = tiny_model_dir(model_cfg, **overrides)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        log.info("building tiny model in %s", target)
        build_tiny(tmp, model_cfg, **overrides)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache may be shared
        mask = os.umask(0)
        os.umask(mask)
        for path in tmp.iterdir():  # save_pretrained writes model.safetensors 0600: every file as a new file's mode
            os.chmod(path, 0o666 & ~mask)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
            # Lost the race to another builder: theirs is complete and identical.
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
