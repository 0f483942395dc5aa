"""The RL stage (paper §4-§5): PPO / GRPO / Dr. GRPO / REINFORCE++ with the paper's rewards (the
recipe: :mod:`longcot.rl.recipe`).

    longcot stage=rl model=llama3.1-8b rl.from_sft=true sft.teacher=qwq-32b-preview sft.subset=n256 \\
        algorithm=ppo reward=cosine_reppen scale=full
    longcot stage=rl model=qwen2.5-math-7b algorithm=ppo reward=cosine_reppen scale=full   # RL from the base model

``rl.from_sft=true``: the actor (and the critic body, and the frozen reference) start from the SFT
run this config plans (``sft.*``), whose identity is part of the RL identity; otherwise from
``model``. The identity also holds the algorithm, the reward channels, the prompt data (its
content), the verifier (for ``reward.correctness=model``) and the rl settings that change results.
``scale=smoke`` caps prompts (``data.limit``), response length (``algorithm.max_new_tokens``) and
rollout steps (``rl.max_steps``), each named in a warning and in the summary.

Outputs in ``<output_root>/rl/<model>/<algorithm>-<reward>-<hash>/``: ``metrics.jsonl`` (one record per
step), ``checkpoints/`` (a killed run resumes from the latest), ``rl_progress.png``, ``final/actor/``
(HF format, for eval), ``summary.json``, ``config.yaml``, ``DONE``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from longcot import runs
from longcot.config.scale import Cap, capped, capped_rollout, caps_note, caps_record
from longcot.stages.base import (FINAL_MODEL, Artifacts, Plan, finish_training_run,
                                 identity_device, model_at_run, model_identity, print_table, running, tracking,
                                 upstream_identity, warn_notes)
from longcot.training.distributed import detect

log = logging.getLogger(__name__)
NAME = "rl"
SUMMARY = "summary.json"
# rl.* keys that do not change the trained weights (bookkeeping, batching of generation: outputs are
# batch-invariant, see stages/eval.py).
# The engine keys (backend, zero_stage, adam_offload, gradient_checkpointing, attn_implementation) do
# not change the math but do change floating-point results (bf16 vs fp32, kernels, reduction
# order), so they stay in the identity; ``device`` is resolved to its type (stages.base.identity_device).
NOT_IDENTITY = ("from_sft", "eval_benchmarks", "save_every", "keep_checkpoints", "generate_batch_size",
                "prompts", "repetition_metric_ngram")  # rl.prompts: in the identity's data (the distill run it reads), when set


def _typed(node: DictConfig, schema: type) -> Any:
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), node))


def sft_upstream(cfg: DictConfig) -> Plan:
    """The SFT run this RL starts from (``rl.from_sft``): this config's ``sft.*`` and ``model``."""
    from longcot.stages import sft

    scfg = cfg.copy()
    scfg.stage.name = "sft"
    return sft.plan(scfg)


