"""Typed settings of RL: the ``algorithm`` group (PPO, GRPO, Dr. GRPO, REINFORCE++) and the rl stage's ``rl.*``.

Defaults are the paper's PPO (official ``scripts/section_4__*``, ``cli/train_ppo_ray.py``): actor lr
5e-7, critic lr 9e-6, 512 prompts per rollout and 512 responses per optimizer step (OpenRLHF's
``--train_batch_size`` counts samples, not prompts), eps clip 0.2, value clip 0.2,
Adam betas (0.9, 0.95), grad-norm clip 1.0, k1 KL with a fixed coefficient 0.01 added to the reward,
rewards clipped to (-10, 10), lambda 1, t = 1.0, top-p 1.0, prompts up to 2,048 and responses up to
14,336 tokens. The discount factors are the reward channels' (``reward.gamma``,
``reward.repetition.gamma``; official ``--gamma 1,0.99``), not an algorithm setting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING

from longcot.rl.prompts import DistillPrompts
from longcot.training.options import BACKENDS, PRECISIONS, ZERO_STAGES

ALGORITHMS = ("ppo", "grpo", "dr_grpo", "reinforce_pp", "dapo", "gspo")
ADVANTAGES = ("gae", "reinforce", "group", "dr_group")
KL_PLACEMENTS = ("reward", "loss")
ROLLOUT_BACKENDS = ("hf", "vllm")
VALUE_HEADS = ("shared", "per_channel")
DYNAMIC_SAMPLING = ("accuracy", "reward")  # the per-response value whose group spread decides
ATTN = ("auto", "sdpa", "eager", "flash_attention_2")


def _choice(key: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{key}: unknown value {value!r}; valid: {', '.join(valid)}")


@dataclass
class AlgorithmConfig:
    """An RL algorithm (§4): which advantage estimator, where the KL goes, and the optimisation settings.

    ``rollout_batch_size`` prompts are sampled ``samples_per_prompt`` times per step; the rollout is
    then trained on for ``epochs`` passes in optimizer steps of ``train_batch_size`` responses
    (micro batches of ``micro_train_batch_size``). ``episodes`` passes over the prompt data.
    """

    name: str = MISSING  # ppo | grpo | dr_grpo | reinforce_pp
    advantage: str = "gae"  # gae (PPO, critic) | reinforce (REINFORCE++) | group (GRPO) | dr_group (Dr. GRPO)
    learning_rate: float = 5e-7
    critic_learning_rate: Optional[float] = 9e-6  # gae only
    kl_coef: float = 0.01
    kl_estimator: str = "k1"  # k1 | k2 | k3
    # reward: -kl_coef*KL split among the reward channels | loss: kl_coef * KL in the actor loss (a
    # per-sequence token mean, then the batch mean, whatever loss_aggregation says for the policy term)
    kl_in: str = "reward"
    reward_clip: Optional[float] = 10.0  # channel rewards clipped to [-reward_clip, reward_clip]
    clip_ratio: float = 0.2
    value_clip: Optional[float] = 0.2
    entropy_coef: float = 0.0
    lam: float = 1.0
    whiten_advantages: bool = True  # official replay-buffer normalisation (gae, reinforce)
    loss_aggregation: str = "seq_mean_token_mean"  # | token_mean | seq_mean_token_sum_norm (Dr. GRPO)
    group_eps: float = 1e-6
    rollout_batch_size: int = 512  # prompts per step
    samples_per_prompt: int = 8
    train_batch_size: int = 512  # responses per optimizer step
    micro_train_batch_size: int = 1
    epochs: int = 1
    episodes: int = 1
    max_prompt_tokens: int = 2048
    max_new_tokens: int = 14336
    temperature: float = 1.0
    top_p: float = 1.0
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    warmup_ratio: float = 0.03  # OpenRLHF cosine_with_min_lr: warmup, then cosine to min_lr_ratio x lr
    min_lr_ratio: float = 0.1
    # official: a response's last token becomes EOS unless it is, before the rewards (see rl/experience.py);
    # truncated: only a truncated response's, after the rewards; keep: never
    truncated_eos: str = "official"
    # gae only: "shared" = one scalar value head on the summed channel returns (official; several
    # channel gammas then need lam = 1) | "per_channel" = one value head per reward channel, each
    # channel's GAE with its own gamma and lam, advantages summed (goes beyond the official code)
    value_heads: str = "shared"

    # --- the 2025 length-control knobs (DAPO, GSPO, TIS; see rl/losses.py, rl/dynamic_sampling.py). Their
    # defaults leave the loop as it was; they enter a run's identity only when set (length_control_identity).
    clip_ratio_low: Optional[float] = None  # DAPO clip-higher: eps_low (null: clip_ratio; verl actor.clip_ratio_low)
    clip_ratio_high: Optional[float] = None  # eps_high (null: clip_ratio); DAPO 0.28, GSPO 4e-4
    ratio_level: str = "token"  # token (PPO) | sequence (GSPO: the length-normalised sequence ratio)
    # DAPO dynamic sampling: drop the groups whose accuracy (DAPO, verl filter_groups.metric=acc) or total
    # reward (metric=seq_reward) is the same for every sample, and sample more prompts until the step has
    # rollout_batch_size groups, in at most dynamic_sampling_max_rounds generation rounds (verl
    # max_num_gen_batches); null: off
    dynamic_sampling: Optional[str] = None
    dynamic_sampling_max_rounds: int = 10
    overlong_filter: bool = False  # DAPO overlong filtering: truncated responses get no loss (TRL mask_truncated_completions)
    rollout_is: bool = False  # truncated importance sampling: loss x min(pi_old / pi_rollout, cap) per token
    rollout_is_cap: float = 2.0  # verl rollout_is_threshold, TRL vllm_importance_sampling_cap

    def validate(self) -> "AlgorithmConfig":
        _choice("algorithm.name", self.name, ALGORITHMS)
        _choice("algorithm.advantage", self.advantage, ADVANTAGES)
        _choice("algorithm.kl_in", self.kl_in, KL_PLACEMENTS)
        from longcot.rl.kl import KL_ESTIMATORS
        from longcot.rl.losses import LOSS_AGGREGATIONS

        _choice("algorithm.kl_estimator", self.kl_estimator, KL_ESTIMATORS)
        _choice("algorithm.loss_aggregation", self.loss_aggregation, LOSS_AGGREGATIONS)
        from longcot.rl.experience import TRUNCATED_EOS

        if self.truncated_eos == "replace":
            raise ValueError("algorithm.truncated_eos: 'replace' was split in two: official (every response not "
                             "ending in EOS, before the rewards) or truncated (the former replace); valid: "
                             + ", ".join(TRUNCATED_EOS))
        _choice("algorithm.truncated_eos", self.truncated_eos, TRUNCATED_EOS)
        _choice("algorithm.value_heads", self.value_heads, VALUE_HEADS)
        for key in ("rollout_batch_size", "samples_per_prompt", "train_batch_size", "micro_train_batch_size",
                    "epochs", "episodes", "max_prompt_tokens", "max_new_tokens"):
            if getattr(self, key) < 1:
                raise ValueError(f"algorithm.{key} must be >= 1, got {getattr(self, key)}")
        if self.train_batch_size % self.micro_train_batch_size:
            raise ValueError(
                f"algorithm.train_batch_size={self.train_batch_size} must be a multiple of "
                f"algorithm.micro_train_batch_size={self.micro_train_batch_size}"
            )
        n = self.rollout_batch_size * self.samples_per_prompt
        if self.train_batch_size > n or n % self.train_batch_size:
            raise ValueError(
                f"algorithm.train_batch_size={self.train_batch_size} must divide the {n} responses of one rollout "
                f"(rollout_batch_size {self.rollout_batch_size} x samples_per_prompt {self.samples_per_prompt})"
            )
        if self.advantage in ("group", "dr_group") and self.samples_per_prompt < 2:
            raise ValueError(f"algorithm.samples_per_prompt must be >= 2 for {self.advantage} advantages")
        if self.advantage == "gae" and not self.critic_learning_rate:
            raise ValueError("algorithm.critic_learning_rate must be set for advantage=gae (PPO trains a critic)")
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"algorithm.lam must be in [0, 1], got {self.lam}")
        for key in ("learning_rate", "clip_ratio"):
            if getattr(self, key) <= 0:
                raise ValueError(f"algorithm.{key} must be > 0, got {getattr(self, key)}")
        for key in ("kl_coef", "weight_decay"):
            if getattr(self, key) < 0:
                raise ValueError(f"algorithm.{key} must be >= 0, got {getattr(self, key)}")
        from longcot.rl.losses import RATIO_LEVELS

        _choice("algorithm.ratio_level", self.ratio_level, RATIO_LEVELS)
        if self.dynamic_sampling is not None:
            _choice("algorithm.dynamic_sampling", self.dynamic_sampling, DYNAMIC_SAMPLING)
        if self.dynamic_sampling_max_rounds < 1:
            raise ValueError(f"algorithm.dynamic_sampling_max_rounds must be >= 1, got {self.dynamic_sampling_max_rounds}")
        if self.clip_ratio_low is not None and not 0.0 < self.clip_ratio_low < 1.0:
            raise ValueError(f"algorithm.clip_ratio_low must be in (0, 1) or null, got {self.clip_ratio_low}")
        if self.clip_ratio_high is not None and self.clip_ratio_high <= 0:
            raise ValueError(f"algorithm.clip_ratio_high must be > 0 or null, got {self.clip_ratio_high}")
        if self.rollout_is_cap <= 0:
            raise ValueError(f"algorithm.rollout_is_cap must be > 0, got {self.rollout_is_cap}")
        if len(self.adam_betas) != 2:
            raise ValueError(f"algorithm.adam_betas must have 2 values, got {list(self.adam_betas)}")
        return self

    @property
    def uses_critic(self) -> bool:
        return self.advantage == "gae"

    @property
    def eps_low(self) -> float:
        return self.clip_ratio if self.clip_ratio_low is None else self.clip_ratio_low

    @property
    def eps_high(self) -> float:
        return self.clip_ratio if self.clip_ratio_high is None else self.clip_ratio_high


# knob -> the value that leaves the loop as before (then not part of a run's identity)
LENGTH_CONTROL_NEUTRAL = {"clip_ratio_low": None, "clip_ratio_high": None, "ratio_level": "token",
                          "dynamic_sampling": None, "dynamic_sampling_max_rounds": 10, "overlong_filter": False,
                          "rollout_is": False, "rollout_is_cap": 2.0}


def length_control_identity(algorithm: AlgorithmConfig) -> dict:
    """The algorithm's fields for a run's identity: the length-control knobs only where they change
    the output (a clip bound equal to ``clip_ratio``, the rounds cap without dynamic sampling or the
    TIS cap without TIS change nothing), so runs from before the knobs keep their identities."""
    out = dict(vars(algorithm))
    drop = {k for k, v in LENGTH_CONTROL_NEUTRAL.items() if out.get(k) == v}
    for key in ("clip_ratio_low", "clip_ratio_high"):
        if out[key] is not None and out[key] == algorithm.clip_ratio:
            drop.add(key)
    if algorithm.dynamic_sampling is None:
        drop.add("dynamic_sampling_max_rounds")
    if not algorithm.rollout_is:
        drop.add("rollout_is_cap")
    return {k: v for k, v in out.items() if k not in drop}


@dataclass
class RLConfig:
    """Settings of the rl stage beyond the algorithm."""

    # The SFT run the actor (and critic) start from: False = RL directly from `model` (Table 4 "base").
    from_sft: bool = False
    eval_benchmarks: list[str] = field(default_factory=list)
    max_steps: Optional[int] = None  # cap on rollout steps (None: episodes x prompts / rollout_batch_size)
    save_every: int = 8  # checkpoint every N steps (official --save_steps 8), and at the end
    keep_checkpoints: int = 2  # most recent checkpoints kept
    rollout_backend: str = "hf"  # hf | vllm (colocated; weights pushed after every update)
    generate_batch_size: int = 64  # HF rollout batch (responses per generate call)
    # rollout_backend=vllm on a GPU: the colocated engine's share of GPU memory (weights + KV cache),
    # next to the actor, reference, critic and optimizer states. generation.gpu_memory_utilization
    # (0.9) is for standalone engines (eval, distill) and is not used by the colocated one.
    vllm_gpu_memory_utilization: float = 0.3
    forward_batch_size: int = 8  # responses per no-grad forward (logprobs, ref logprobs, values)
    # Log-probs and entropy from the final hidden states in chunks of this many response tokens
    # (the LM head applied per chunk, recomputed in backward): a 14k-token response never holds its
    # full (tokens x vocab) fp32 logits. null: the whole response at once.
    logits_chunk_tokens: Optional[int] = None
    # The RL prompts: the `data` group while rl.prompts.teacher is empty; else a silver distill run
    # (Table 3: extracted answers as the references, filter all | agreed; longcot/rl/prompts.py).
    # `data.limit` takes the first prompts.
    prompts: DistillPrompts = field(default_factory=DistillPrompts)
    seed: int = 0
    device: str = "auto"  # auto: cuda:<local rank> when CUDA is available, else cpu | cpu | cuda
    # N of the logged repetition rate (metrics repetition/rate_<N>gram, repetition/token_share_<N>gram;
    # §4.5, Fig. 10), measured alike with or without a repetition reward: 40, the paper's penalty N
    # (App. C.2). Not in the run's identity (it changes no trained value); the N is in the metric's name.
    repetition_metric_ngram: int = 40

    # --- training engine of the actor and the critic (one process per GPU: torchrun or srun)
    backend: str = "auto"  # auto (deepspeed on >1 GPU when installed, else torch DDP) | torch | deepspeed
    zero_stage: int = 2  # deepspeed: conf/deepspeed/zero<stage>.json (official --zero_stage 2)
    adam_offload: bool = False  # deepspeed: optimizer states in CPU memory (official --adam_offload)
    precision: str = "auto"  # auto: bf16 on GPU (official --bf16), float32 on CPU | float32 | bf16
    attn_implementation: str = "auto"  # auto: flash_attention_2 on GPU when installed, else sdpa | sdpa | eager | flash_attention_2
    gradient_checkpointing: bool = False  # official --gradient_checkpointing

    def validate(self) -> "RLConfig":
        _choice("rl.rollout_backend", self.rollout_backend, ROLLOUT_BACKENDS)
        self.prompts.validate()
        _choice("rl.backend", self.backend, BACKENDS)
        _choice("rl.precision", self.precision, PRECISIONS)
        _choice("rl.attn_implementation", self.attn_implementation, ATTN)
        if self.zero_stage not in ZERO_STAGES:
            raise ValueError(f"rl.zero_stage={self.zero_stage!r}; valid: {', '.join(map(str, ZERO_STAGES))}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"rl.device={self.device!r}; valid: auto, cpu, cuda, cuda:<index>")
        if not 0.0 < self.vllm_gpu_memory_utilization < 1.0:
            raise ValueError(f"rl.vllm_gpu_memory_utilization must be in (0, 1), got {self.vllm_gpu_memory_utilization}")
        if self.adam_offload and self.backend == "torch":
            raise ValueError("rl.adam_offload=true needs DeepSpeed (rl.backend=deepspeed, or auto on several GPUs); "
                             "rl.backend=torch has no optimizer offload")
        if self.logits_chunk_tokens is not None and self.logits_chunk_tokens < 1:
            raise ValueError(f"rl.logits_chunk_tokens must be >= 1 or null, got {self.logits_chunk_tokens}")
        for key in ("save_every", "keep_checkpoints", "generate_batch_size", "forward_batch_size",
                    "repetition_metric_ngram"):
            if getattr(self, key) < 1:
                raise ValueError(f"rl.{key} must be >= 1, got {getattr(self, key)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"rl.max_steps must be >= 1 or null, got {self.max_steps}")
        return self
