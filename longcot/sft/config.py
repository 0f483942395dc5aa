"""Typed settings of the SFT stage (``sft.*`` of the root config).

Recipe defaults are the official Fig. 1 SFT scripts (eddycmu/demystify-long-cot,
``openrlhf/scripts/section_3.1_sft_scaling/*.sh`` at commit 7cec701, and the defaults of
``openrlhf/cli/train_sft.py``): Llama-3.1-8B, global batch 256 (micro batch 1), lr 5e-6, 2 epochs,
cosine with min lr 0.1 x lr and warmup ceil(0.03 x steps), Adam betas (0.9, 0.95), grad norm 1.0,
bf16, ZeRO-2, FlashAttention, gradient checkpointing, max_len 128K. Differences: our default
``max_length`` is 16,384 (the official 131,072 is set by ``experiments/fig1_sft_scaling.yaml``), and
the last partial batch of an epoch is a smaller step here where OpenRLHF drops it. The paper's text
itself could not be read here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from longcot.sft.mix import MIX_UNITS, MixComponent
from longcot.training.options import BACKENDS, PRECISIONS, ZERO_STAGES

SOURCES = ("distill", "dataset", "mix")
OVERLONG = ("drop", "truncate")
ATTN = ("auto", "sdpa_varlen", "sdpa", "eager", "flash_attention_2")


@dataclass
class SFTConfig:
    """SFT data selection and training hyperparameters (see longcot/sft/recipe.py)."""

    # Where the training data comes from: "distill" (a distill run planned from this config with
    # model=<teacher>), "dataset" (a local file / hub dataset id in `dataset`) or "mix" (several
    # distill subsets by weight: `mix`, `mix_unit`, `mix_size`; longcot/sft/mix.py).
    source: str = "distill"
    teacher: Optional[str] = None  # model config name of the distill upstream (source=distill)
    # generation option (conf/generation) the distill upstream ran with; None: this run's generation
    teacher_generation: Optional[str] = None
    subset: str = "n32"  # a distill selection: "n<N>" or "n<N>/budget-<tokens>"
    dataset: Optional[str] = None  # source=dataset: local .jsonl/.json/.parquet or hub id
    mix: list[MixComponent] = field(default_factory=list)  # source=mix: the components and their weights
    mix_unit: str = "sample"  # the weights are shares of the samples (sample) or of the SFT tokens (token)
    mix_size: Optional[int] = None  # total samples / tokens of the mix; null: the largest without repeats
    eval_benchmarks: list[str] = field(default_factory=list)

    # --- dataset fields (source=dataset): prompt + response columns, or chat `messages`
    prompt_field: str = "prompt"
    response_field: str = "response"
    messages_field: str = "messages"
    dataset_split: str = "train"
    system_prompt: Optional[str] = None  # prepended as a system turn when set

    # --- batch and sequence
    # An optimizer step consumes `global_batch_sequences` samples (official: 256), summed over all
    # processes; they are packed into micro-batches of at most `max_tokens_per_micro_batch` tokens
    # (one flattened row each, no attention across samples). The last step of an epoch takes the
    # remaining len(data) % global_batch_sequences samples (a smaller, full-weight step).
    global_batch_sequences: int = 256  # official --train_batch_size 256
    max_length: int = 16384  # tokens per sample (prompt + response); official --max_len 131072 (the Fig. 1 study sets it)
    max_tokens_per_micro_batch: int = 16384  # >= max_length
    overlong: str = "drop"  # samples longer than max_length: drop | truncate (keep the first max_length tokens)
    # the last partial batch of an epoch: a smaller step (false) or not trained on (true: OpenRLHF's
    # num_update_steps_per_epoch = len // train_batch_size; the paper's studies set it)
    drop_last: bool = False

    # --- optimisation
    learning_rate: float = 5e-6  # official
    warmup_ratio: float = 0.03  # official train_sft.py: warmup ceil(0.03 x steps), then cosine
    min_lr_ratio: float = 0.1  # cosine decays to min_lr_ratio * learning_rate (official min_lr = 0.1 x lr)
    epochs: int = 2  # official --max_epochs 2
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    max_grad_norm: float = 1.0
    max_steps: Optional[int] = None  # stop early after this many optimizer steps (smoke runs); the schedule still spans all epochs
    seed: int = 0  # data order (one permutation per epoch) and torch RNG

    # --- engine
    backend: str = "auto"  # auto (deepspeed on >1 GPU when installed, else torch) | torch | deepspeed
    zero_stage: int = 2  # deepspeed: conf/deepspeed/zero<stage>.json
    precision: str = "auto"  # auto: bf16 on GPU (official --bf16), float32 on CPU | float32 | bf16
    # auto: flash_attention_2 on GPU when flash_attn is installed, else sdpa_varlen (per-sample causal
    # sdpa over a packed row, longcot/training/attention.py) | sdpa (dense block-diagonal mask) | eager
    attn_implementation: str = "auto"
    gradient_checkpointing: bool = False

    # --- checkpoints and logging
    save_every_steps: int = 100  # periodic checkpoint interval (optimizer steps); 0 = only the final one
    keep_last: int = 2  # periodic checkpoints kept (older ones deleted)
    log_every_steps: int = 1

    def validate(self) -> None:
        """One clear ValueError naming the ``sft.*`` key and its valid values."""
        if self.source not in SOURCES:
            raise ValueError(f"sft.source={self.source!r}; valid: {', '.join(SOURCES)}")
        if self.mix_unit not in MIX_UNITS:
            raise ValueError(f"sft.mix_unit={self.mix_unit!r}; valid: {', '.join(MIX_UNITS)}")
        if self.source == "mix":
            if len(self.mix) < 2:
                raise ValueError(f"sft.mix: sft.source=mix needs at least 2 components, got {len(self.mix)}")
            for i, c in enumerate(self.mix):
                if not c.teacher:
                    raise ValueError(f"sft.mix[{i}].teacher: name the teacher (a conf/model option) of this component")
                if c.weight <= 0:
                    raise ValueError(f"sft.mix[{i}].weight must be > 0, got {c.weight}")
            if self.mix_size is not None and self.mix_size < 1:
                raise ValueError(f"sft.mix_size must be >= 1 or null, got {self.mix_size}")
        elif self.mix:
            raise ValueError(f"sft.mix: set only with sft.source=mix (sft.source={self.source})")
        if self.overlong not in OVERLONG:
            raise ValueError(f"sft.overlong={self.overlong!r}; valid: {', '.join(OVERLONG)}")
        if self.backend not in BACKENDS:
            raise ValueError(f"sft.backend={self.backend!r}; valid: {', '.join(BACKENDS)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"sft.precision={self.precision!r}; valid: {', '.join(PRECISIONS)}")
        if self.attn_implementation not in ATTN:
            raise ValueError(f"sft.attn_implementation={self.attn_implementation!r}; valid: {', '.join(ATTN)}")
        if self.zero_stage not in ZERO_STAGES:
            raise ValueError(f"sft.zero_stage={self.zero_stage!r}; valid: {', '.join(map(str, ZERO_STAGES))}")
        for key in ("global_batch_sequences", "max_length", "max_tokens_per_micro_batch", "epochs"):
            if getattr(self, key) < 1:
                raise ValueError(f"sft.{key} must be >= 1, got {getattr(self, key)}")
        if self.max_tokens_per_micro_batch < self.max_length:
            raise ValueError(f"sft.max_tokens_per_micro_batch={self.max_tokens_per_micro_batch} must be >= "
                             f"sft.max_length={self.max_length} (a sample must fit in one micro-batch)")
        if self.learning_rate <= 0:
            raise ValueError(f"sft.learning_rate must be > 0, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ValueError(f"sft.weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"sft.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"sft.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"sft.max_steps must be >= 1 or null, got {self.max_steps}")
        if self.save_every_steps < 0 or self.keep_last < 1 or self.log_every_steps < 1:
            raise ValueError("sft.save_every_steps must be >= 0, sft.keep_last and sft.log_every_steps >= 1")