def plan(cfg: DictConfig, upstream: Sequence[Plan] = ()) -> Plan:
    """Identity and directory of an RL run; the scale caps prompts, response length and steps."""
    from longcot.data.loading import data_identity
    from longcot.rl.config import AlgorithmConfig, RLConfig, length_control_identity
    from longcot.rl.recipe import check_settings, length_control_notes

    algorithm = _typed(cfg.algorithm, AlgorithmConfig)
    rl = _typed(cfg.rl, RLConfig)
    caps: list[Cap] = []
    # capped first: the checks relate settings to the generation limit the run will have
    algorithm.max_new_tokens = capped("algorithm.max_new_tokens", algorithm.max_new_tokens, cfg.scale.max_new_tokens, caps)
    rl.max_steps = capped("rl.max_steps", rl.max_steps, cfg.scale.max_train_steps, caps)
    data = cfg.data.copy()
    data.limit = capped("data.limit", data.limit, cfg.scale.max_problems, caps)
    prompts = min(data.limit or data.toy_size, data.toy_size) if data.kind == "toy" else data.limit
    if cfg.scale.max_problems is not None:  # a capped scale: one RL step must fit the capped prompts
        capped_rollout(algorithm, prompts, cfg.scale.max_samples, caps)
    reward = check_settings(algorithm, rl, cfg.reward)  # validated as the run will have it (after the caps)
    upstream = tuple(upstream)
    if rl.from_sft and not any(p.stage == "sft" for p in upstream):
        upstream = (*upstream, sft_upstream(cfg))
    prompt_run = None
    if rl.prompts.enabled:  # Table 3: silver answers of a distill run as the prompt set
        from longcot.stages import distill

        pr = rl.prompts
        source = cfg.copy()
        source.data.limit = None  # data.limit caps the RL prompts, not the distill run's
        prompt_run = distill.plan_for(source, teacher=pr.teacher, teacher_generation=pr.teacher_generation, data=pr.data,
                                      overrides=pr.overrides, where="rl.prompts")
        if prompt_run.cfg.distill.mode != "silver":
            raise ValueError(f"rl.prompts: the distill run it names has distill.mode={prompt_run.cfg.distill.mode}; "
                             "silver answers need distill.mode=silver (add it to rl.prompts.overrides)")
        upstream = (*upstream, prompt_run)
    if data.kind == "toy" and not rl.prompts.enabled:  # the prompt count is known before reading: too few prompts fail here
        from longcot.rl.recipe import plan_steps

        plan_steps(prompts, algorithm, rl)
    effective_rl = {k: v for k, v in vars(rl).items() if k not in NOT_IDENTITY}
    effective_rl["device"] = identity_device(cfg, rl.device)
    if rl.backend == "torch":  # no DeepSpeed: the ZeRO stage changes nothing (the offload is refused)
        effective_rl.pop("zero_stage")
    identity: dict[str, Any] = {
        "model": model_identity(cfg.model, upstream),
        "data": (data_identity(data, "data") if prompt_run is None else
                 {"distill": prompt_run.run_id, "filter": rl.prompts.filter, "n": rl.prompts.n, "limit": data.limit}),
        "algorithm": length_control_identity(algorithm),
        "reward": reward_identity(cfg.reward),
        "rl": effective_rl,
        "system_prompt": cfg.benchmark.system_prompt,
        "upstream": upstream_identity(upstream),
    }
    if reward.correctness == "model":
        from longcot.config.loading import load_group_option
        from longcot.models.config import ModelConfig
        from longcot.models.fingerprint import model_identity as content_identity

        identity["verifier"] = content_identity(load_group_option("model", reward.verifier.model, ModelConfig))
    note = caps_note(cfg.scale, caps, real=cfg.model.path != "tiny")
    notes = (note,) if note else ()
    if rl.rollout_backend == "vllm" and identity_device(cfg, rl.device) == "cuda":
        notes += (f"the colocated vLLM engine takes rl.vllm_gpu_memory_utilization={rl.vllm_gpu_memory_utilization} "
                  f"of GPU memory (generation.gpu_memory_utilization={cfg.generation.gpu_memory_utilization} "
                  "applies to standalone engines only)",)
    notes += unused_settings_notes(algorithm)
    notes += length_control_notes(algorithm, rl)
    run_dir = (Path(cfg.output_root) / NAME / cfg.model.name
               / f"{algorithm.name}-{cfg.reward.name}-{runs.config_hash(identity)}")
    return Plan(NAME, cfg, identity, run_dir, upstream, notes,
                detail={"algorithm": algorithm, "rl": rl, "data": data, "caps": caps})


def reward_identity(reward: DictConfig) -> dict[str, Any]:
    """The reward config for a run's identity; no ``overlong`` key when it is off (runs from before the
    overlong channel keep their identities)."""
    out = OmegaConf.to_container(reward, resolve=True)
    if out.get("overlong", "absent") is None:
        out.pop("overlong")
    if (out.get("classic") or {}).get("no_answer", "absent") is None:  # likewise for classic.no_answer
        out["classic"].pop("no_answer")
    if out.get("rule_grader") == "math_verify":  # and the default rule grader
        out.pop("rule_grader")
    return out


