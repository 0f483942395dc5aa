"""The RL loop (paper §4-§5): PPO, GRPO, Dr. GRPO and REINFORCE++ are one loop with a config choice.

One step (official ``PPOTrainer.fit`` / ``make_experience_list`` / ``ppo_train``):

1. **rollout**: ``algorithm.rollout_batch_size`` prompts (a seeded shuffle per episode; the data
   position is the step number) sampled ``samples_per_prompt`` times from the live actor through
   the generation layer (``rl.rollout_backend``: HF on the in-memory actor, or colocated vLLM whose
   weights are re-pushed after every update and after a resume); sample ``i`` of a prompt is seeded
   by (``rl.seed``, step, problem id, i), so a rerun draws the same rollouts;
2. **reward**: correctness (rule grader or the model verifier), the reward config's channels
   (:func:`longcot.rl.scoring.score_responses`; cosine ``T`` = ``max_new_tokens``), computed from the
   response after its last token was made EOS (``algorithm.truncated_eos=official``, as the official code);
3. **experience**: actor and frozen-reference log-probs, critic values (PPO), the per-token KL;
   rewards clipped (their sum, with one gamma for several channels), KL split among channels
   (``kl_in: reward``), per-channel discounted returns,
   advantages by ``algorithm.advantage`` (see :mod:`longcot.rl.advantages`), whitened if set;
4. **update**: ``epochs`` passes in optimizer steps of ``train_batch_size`` responses (micro batches
   of ``micro_train_batch_size``), clipped policy loss (+ KL loss for GRPO, - entropy bonus if set),
   clipped value loss for the critic; each model is a :class:`longcot.training.engine.Engine`.

**Several processes** (one per GPU, ``torchrun`` or ``srun``; ``rl.backend``: torch DDP or DeepSpeed
ZeRO-1/2/3 with ``rl.zero_stage``, ``rl.adam_offload``, ``rl.precision``): rank ``r`` of ``W`` takes the
``r``-th contiguous block of the step's prompts (whole groups, so group advantages stay local),
samples, scores and trains on its own responses (as OpenRLHF's per-rank replay buffers); the
advantage whitening and every logged mean are global (all-reduced), and each optimizer step takes
``train_batch_size / W`` responses per rank. The rollouts do not depend on the split (per-sample
seeds), so ``W`` ranks train like one process up to float summation order when a rollout is one
optimizer step (tested). Under ZeRO-3 every forward of the actor is a collective, so HF rollouts
step all ranks together (``synced_gpus``) until every rank's sequences are done; colocated vLLM runs one engine per rank (vLLM's ``external_launcher``,
see :func:`longcot.generation.vllm.colocated_settings`), all reloading the weights rank 0 exported.
The frozen reference is a full copy per rank (bf16 under bf16).

**The 2025 length-control knobs** are config choices on this same loop (``AlgorithmConfig``; refused
at plan time where they make no sense, :func:`check_length_control`): clip-higher
(``clip_ratio_low/high``), the token-level loss over the whole optimizer step
(``loss_aggregation=token_mean``), GSPO's sequence ratio (``ratio_level=sequence``), truncated
importance sampling against the rollout engine's own log-probs (``rollout_is``, HF or vLLM;
:mod:`longcot.rl.losses`), DAPO's dynamic sampling (``dynamic_sampling``: extra generation rounds until
every group has a reward spread, :mod:`longcot.rl.dynamic_sampling`; ``responses_generated`` vs
``responses_trained`` logged), overlong filtering (``overlong_filter``: truncated responses out of
the policy loss, the critic still fits them) and the soft overlong punishment (a reward channel,
``reward.overlong``). Presets: ``algorithm=dapo`` (+ ``reward=dapo``), ``algorithm=gspo``.

Per step, one ``metrics.jsonl`` record (and the tracker): reward per channel, accuracy, response
length mean/max, truncation ratio, KL, entropy, policy/value loss, clip fraction, reflection keywords,
time split generate / reward / experience (log-probs, values, advantages) / update. Checkpoints (actor, critic, optimizers and schedules, RNG,
step = data position) every ``rl.save_every`` steps via :mod:`longcot.training.checkpoint`; a
relaunch resumes from the latest one and continues as if uninterrupted. The final actor is written
in HF format to ``<run_dir>/final/actor`` (an atomic weights-only checkpoint; its ``state.json``
marks the training finished). ``DONE`` is the caller's (the rl stage writes it after its summary).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import torch

from longcot.rl.config import AlgorithmConfig, RLConfig

if TYPE_CHECKING:  # pragma: no cover
    from longcot.models.config import ModelConfig
    from longcot.data.records import Problem
    from longcot.generation.base import Generator
    from longcot.tracking import Tracker

log = logging.getLogger(__name__)

FINAL = "final"
PLOT = "rl_progress.png"
TIMING_KEYS = ("time_generate_s", "time_reward_s", "time_experience_s", "time_update_s", "step_time_s", "weight_push_s")


@dataclass
class RLResult:
    run_dir: Path
    final_model: Path  # HF directory of the trained actor (with tokenizer)
    steps: int
    records: list[dict[str, Any]]
    resumed_from: Optional[int] = None  # the step a relaunch continued from


def plan_steps(num_problems: int, algorithm: AlgorithmConfig, rl: RLConfig) -> tuple[int, int]:
    """``(steps per episode, total steps)``: full prompt batches per pass (the last partial one is
    dropped, as the official data loader does), times ``episodes``, capped by ``rl.max_steps``."""
    per_episode = num_problems // algorithm.rollout_batch_size
    if per_episode < 1:
        raise ValueError(
            f"{num_problems} training prompts < algorithm.rollout_batch_size={algorithm.rollout_batch_size}; "
            "lower the rollout batch or add prompts"
        )
    total = per_episode * algorithm.episodes
    if rl.max_steps is not None:
        total = min(total, rl.max_steps)
    return per_episode, total


def step_problems(problems: Sequence["Problem"], step: int, per_episode: int, batch: int, seed: int) -> list["Problem"]:
    """The prompts of a step: episode ``step // per_episode`` shuffles the data with its own seed."""
    episode, offset = divmod(step, per_episode)
    order = list(range(len(problems)))
    random.Random(f"{seed}:episode:{episode}").shuffle(order)
    return [problems[i] for i in order[offset * batch : (offset + 1) * batch]]


