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
from longcot.config.scale import Cap, capped, caps_note, caps_record
from longcot.stages.base import (FINAL_MODEL, Artifacts, Plan, evaluate_after_training, finish_training_run,
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
NOT_IDENTITY = ("from_sft", "eval_benchmarks", "save_every", "keep_checkpoints", "generate_batch_size")


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
    from longcot.rl.config import AlgorithmConfig, RLConfig
    from longcot.rl.recipe import check_settings

    algorithm = _typed(cfg.algorithm, AlgorithmConfig)
    rl = _typed(cfg.rl, RLConfig)
    reward = check_settings(algorithm, rl, cfg.reward)
    upstream = tuple(upstream)
    if rl.from_sft and not any(p.stage == "sft" for p in upstream):
        upstream = (*upstream, sft_upstream(cfg))
    caps: list[Cap] = []
    algorithm.max_new_tokens = capped("algorithm.max_new_tokens", algorithm.max_new_tokens, cfg.scale.max_new_tokens, caps)
    rl.max_steps = capped("rl.max_steps", rl.max_steps, cfg.scale.max_train_steps, caps)
    data = cfg.data.copy()
    data.limit = capped("data.limit", data.limit, cfg.scale.max_problems, caps)
    effective_rl = {k: v for k, v in vars(rl).items() if k not in NOT_IDENTITY}
    effective_rl["device"] = identity_device(cfg, rl.device)
    if rl.backend == "torch":  # no DeepSpeed: the ZeRO stage changes nothing (the offload is refused)
        effective_rl.pop("zero_stage")
    identity: dict[str, Any] = {
        "model": model_identity(cfg.model, upstream),
        "data": data_identity(data, "data"),
        "algorithm": dict(vars(algorithm)),
        "reward": OmegaConf.to_container(cfg.reward, resolve=True),
        "rl": effective_rl,
        "system_prompt": cfg.benchmark.system_prompt,
        "upstream": upstream_identity(upstream),
    }
    if reward.correctness == "model":
        from longcot.config.loading import load_group_option
        from longcot.config.schema import ModelConfig
        from longcot.models.fingerprint import model_identity as content_identity

        identity["verifier"] = content_identity(load_group_option("model", reward.verifier.model, ModelConfig))
    note = caps_note(cfg.scale, caps, real=cfg.model.path != "tiny")
    notes = (note,) if note else ()
    if rl.rollout_backend == "vllm" and identity_device(cfg, rl.device) == "cuda":
        notes += (f"the colocated vLLM engine takes rl.vllm_gpu_memory_utilization={rl.vllm_gpu_memory_utilization} "
                  f"of GPU memory (generation.gpu_memory_utilization={cfg.generation.gpu_memory_utilization} "
                  "applies to standalone engines only)",)
    notes += unused_settings_notes(algorithm)
    run_dir = (Path(cfg.output_root) / NAME / cfg.model.name
               / f"{algorithm.name}-{cfg.reward.name}-{runs.config_hash(identity)}")
    return Plan(NAME, cfg, identity, run_dir, upstream, notes,
                detail={"algorithm": algorithm, "rl": rl, "data": data, "caps": caps})


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
    from longcot.config.schema import ModelConfig
    from longcot.generation import build_generator

    return build_generator(load_group_option("model", cfg.reward.verifier.model, ModelConfig), cfg.generation)


def run(p: Plan) -> Artifacts:
    """Train with RL (resuming from the latest checkpoint), then evaluate the final actor if asked."""
    from longcot.data import load_prompts
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
        problems = load_prompts(p.detail["data"])
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
            "final": {k: v for k, v in last.items() if isinstance(v, (int, float))},
            "first": {k: v for k, v in (records[0] if records else {}).items() if isinstance(v, (int, float))},
            "scale": cfg.scale.name, "scale_caps": caps_record(p.detail["caps"]),
        })
    arts = artifacts(p.run_dir)
    evaluation = evaluate_after_training(p, cfg.rl.eval_benchmarks)
    if evaluation is not None:
        arts.summary["eval"] = evaluation
    return arts


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