def unused_settings_notes(algorithm: Any) -> tuple[str, ...]:
    """Critic settings an estimator without a critic does not use, when set away from their defaults."""
    from longcot.rl.config import AlgorithmConfig

    if algorithm.uses_critic:
        return ()
    default = AlgorithmConfig(name=algorithm.name)
    unused = [f"algorithm.{k}={getattr(algorithm, k)}" for k in ("lam", "critic_learning_rate", "value_clip")
              if getattr(algorithm, k) not in (None, getattr(default, k))]
    if not unused:
        return ()
    return (f"{', '.join(unused)}: not used by advantage={algorithm.advantage} (no critic; only PPO's gae uses them)",)


def _judge(cfg: DictConfig) -> Any:
    """The model verifier's generator (``reward.correctness=model``), else None."""
    if cfg.reward.correctness != "model":
        return None
    from longcot.config.loading import load_group_option
    from longcot.models.config import ModelConfig
    from longcot.generation import build_generator

    return build_generator(load_group_option("model", cfg.reward.verifier.model, ModelConfig), cfg.generation)


def run(p: Plan) -> Artifacts:
    """Train with RL (resuming from the latest checkpoint)."""
    from longcot.rl.recipe import train

    cfg = p.cfg
    if p.done and (p.run_dir / SUMMARY).is_file() and not cfg.force:
        log.info("finished RL run found at %s; skipping (force=true to retrain)", p.run_dir)
        return artifacts(p.run_dir)
    for u in p.upstream:
        if u.stage == "sft" and not u.done:
            raise FileNotFoundError(f"the SFT run this RL starts from is not finished ({u.run_dir}); run it first: "
                                    "longcot stage=sft with this run's model, data, distill.* and sft.* settings")
    warn_notes(p)
    with running(p) as run_dir:
        if cfg.force and detect().is_main:  # rank 0 (holding the lock) clears; the others have not started
            log.info("force=true: discarding every earlier output of %s", run_dir)
            for name in ("checkpoints", "final", "rollout_weights"):
                shutil.rmtree(run_dir / name, ignore_errors=True)
            for name in ("metrics.jsonl", SUMMARY, "rl_progress.png", runs.DONE):
                (run_dir / name).unlink(missing_ok=True)
        model = model_at_run(cfg.model, p.upstream)
        problems = _prompts(p)
        vllm_factory = None
        if p.detail["rl"].rollout_backend == "vllm":
            from longcot.generation import build_generator

            def vllm_factory(weights_dir: Path) -> Any:  # the colocated engine, loaded from the actor's weights
                m = model.copy()
                # the exported actor: its config already holds the RoPE scaling the actor loaded with
                m.path, m.tokenizer, m.revision, m.rope_theta_scale = str(weights_dir), None, None, 1.0
                gen = cfg.generation.copy()
                gen.backend = "vllm"
                gen.gpu_memory_utilization = p.detail["rl"].vllm_gpu_memory_utilization  # named in a plan note
                return build_generator(m, gen)
        log.info("RL (%s, reward %s) of %s on %d prompts -> %s", cfg.algorithm.name, cfg.reward.name, cfg.model.name,
                 len(problems), run_dir)
        with tracking(cfg, f"rl-{cfg.model.name}-{cfg.algorithm.name}-{cfg.reward.name}", run_dir, p.identity) as tracker:
            result = train(run_dir, model=model, problems=problems, algorithm=p.detail["algorithm"], reward=cfg.reward,
                           rl=p.detail["rl"], tracker=tracker, judge=_judge(cfg), system_prompt=cfg.benchmark.system_prompt,
                           vllm_factory=vllm_factory)
        records = result.records
        last = records[-1] if records else {}
        finish_training_run(run_dir, SUMMARY, {
            "model": cfg.model.name, "algorithm": cfg.algorithm.name, "reward": cfg.reward.name,
            "steps": result.steps, "prompts": len(problems),
            # responses sampled vs trained on over the run (dynamic sampling samples more than it trains)
            "responses_generated": sum(r.get("responses_generated", 0) for r in records),
            "responses_trained": sum(r.get("responses_trained", 0) for r in records),
            "final": {k: v for k, v in last.items() if isinstance(v, (int, float))},
            "first": {k: v for k, v in (records[0] if records else {}).items() if isinstance(v, (int, float))},
            "scale": cfg.scale.name, "scale_caps": caps_record(p.detail["caps"]),
        })
    return artifacts(p.run_dir)