def _updates_per_step(algorithm: AlgorithmConfig, world_size: int = 1) -> tuple[int, int, int]:
    """(responses per rollout on this rank, responses per optimizer step on this rank, optimizer
    steps per epoch) with the rollout's prompts and each optimizer step split evenly over ranks."""
    n = algorithm.rollout_batch_size * algorithm.samples_per_prompt
    w = world_size
    if algorithm.rollout_batch_size % w or algorithm.train_batch_size % w or (algorithm.train_batch_size // w) % algorithm.micro_train_batch_size:
        raise ValueError(
            f"with {w} processes, algorithm.rollout_batch_size={algorithm.rollout_batch_size} and "
            f"algorithm.train_batch_size={algorithm.train_batch_size} must be multiples of {w}, and "
            f"train_batch_size/{w} a multiple of algorithm.micro_train_batch_size={algorithm.micro_train_batch_size}"
        )
    return n // w, algorithm.train_batch_size // w, n // algorithm.train_batch_size


def _seed_of(*parts: Any) -> int:
    from longcot.generation.base import prompt_seed

    return prompt_seed(0, ":".join(str(p) for p in parts)) % (2**62)


def check_settings(algorithm: AlgorithmConfig, rl: RLConfig, reward: Any) -> Any:
    """Every RL setting checked together (the rl stage's plan calls this before anything runs);
    returns the typed reward config. PPO with reward channels of different gammas needs lambda = 1,
    as the official multi-gamma code asserts."""
    from longcot.rewards.channels import reward_channels, single_gamma
    from longcot.rewards.config import to_reward_config

    algorithm.validate()
    rl.validate()
    reward_cfg = to_reward_config(reward)
    gammas = [c.gamma for c in reward_channels(reward_cfg)]
    if algorithm.value_heads == "per_channel" and single_gamma(reward_cfg):
        raise ValueError(f"algorithm.value_heads=per_channel: reward {reward_cfg.name!r} gives one gamma for all its "
                         "channels (reward.repetition.gamma=null: summed, then clipped, one reward stream); "
                         "give reward.repetition.gamma a value or set algorithm.value_heads=shared")
    if algorithm.value_heads == "per_channel" and algorithm.advantage != "gae":
        raise ValueError(f"algorithm.value_heads=per_channel: only PPO (advantage=gae) has a critic; "
                         f"algorithm {algorithm.name!r} uses advantage={algorithm.advantage!r} (set value_heads=shared)")
    if (algorithm.advantage == "gae" and algorithm.value_heads == "shared" and len(set(gammas)) > 1
            and algorithm.lam != 1.0):
        raise ValueError(
            f"algorithm.lam={algorithm.lam}: reward {reward_cfg.name!r} has channels with different gammas "
            f"{gammas}; PPO with one value head and several gammas needs algorithm.lam=1 (as the official code "
            "asserts), or algorithm.value_heads=per_channel (one value head per channel, each its own GAE)"
        )
    check_length_control(algorithm, reward_cfg)
    return reward_cfg


def length_control_notes(algorithm: AlgorithmConfig, rl: RLConfig) -> tuple[str, ...]:
    """Plan notes: knob settings that change nothing as configured (never silently ignored)."""
    out = []
    if algorithm.dynamic_sampling is None and algorithm.dynamic_sampling_max_rounds != 10:
        out.append(f"algorithm.dynamic_sampling_max_rounds={algorithm.dynamic_sampling_max_rounds}: not used "
                   "without algorithm.dynamic_sampling")
    if not algorithm.rollout_is and algorithm.rollout_is_cap != 2.0:
        out.append(f"algorithm.rollout_is_cap={algorithm.rollout_is_cap}: not used without algorithm.rollout_is=true")
    if algorithm.rollout_is and rl.rollout_backend == "hf":
        out.append("algorithm.rollout_is=true with rl.rollout_backend=hf: the rollouts come from the trained model "
                   "itself, so the weights stay ~1 (TIS corrects an inference engine's mismatch: rl.rollout_backend=vllm)")
    return tuple(out)


def check_length_control(algorithm: AlgorithmConfig, reward_cfg: Any) -> None:
    """The combinations of the 2025 knobs (DAPO, GSPO, TIS) that make no sense, refused at plan time."""
    if algorithm.dynamic_sampling is not None and algorithm.advantage not in ("group", "dr_group"):
        raise ValueError(
            f"algorithm.dynamic_sampling={algorithm.dynamic_sampling}: dropping groups whose samples score alike "
            f"removes zero-advantage prompts only for group baselines (advantage=group or dr_group); "
            f"advantage={algorithm.advantage!r} gives those responses non-zero advantages (set "
            "algorithm.dynamic_sampling=null or use algorithm=grpo/dr_grpo/dapo)")
    if algorithm.ratio_level == "sequence" and algorithm.loss_aggregation != "seq_mean_token_mean":
        raise ValueError(
            f"algorithm.ratio_level=sequence (GSPO) with algorithm.loss_aggregation={algorithm.loss_aggregation}: "
            "a sequence-level ratio is a per-response objective, and a token sum weights each response by its "
            "length (verl's GSPO loss always aggregates seq_mean_token_mean; TRL warns); set "
            "algorithm.loss_aggregation=seq_mean_token_mean")
    ov = getattr(reward_cfg, "overlong", None)
    if ov is not None and ov.cache >= algorithm.max_new_tokens:
        raise ValueError(
            f"reward.overlong.cache={ov.cache} must be below the generation limit "
            f"algorithm.max_new_tokens={algorithm.max_new_tokens} (after the scale's caps; the penalty ramps over "
            "the last cache tokens before it; DAPO: 4096 of 20480): lower reward.overlong.cache")


def train(
    run_dir: Path,
    *,
    model: "ModelConfig",
    problems: Sequence["Problem"],
    algorithm: AlgorithmConfig,
    reward: Any,
    rl: RLConfig,
    tracker: Optional["Tracker"] = None,
    judge: Optional["Generator"] = None,
    system_prompt: Optional[str] = None,
    vllm_factory: Optional[Callable[[Path], "Generator"]] = None,
    progress: bool = True,
) -> RLResult:
    """Train ``model`` with RL on ``problems`` into ``run_dir``; resumes from its latest checkpoint.

    ``model``: the starting policy (for ``rl.from_sft`` the caller points ``model.path`` at the SFT
    run's final HF directory); the reference and the critic body load from the same checkpoint.
    ``reward``: a reward config (``conf/reward/*``); ``judge``: the verifier's generator when
    ``reward.correctness == "model"``. ``tracker`` may be None. ``vllm_factory(weights_dir)`` builds
    the colocated vLLM generator for ``rl.rollout_backend == "vllm"`` (its weights are then pushed
    with ``reload_weights`` after every update). A run whose final actor is written returns at once
    (its records, nothing retrained).
    """
    from longcot.analysis.length import length_gap
    from longcot.analysis.reflection import keyword_frequency
    from longcot.analysis.repetition import repetition_stats
    from longcot.data.prompts import chat_prompt
    from longcot.generation.base import SamplingParams, prompt_seed
    from longcot.generation.hf import HFGenerator, encode_prompts
    from longcot.models.loading import load_config, load_model_and_tokenizer, resolve_model_path
    from longcot.rewards.channels import reward_channels, single_gamma
    from longcot.rl.advantages import gae_advantages, group_advantages, per_channel_gae, reinforce_returns, whiten
    from longcot.rl.experience import action_logprobs, batched_logprobs, batched_values, build_rollout
    from longcot.rl.kl import approx_kl
    from longcot.rl.dynamic_sampling import extra_round_problems, group_keep, select_groups
    from longcot.rl.losses import masked_mean, pack_rollout_logprobs, policy_loss, tis_weights, value_loss
    from longcot.rl.plots import plot_rl_progress, progress_title
    from longcot.rl.returns import pack_channel_rewards, token_rewards
    from longcot.rl.scoring import score_responses
    from longcot.rl.value_head import Critic, rollout_values
    from longcot.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
    from longcot.training.attention import resolve_attn
    from longcot.training.distributed import (all_gather_objects, all_reduce_sum, broadcast_from_main, detect,
                                              init_distributed, local_device)
    from longcot.training.engine import Engine, EngineConfig
    from longcot.training.metrics import METRICS, MetricsLog, progress_bar

    run_dir = Path(run_dir)
    reward_cfg = check_settings(algorithm, rl, reward)
    channels = reward_channels(reward_cfg)
    summed = single_gamma(reward_cfg)  # one gamma: channels summed, then clipped (official reward_fn)
    gammas = [channels[0].gamma] if summed else [c.gamma for c in channels]
    per_channel = algorithm.value_heads == "per_channel"
    if reward_cfg.correctness == "model" and judge is None:
        raise ValueError(f"reward {reward_cfg.name!r} takes correctness from the model verifier; pass judge=<its Generator>")
    if rl.rollout_backend == "vllm" and vllm_factory is None:
        raise ValueError("rl.rollout_backend=vllm needs vllm_factory (builds the colocated vLLM generator)")
    final_dir = run_dir / FINAL / "actor"
    metrics = MetricsLog(run_dir / METRICS, tracker, enabled=detect().is_main)
    dist = init_distributed(shared_dir=run_dir)  # every node must see the run directory
    if broadcast_from_main(is_finished(run_dir)):  # rank 0 decides for the job
        recs = metrics.records()
        return RLResult(run_dir, final_dir, int(recs[-1]["step"]) if recs else 0, recs)
    device = local_device(rl.device, dist)
    attn = resolve_attn(rl.attn_implementation, device)
    torch.manual_seed(rl.seed)
    # Master weights in float32 (model.dtype is not used for training); bf16 compute from autocast
    # (torch backend) or DeepSpeed's bf16 mode. The frozen reference: see ref_forward below.
    if getattr(model, "dtype", None) not in (None, "auto", "float32"):
        log.info("model.dtype=%s: RL trains float32 master weights (compute precision: rl.precision=%s)",
                 model.dtype, rl.precision)
    actor_model, tokenizer = load_model_and_tokenizer(model, device=str(device), dtype="float32",
                                                      attn_implementation=attn)
    eos_id = int(tokenizer.eos_token_id)
    pad_id = int(tokenizer.pad_token_id)

    # Prompts longer than max_prompt_tokens are dropped up front (the official loader truncates them).
    prompts_all = [chat_prompt(p, system_prompt) for p in problems]
    ids_all = encode_prompts(tokenizer, prompts_all)
    keep = [i for i, ids in enumerate(ids_all) if len(ids) <= algorithm.max_prompt_tokens]
    if len(keep) < len(problems):
        log.warning("dropped %d of %d prompts longer than algorithm.max_prompt_tokens=%d",
                    len(problems) - len(keep), len(problems), algorithm.max_prompt_tokens)
    problems = [problems[i] for i in keep]
    prompt_of = {problems[j].id: (prompts_all[i], ids_all[i]) for j, i in enumerate(keep)}

    per_episode, total_steps = plan_steps(len(problems), algorithm, rl)
    n_local, tb_local, updates_per_epoch = _updates_per_step(algorithm, dist.world_size)
    optimizer_steps = total_steps * updates_per_epoch * algorithm.epochs

    def engine_cfg(lr: float) -> EngineConfig:
        return EngineConfig(
            learning_rate=lr, weight_decay=algorithm.weight_decay, adam_betas=tuple(algorithm.adam_betas),
            max_grad_norm=algorithm.max_grad_norm, total_steps=optimizer_steps,
            warmup_ratio=algorithm.warmup_ratio, min_lr_ratio=algorithm.min_lr_ratio, backend=rl.backend,
            zero_stage=rl.zero_stage, precision=rl.precision, gradient_checkpointing=rl.gradient_checkpointing,
            adam_offload=rl.adam_offload,
        )

    actor = Engine(actor_model, engine_cfg(algorithm.learning_rate), device=device, dist_env=dist)
    if actor.backend == "torch" and rl.backend == "auto" and dist.distributed:
        log.warning("rl.backend=auto resolved to torch DDP (DeepSpeed not importable or not on CUDA): "
                    "rl.zero_stage=%d is not used", rl.zero_stage)
    # The frozen reference computes like the actor's forward: DeepSpeed bf16 runs bf16 weights, so the
    # reference is loaded in bf16; the torch backend autocasts float32 weights, and so does the reference.
    ds_bf16 = actor.deepspeed_engine is not None and actor.precision == "bf16"
    ref_model, _ = load_model_and_tokenizer(model, device=str(device), dtype="bfloat16" if ds_bf16 else "float32",
                                            attn_implementation=attn)
    ref_model.requires_grad_(False)

    def ref_forward(**inputs: Any) -> Any:
        if actor.precision == "bf16" and not ds_bf16:
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                return ref_model(**inputs)
        return ref_model(**inputs)

    engines: dict[str, Engine] = {"actor": actor}
    critic: Optional[Engine] = None
    if algorithm.uses_critic:
        path = resolve_model_path(model)  # the actor's checkpoint, config overrides and attention
        critic_module = Critic.from_pretrained(path, head_seed=rl.seed, num_heads=len(channels) if per_channel else 1,
                                               config=load_config(model, path), attn_implementation=attn,
                                               trust_remote_code=bool(model.trust_remote_code))
        critic = Engine(critic_module.to(device), engine_cfg(float(algorithm.critic_learning_rate)), device=device,
                        dist_env=dist)
        engines["critic"] = critic

    start, resumed = 0, None
    ckpt = broadcast_from_main(latest_checkpoint(run_dir))  # every rank resumes from rank 0's choice
    if ckpt is not None:
        meta = load_checkpoint(ckpt, engines)
        start = resumed = int(meta["step"])
        metrics.truncate(start)
        log.info("resumed from %s (step %d)", ckpt, start)
    else:
        metrics.truncate(0)

    generator: Any
    if rl.rollout_backend == "vllm":
        # The engine starts from the (possibly resumed) actor's weights, exported in HF format.
        generator = vllm_factory(_export_actor(actor, tokenizer, run_dir))  # type: ignore[misc]
    else:
        # ZeRO-3 partitions the actor: every forward is a collective, so ranks step generation together
        zero3 = actor.deepspeed_engine is not None and rl.zero_stage == 3 and dist.distributed
        generator = HFGenerator(actor.module, tokenizer, batch_size=rl.generate_batch_size, synced_gpus=zero3)
    if algorithm.rollout_is:  # TIS: the engine returns its own log-prob of every sampled token
        if not hasattr(generator, "return_logprobs"):
            raise ValueError(f"algorithm.rollout_is: generation backend {type(generator).__name__} returns no log-probs")
        generator.return_logprobs = True

    params = SamplingParams(
        temperature=algorithm.temperature, top_p=algorithm.top_p, max_new_tokens=algorithm.max_new_tokens,
        n=algorithm.samples_per_prompt, seed=rl.seed,
    )
    group = algorithm.samples_per_prompt
    share = algorithm.rollout_batch_size // dist.world_size
    bar = progress_bar(total_steps, start, desc=f"rl/{algorithm.name}", disable=not (progress and dist.is_main))
    for step in range(start, total_steps):
        t_step = time.perf_counter()
        # this rank's block of the step's prompts (whole groups)
        batch = step_problems(problems, step, per_episode, algorithm.rollout_batch_size, rl.seed)
        batch = batch[dist.rank * share : (dist.rank + 1) * share]

        # 1.-2. rollout and reward; with dynamic sampling (rl/dynamic_sampling.py) more rounds of
        # prompts until every group of the step has a spread of rewards (the same rounds on every rank)
        time_generate = time_reward = 0.0
        actor.module.eval()
        rounds: list[tuple[list[Any], list[Any], Any]] = []  # (completions, their problems, scored) per round
        keep_rounds: list[list[bool]] = []
        while True:
            r = len(rounds)
            round_batch, tag = batch, f"{step}"
            if r:
                round_batch = extra_round_problems(problems, step, r, algorithm.rollout_batch_size, rl.seed)
                round_batch, tag = round_batch[dist.rank * share : (dist.rank + 1) * share], f"{step}:round{r}"
            t0 = time.perf_counter()
            seeds = [prompt_seed(rl.seed, f"{tag}:{p.id}") for p in round_batch]
            outs = generator.generate([prompt_of[p.id][0] for p in round_batch], params, seeds=seeds, progress=False)
            comps = [c for row in outs for c in row]
            rows_problem = [p for p in round_batch for _ in range(group)]
            if len(comps) != len(rows_problem):
                raise RuntimeError(f"generator returned {len(comps)} completions for {len(rows_problem)} requests")
            time_generate += time.perf_counter() - t0
            t0 = time.perf_counter()
            # rewards from the tokens the experience sees (last token EOS first: rl/scoring.py)
            scored = score_responses(
                reward_cfg, comps, lambda texts, rp=rows_problem: _correctness(reward_cfg, rp, texts, judge),
                eos_id=eos_id, max_len=algorithm.max_new_tokens, truncated_eos=algorithm.truncated_eos,
                decode=lambda ids: tokenizer.decode(ids, skip_special_tokens=True))
            time_reward += time.perf_counter() - t0
            rounds.append((comps, rows_problem, scored))
            if algorithm.dynamic_sampling is None:
                break
            value = ([float(x) for x in scored.correct] if algorithm.dynamic_sampling == "accuracy" else
                     [sum(float(scored.channels[c.name][i].sum()) for c in channels) for i in range(len(comps))])
            keep_rounds.append(group_keep(value, group))
            (short,) = all_reduce_sum([float(max(0, share - sum(sum(k) for k in keep_rounds)))])
            if short == 0 or len(rounds) >= algorithm.dynamic_sampling_max_rounds:
                break
        generated = [c for rd in rounds for c in rd[0]]
        ds_filled = 0.0
        if algorithm.dynamic_sampling is None:
            comps, rows_problem, scored = rounds[0]
            correct, chan = scored.correct, scored.channels
        else:
            chosen, filled = select_groups(keep_rounds, share)
            (ds_filled,) = all_reduce_sum([float(filled)])
            if ds_filled and dist.is_main:
                log.warning("step %d: dynamic sampling kept too few groups in algorithm.dynamic_sampling_max_rounds=%d "
                            "rounds; %d zero-advantage groups fill the step", step + 1,
                            algorithm.dynamic_sampling_max_rounds, int(ds_filled))
            rows = [(rd, g * group + j) for rd, g in chosen for j in range(group)]
            comps = [rounds[rd][0][i] for rd, i in rows]
            rows_problem = [rounds[rd][1][i] for rd, i in rows]
            correct = [rounds[rd][2].correct[i] for rd, i in rows]
            chan = {c.name: [rounds[rd][2].channels[c.name][i] for rd, i in rows] for c in channels}
        texts = [c.text for c in comps]  # as sampled (reflection keywords)

        # 3. experience
        t0 = time.perf_counter()
        ro = build_rollout([prompt_of[p.id][1] for p in rows_problem], [c.token_ids for c in comps],
                           [c.truncated for c in comps], eos_id=eos_id, pad_id=pad_id,
                           truncated_eos=algorithm.truncated_eos).to(device)
        mask = ro.action_mask
        # the tokens the policy loss sees: overlong filtering takes the truncated responses out of it
        loss_mask = mask
        if algorithm.overlong_filter:
            loss_mask = mask * torch.tensor([0.0 if c.truncated else 1.0 for c in comps], device=device).unsqueeze(-1)
        chunk = rl.logits_chunk_tokens
        # through the engines: the same precision (autocast / DeepSpeed bf16) as the update's forward
        old_logp = batched_logprobs(actor.module, ro, rl.forward_batch_size, chunk_tokens=chunk, forward=actor)
        ref_logp = batched_logprobs(ref_model, ro, rl.forward_batch_size, chunk_tokens=chunk, forward=ref_forward)
        values = batched_values(critic, ro, rl.forward_batch_size) if critic is not None else None
        kl = approx_kl(old_logp, ref_logp, mask, algorithm.kl_estimator)
        chan_t = pack_channel_rewards(chan, channels, ro.lengths, ro.width).to(device)
        tok_r = token_rewards(chan_t, mask, kl=kl if algorithm.kl_in == "reward" else None,
                              kl_coef=algorithm.kl_coef, clip=algorithm.reward_clip, sum_channels=summed)
        returns: Optional[torch.Tensor] = None
        if algorithm.advantage == "gae" and per_channel:  # values (B, T, C): one head per channel
            adv, returns = per_channel_gae(values, tok_r, mask, gammas, algorithm.lam)
        elif algorithm.advantage == "gae":
            adv, returns = gae_advantages(values, tok_r, mask, gammas, algorithm.lam)
        else:
            ret = reinforce_returns(tok_r, mask, gammas)
            if algorithm.advantage == "reinforce":
                adv = ret
            else:
                adv = group_advantages(ret, mask, group, std_normalize=algorithm.advantage == "group",
                                       eps=algorithm.group_eps)
        if algorithm.whiten_advantages:
            adv = whiten(adv, mask)
        is_w: Optional[torch.Tensor] = None
        if algorithm.rollout_is:  # TIS: the rollout engine's own log-probs vs the trainer's
            rollout_logp = pack_rollout_logprobs([c.logprobs for c in comps], [tuple(c.token_ids) for c in comps],
                                                 ro.response_ids, old_logp)
            is_w = tis_weights(old_logp, rollout_logp, algorithm.rollout_is_cap)
        time_experience = time.perf_counter() - t0

        # 4. update: epochs x optimizer steps of train_batch_size responses (tb_local on this rank)
        t0 = time.perf_counter()
        stats: dict[str, list[float]] = {k: [] for k in ("policy_loss", "kl_loss", "value_loss", "actor_grad_norm",
                                                          "critic_grad_norm")}
        # token means over every trained token (independent of how responses fall into micro-batches)
        token_sums: dict[str, list[float]] = {"clip_frac": [0.0, 0.0], "entropy": [0.0, 0.0]}
        actor.module.train()
        if critic is not None:
            critic.module.train()
        micro = algorithm.micro_train_batch_size
        tb = algorithm.train_batch_size
        token_level, step_tokens = algorithm.loss_aggregation == "token_mean", 0.0
        for epoch in range(algorithm.epochs):
            g = torch.Generator().manual_seed(_seed_of(rl.seed, "shuffle", step, epoch, *([dist.rank] if dist.rank else [])))
            order = torch.randperm(n_local, generator=g)
            for u in range(updates_per_epoch):
                idx_batch = order[u * tb_local : (u + 1) * tb_local]
                chunks = [idx_batch[s : s + micro] for s in range(0, tb_local, micro)]
                if token_level:  # DAPO's token-level loss: over every loss token of the optimizer step, all ranks
                    (step_tokens,) = all_reduce_sum([float(loss_mask[idx_batch].sum())])
                for k, idx in enumerate(chunks):
                    sub = ro.rows(idx)
                    w = sub.width
                    m = loss_mask[idx, :w]
                    # this micro-batch's share of the global optimizer step (x world size: ranks are averaged)
                    scale = len(idx) / tb * actor.loss_scale()
                    with actor.micro_batch(last=k == len(chunks) - 1):
                        logp, ent = action_logprobs(actor.module, sub, with_entropy=True, forward=actor,
                                                    chunk_tokens=chunk)
                        loss, clip_frac = policy_loss(
                            logp, old_logp[idx, :w], adv[idx, :w], m, algorithm.eps_low, clip_high=algorithm.eps_high,
                            aggregation=algorithm.loss_aggregation, ratio_level=algorithm.ratio_level,
                            norm=step_tokens * len(idx) / tb if token_level else algorithm.max_new_tokens,
                            is_weights=None if is_w is None else is_w[idx, :w],
                        )
                        stats["policy_loss"].append(float(loss.detach()))
                        if algorithm.kl_in == "loss" and algorithm.kl_coef > 0:
                            kl_now = approx_kl(logp, ref_logp[idx, :w], m, algorithm.kl_estimator)
                            kl_loss = masked_mean(kl_now, m, dim=-1).mean()
                            loss = loss + algorithm.kl_coef * kl_loss
                            stats["kl_loss"].append(float(kl_loss.detach()))
                        ent_mean = masked_mean(ent, m)
                        if algorithm.entropy_coef:
                            loss = loss - algorithm.entropy_coef * ent_mean
                        tokens = float(m.sum())
                        for key, v in (("clip_frac", clip_frac), ("entropy", ent_mean)):
                            token_sums[key][0] += float(v.detach()) * tokens
                            token_sums[key][1] += tokens
                        del ent, ent_mean  # only logged unless entropy_coef: free its graph before backward
                        actor.backward(loss * scale)
                stats["actor_grad_norm"].append(actor.step())
                if critic is not None:
                    for k, idx in enumerate(chunks):
                        sub = ro.rows(idx)
                        w = sub.width
                        with critic.micro_batch(last=k == len(chunks) - 1):
                            v_new = rollout_values(critic, sub)
                            vloss = value_loss(v_new, values[idx, :w], returns[idx, :w], sub.action_mask,
                                               algorithm.value_clip)
                            critic.backward(vloss * (len(idx) / tb * critic.loss_scale()))
                        stats["value_loss"].append(float(vloss.detach()))
                    stats["critic_grad_norm"].append(critic.step())
        time_update = time.perf_counter() - t0

        weight_push = 0.0
        if rl.rollout_backend == "vllm":
            from longcot.generation.base import reload_weights

            t0 = time.perf_counter()
            reload_weights(generator, _export_actor(actor, tokenizer, run_dir))
            weight_push = time.perf_counter() - t0

        # metrics: per-response values gathered from every rank, token means reduced globally
        record: dict[str, Any] = {"step": step + 1, "episode": step // per_episode}
        per_response = all_gather_objects({
            "length": [c.num_tokens for c in comps], "truncated": [bool(c.truncated) for c in comps],
            "correct": [bool(x) for x in correct],
            "channels": {c.name: [float(r.sum()) for r in chan[c.name]] for c in channels},
            "reflection": {kw: v["per_response"] * len(texts) for kw, v in keyword_frequency(texts).items()},
            "repetition": {k: v * len(comps) for k, v in
                           repetition_stats([c.token_ids for c in comps], rl.repetition_metric_ngram).items()},
        })
        lengths = [x for r in per_response for x in r["length"]]
        n_all = len(lengths)
        for c in channels:
            record[f"reward/{c.name}"] = sum(x for r in per_response for x in r["channels"][c.name]) / n_all
        record["reward"] = float(sum(record[f"reward/{c.name}"] for c in channels))
        record["accuracy"] = sum(x for r in per_response for x in r["correct"]) / n_all
        record["response_length_mean"] = sum(lengths) / n_all
        record["response_length_max"] = max(lengths)
        record["truncation_ratio"] = sum(x for r in per_response for x in r["truncated"]) / n_all
        # §4.1's premise per prompt group (each rank holds whole groups): are the right samples the longer ones?
        gap = length_gap(list(zip(r["correct"][i : i + group], r["length"][i : i + group]))
                         for r in per_response for i in range(0, len(r["length"]), group))
        record["length_gap/mixed_groups"] = gap["mixed"] if gap else 0.0
        if gap is not None:  # no mixed group: no gap to log (not 0)
            record["length_gap/right_minus_wrong"] = gap["right_minus_wrong"]
            record["length_gap/share_right_longer"] = gap["share_right_longer"]
        record["kl"] = _global_mean(approx_kl(old_logp, ref_logp, mask, "k1"), mask)
        # what was generated vs trained (dynamic sampling generates more than it trains)
        n_gen, gen_correct, gen_tokens = all_reduce_sum([float(len(generated)), float(sum(
            bool(x) for rd in rounds for x in rd[2].correct)), float(sum(c.num_tokens for c in generated))])
        record["responses_generated"] = n_gen
        record["responses_trained"] = float(n_all)
        if algorithm.dynamic_sampling is not None:
            record["sampling_rounds"] = len(rounds)
            record["ds_filled_groups"] = ds_filled
            record["generated/accuracy"] = gen_correct / max(n_gen, 1.0)
            record["generated/response_length_mean"] = gen_tokens / max(n_gen, 1.0)
        if is_w is not None:
            record["rollout_is_mean"] = _global_mean(is_w, mask)
            record["rollout_is_capped_frac"] = _global_mean((is_w >= algorithm.rollout_is_cap).float(), mask)
            record["rollout_kl"] = _global_mean(rollout_logp - old_logp, mask)  # k1 of rollout vs trainer (OpenRLHF vllm_kl)
        record["advantage_mean"] = _global_mean(adv, mask)
        for k, vals in stats.items():
            total, count = all_reduce_sum([sum(vals), float(len(vals))])
            if count:
                record[k] = total / count
        for k, (total, count) in token_sums.items():
            total, count = all_reduce_sum([total, count])
            record[k] = total / max(count, 1.0)
        if returns is not None:
            # summed over the channels' heads (per_channel): the value of the total return
            record["value_mean"] = _global_mean(values.sum(-1) if values.dim() == 3 else values, mask)
            record["return_mean"] = _global_mean(returns.sum(-1) if returns.dim() == 3 else returns, mask)
        for kw in per_response[0]["reflection"]:
            record[f"reflection/{kw}"] = sum(r["reflection"][kw] for r in per_response) / n_all
        for k in per_response[0]["repetition"]:  # §4.5, Fig. 10; N in the key: a reused run keeps its own N
            record[f"repetition/{k}_{rl.repetition_metric_ngram}gram"] = sum(r["repetition"][k] for r in per_response) / n_all
        record["lr_actor"] = actor.lr
        record["time_generate_s"] = time_generate
        record["time_reward_s"] = time_reward
        record["time_experience_s"] = time_experience
        record["time_update_s"] = time_update
        record["weight_push_s"] = weight_push
        record["step_time_s"] = time.perf_counter() - t_step
        metrics.log(record)
        bar.set_postfix(reward=f"{record['reward']:.3f}", acc=f"{record['accuracy']:.2f}",
                        len=f"{record['response_length_mean']:.0f}")
        bar.update(1)

        if (step + 1) % rl.save_every == 0 or step + 1 == total_steps:
            save_checkpoint(run_dir, engines, step=step + 1, keep_last=rl.keep_checkpoints,
                            state={"episode": (step + 1) // per_episode, "offset": (step + 1) % per_episode,
                                   "algorithm": algorithm.name})
            if dist.is_main:
                plot_rl_progress(metrics.records(), run_dir / PLOT,
                                 title=progress_title(algorithm.name, reward_cfg.name, model, problems))
    bar.close()
    if hasattr(generator, "close"):  # a colocated vLLM engine: stop it now, not at garbage collection
        generator.close()

    save_checkpoint(run_dir, {"actor": actor}, step=total_steps, tokenizers={"actor": tokenizer}, tag=FINAL,
                    training_state=False)
    records = metrics.records()
    if dist.is_main:
        plot_rl_progress(records, run_dir / PLOT, title=progress_title(algorithm.name, reward_cfg.name, model, problems))
    return RLResult(run_dir, final_dir, total_steps, records, resumed)


ROLLOUT_WEIGHTS = "rollout_weights"


def is_finished(run_dir: Path) -> bool:
    """Whether :func:`train` finished in ``run_dir`` (its final actor checkpoint is complete)."""
    from longcot.training.checkpoint import STATE

    return (Path(run_dir) / FINAL / STATE).is_file()


def _export_actor(actor: Any, tokenizer: Any, run_dir: Path) -> Path:
    """The actor's current weights in HF format for the rollout engine: written to a temporary
    directory, then renamed onto ``<run_dir>/rollout_weights`` (never read half-written)."""
    import shutil

    from longcot.training.checkpoint import export_hf
    from longcot.training.distributed import barrier, detect

    final = run_dir / ROLLOUT_WEIGHTS
    tmp = run_dir / f".{ROLLOUT_WEIGHTS}.tmp"
    main = detect().is_main
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
    export_hf(actor, tmp, tokenizer)  # a collective under ZeRO-3; rank 0 writes
    if main:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    barrier()
    return final


def _global_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean of ``x`` over the unmasked tokens of every rank's rollout."""
    from longcot.training.distributed import all_reduce_sum

    total, count = all_reduce_sum([float((x.float() * mask).sum()), float(mask.sum())])
    return total / max(count, 1.0)


def _correctness(reward_cfg: Any, problems: Sequence["Problem"], texts: Sequence[str], judge: Any) -> list[bool]:
    """Rule grader by problem kind (or the official §4 hendrycks grader), or the model verifier (one
    batched judge call)."""
    if reward_cfg.correctness == "rule" and reward_cfg.rule_grader == "hendrycks":
        from longcot.grading.hendrycks import hendrycks_equal

        return [hendrycks_equal(t, p.answer) for p, t in zip(problems, texts)]
    if reward_cfg.correctness == "rule":
        from longcot.grading.by_kind import grade_batch

        return grade_batch(problems, texts)
    from longcot.rewards.correctness import score_correctness

    res = score_correctness(reward_cfg, [p.answer for p in problems], texts, judge=judge)
    return res.correct


__all__ = ["RLResult", "check_settings", "train", "is_finished", "plan_steps", "step_problems", "FINAL", "PLOT", "TIMING_KEYS"]