def _prompts(p: Plan) -> list[Any]:
    """The RL prompt set: the ``data`` group, or the silver answers of the ``rl.prompts`` distill run."""
    from longcot.data import load_prompts

    rl = p.detail["rl"]
    if not rl.prompts.enabled:
        return load_prompts(p.detail["data"])
    from longcot.distill.shards import read_rows
    from longcot.rl.prompts import select_prompts
    from longcot.stages import distill

    dist = next(u for u in p.upstream if u.stage == "distill")
    if not dist.done:
        raise FileNotFoundError(f"rl.prompts: the silver distill run is not finished ({dist.run_dir}); run it first: "
                                f"longcot stage=distill model={rl.prompts.teacher} with rl.prompts' data and overrides")
    problems, _ = distill.load_problems(dist)
    rows = (r for path in distill.candidate_files(dist) for r in read_rows(path))
    out = select_prompts(problems, rows, filter=rl.prompts.filter, n=rl.prompts.n, limit=p.detail["data"].limit)
    if not out:
        raise ValueError(f"rl.prompts: no prompt of {dist.run_dir} passes filter={rl.prompts.filter}")
    log.info("RL prompts: %d silver-answered prompts of %s (filter=%s)", len(out), dist.run_dir, rl.prompts.filter)
    return out


def artifacts(run_dir: Path) -> Artifacts:
    """A finished RL run: its summary, the final actor (``files["model"]``), metrics and plot."""
    run_dir = Path(run_dir)
    if not (runs.is_done(run_dir) and (run_dir / SUMMARY).is_file()):
        raise FileNotFoundError(f"{run_dir}: not a finished RL run (no DONE / summary.json)")
    files = {"model": run_dir / FINAL_MODEL[NAME], "metrics": run_dir / "metrics.jsonl", "plot": run_dir / "rl_progress.png"}
    return Artifacts(NAME, run_dir, runs.read_json(run_dir / SUMMARY), files)


def report(plans: Sequence[Plan], results: Sequence[Artifacts]) -> None:
    """Reward, accuracy and length at the first and last step of each RL run."""
    def fmt(d: dict[str, Any], key: str, pct: bool = False) -> str:
        v = d.get(key)
        return "-" if v is None else (f"{100 * v:.1f}%" if pct else f"{v:.3g}")

    rows = [(s["model"], s["algorithm"], s["reward"], s["steps"],
             f"{fmt(s['first'], 'reward')} -> {fmt(s['final'], 'reward')}",
             f"{fmt(s['first'], 'accuracy', True)} -> {fmt(s['final'], 'accuracy', True)}",
             f"{fmt(s['first'], 'response_length_mean')} -> {fmt(s['final'], 'response_length_mean')}")
            for s in (a.summary for a in results)]
    caps = sorted({str(c) for p in plans for c in p.detail["caps"]})
    print_table(f"longcot rl (scale={plans[0].cfg.scale.name}{'; capped ' + ', '.join(caps) if caps else ''})",
                ("model", "algorithm", "reward", "steps", "reward", "accuracy", "mean length"), rows,
                [f"actor: {a.files['model']}" for a in results])
