"""The SFT stage (paper §3): fine-tune ``model`` on long- or short-CoT data (the recipe:
:mod:`longcot.sft.recipe`).

    longcot stage=sft model=llama3.1-8b sft.teacher=qwq-32b-preview sft.subset=n256/budget-3.5B scale=full
    longcot stage=sft sft.source=dataset sft.dataset=/data/my_cot.jsonl      # a user's own data
    longcot stage=sft +experiment=demo ...                                    # the CPU demo

``sft.source=distill`` trains on a distill output named by config, not by path: the distill run that
this config plans with ``model=<sft.teacher>`` (the same ``data`` and ``distill.*``), and its
``sft.subset`` (``n<N>`` or ``n<N>/budget-<tokens>``). Its identity is part of the SFT identity, so
SFT on another distillation is another run. ``sft.source=dataset`` reads ``sft.dataset`` (a local
file, identified by its bytes, or a hub id). ``scale=smoke`` caps the optimizer steps
(``scale.max_train_steps``), named in a warning and in the summary.

Outputs in ``<output_root>/sft/<model>/<data>-<hash>/``: ``metrics.jsonl``, ``checkpoints/``
(periodic; a killed run resumes from the latest), ``loss.png``, ``final/model/`` (HF format, for
eval / RL / vLLM), ``summary.json``, ``config.yaml``, ``DONE``. ``sft.eval_benchmarks`` plans an eval
run of the final checkpoint per benchmark (:func:`longcot.stages.plan_follow_ups`), run afterwards.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from longcot import runs
from longcot.config.scale import Cap, capped, caps_note, caps_record
from longcot.stages.base import (FINAL_MODEL, Artifacts, Plan, finish_training_run,
                                 model_at_run, model_identity, print_table, running, tracking, upstream_identity,
                                 warn_notes)
from longcot.training.distributed import detect

log = logging.getLogger(__name__)
NAME = "sft"
# sft.* keys that do not change the trained weights (where data comes from is identified separately;
# checkpoint cadence and logging are bookkeeping; eval_benchmarks runs after training).
NOT_IDENTITY = ("source", "teacher", "teacher_generation", "subset", "dataset", "eval_benchmarks", "save_every_steps", "keep_last",
                "log_every_steps", "prompt_field", "response_field", "messages_field", "dataset_split", "mix", "mix_unit",
                "mix_size")


def distill_upstream(cfg: DictConfig) -> Plan:
    """The distill plan whose data this SFT reads: this config with ``model=<sft.teacher>`` (and
    ``generation=<sft.teacher_generation>`` when set)."""
    from longcot.config.loading import load_group_option
    from longcot.generation.config import GenerationConfig
    from longcot.models.config import ModelConfig
    from longcot.stages import distill

    if not cfg.sft.teacher:
        raise ValueError("sft.teacher: name the teacher (a conf/model option, e.g. qwq-32b-preview) whose distill "
                         "output to train on, or set sft.source=dataset with sft.dataset=<file or hub id>")
    dcfg = cfg.copy()
    dcfg.model = load_group_option("model", cfg.sft.teacher, ModelConfig)
    if cfg.sft.teacher_generation:
        dcfg.generation = load_group_option("generation", cfg.sft.teacher_generation, GenerationConfig)
    dcfg.stage.name = "distill"
    return distill.plan(dcfg)


def mix_upstreams(cfg: DictConfig) -> tuple[Plan, ...]:
    """``sft.source=mix``: one distill plan per ``sft.mix`` component (:func:`longcot.stages.distill.plan_for`)."""
    from longcot.stages import distill

    return tuple(distill.plan_for(cfg, teacher=c.teacher, teacher_generation=c.teacher_generation, data=c.data,
                                  overrides=c.overrides, where=f"sft.mix[{i}]") for i, c in enumerate(cfg.sft.mix))


def check_subset(subset: str, upstream: Plan) -> None:
    """``subset`` must name a dataset the distill run builds."""
    from longcot.distill.budget import parse_budget

    d = upstream.cfg.distill
    budget_n = d.budget_n if d.budget_n is not None else max(upstream.detail.teacher.ns)
    valid = [f"n{n}" for n in upstream.detail.teacher.ns]
    valid += [f"n{budget_n}/budget-{parse_budget(b)}" for b in d.token_budgets]
    if subset not in valid:
        raise ValueError(f"sft.subset={subset!r}: not a dataset of distill run {upstream.run_dir}; valid: {', '.join(valid)}")


def data_identity(cfg: DictConfig, upstream: Sequence[Plan]) -> tuple[dict[str, Any], str]:
    """(identity of the training data, a short label for the run directory)."""
    s = cfg.sft
    if s.source == "mix":
        dists = [p for p in upstream if p.stage == "distill"]
        for comp, dist in zip(s.mix, dists):
            check_subset(comp.subset, dist)
        parts = [{"distill": d.run_id, "subset": c.subset, "weight": float(c.weight)} for c, d in zip(s.mix, dists)]
        label = "mix-" + "-".join(f"{d.detail.teacher.teacher}-{c.subset.replace('/', '-')}" for c, d in zip(s.mix, dists))
        return {"mix": parts, "unit": s.mix_unit, "size": s.mix_size, "seed": s.seed}, label[:120]
    if s.source == "distill":
        dist = next(p for p in upstream if p.stage == "distill")
        check_subset(s.subset, dist)
        return {"distill": dist.run_id, "subset": s.subset}, f"{dist.detail.teacher.teacher}-{s.subset.replace('/', '-')}"
    if not s.dataset:
        raise ValueError("sft.dataset: set a local .jsonl/.json/.parquet file or a hub dataset id (sft.source=dataset)")
    path = Path(s.dataset).expanduser()
    fields = {k: s[k] for k in ("prompt_field", "response_field", "messages_field", "system_prompt")}
    if path.is_file():
        return {"file_sha256": runs.file_digest(path), **fields}, path.stem
    if path.suffix.lower() in (".jsonl", ".json", ".parquet") or str(s.dataset).startswith(("/", "./", "~")):
        raise FileNotFoundError(f"sft.dataset={s.dataset!r}: no such file")
    return {"dataset_id": s.dataset, "split": s.dataset_split, **fields}, s.dataset.replace("/", "-")


def plan(cfg: DictConfig, upstream: Sequence[Plan] = ()) -> Plan:
    """Identity and directory of fine-tuning ``cfg.model`` (or an upstream training run's model) on
    the configured data, with the optimizer steps capped by the scale."""
    from longcot.sft.recipe import _as_sft_config

    sft_cfg = _as_sft_config(cfg.sft)  # value checks of sft.*
    upstream = tuple(upstream)
    if sft_cfg.source == "distill" and not any(p.stage == "distill" for p in upstream):
        upstream = (distill_upstream(cfg), *upstream)
    if sft_cfg.source == "mix":
        if any(p.stage == "distill" for p in upstream):
            raise ValueError("sft.source=mix plans its components' distill runs (sft.mix); drop the point's distill stage")
        upstream = (*mix_upstreams(cfg), *upstream)
    data, label = data_identity(cfg, upstream)
    caps: list[Cap] = []
    effective = cfg.sft.copy()
    effective.max_steps = capped("sft.max_steps", sft_cfg.max_steps, cfg.scale.max_train_steps, caps)
    training = {k: v for k, v in OmegaConf.to_container(effective, resolve=True).items() if k not in NOT_IDENTITY}
    if not training.get("drop_last"):  # unset: the identities of runs from before the key
        training.pop("drop_last", None)
    identity = {"model": model_identity(cfg.model, upstream), "data": data, "sft": training,
                "upstream": upstream_identity(upstream)}
    note = caps_note(cfg.scale, caps, real=cfg.model.path != "tiny")
    run_dir = Path(cfg.output_root) / NAME / cfg.model.name / f"{label}-{runs.config_hash(identity)}"
    return Plan(NAME, cfg, identity, run_dir, upstream, (note,) if note else (),
                detail={"sft": effective, "caps": caps, "data_label": label})


def load_data(p: Plan) -> list[Any]:
    """The training examples: the distill upstream's subset file, or ``sft.dataset``."""
    from longcot.sft.data import load_examples
    from longcot.stages import distill

    s = p.cfg.sft
    if s.source == "mix":
        return _mix_examples(p)
    if s.source == "distill":
        dist = next(u for u in p.upstream if u.stage == "distill")
        if not dist.done:
            raise FileNotFoundError(
                f"the distill data of this SFT run is not built yet ({dist.run_dir}); run the distill stage first: "
                f"longcot stage=distill model={s.teacher}"
                + (f" generation={s.teacher_generation}" if s.teacher_generation else "")
                + " with this run's data and distill.* settings")
        return load_examples(str(distill.artifacts(dist.run_dir).files[s.subset]), p.detail["sft"])
    return load_examples(s.dataset, p.detail["sft"])


def _mix_examples(p: Plan) -> list[Any]:
    """The rows of every component's subset, mixed by weight (:func:`longcot.sft.mix.select_mix`)."""
    from longcot.data.loading import read_records
    from longcot.sft.data import examples_from_rows
    from longcot.sft.mix import select_mix
    from longcot.stages import distill

    s = p.cfg.sft
    rows, tokens = [], []
    for i, (comp, dist) in enumerate(zip(s.mix, [u for u in p.upstream if u.stage == "distill"])):
        if not dist.done:
            raise FileNotFoundError(f"sft.mix[{i}]: the distill data of this component is not built yet ({dist.run_dir}); "
                                    f"run the distill stage first: longcot stage=distill model={comp.teacher}")
        r = read_records(distill.artifacts(dist.run_dir).files[comp.subset])
        rows.append(r)
        tokens.append([int(x.get("sft_tokens", 0)) for x in r])
    mixed, stats = select_mix(rows, [c.weight for c in s.mix], unit=s.mix_unit, size=s.mix_size, seed=s.seed, tokens=tokens)
    log.info("SFT mix by %s: %s", s.mix_unit, "; ".join(
        f"{c.teacher}/{c.subset}: {int(st['rows'])} samples, {int(st['tokens'])} tokens ({100 * st['share']:.1f}%)"
        for c, st in zip(s.mix, stats)))
    return examples_from_rows(mixed, source="sft.mix", prompt_field=s.prompt_field, response_field=s.response_field,
                              messages_field=s.messages_field, system_prompt=s.system_prompt)


def run(p: Plan) -> Artifacts:
    """Train (resuming from the latest checkpoint)."""
    from longcot.sft.recipe import train

    cfg = p.cfg
    if p.done and not cfg.force:
        log.info("finished SFT run found at %s; skipping (force=true to retrain)", p.run_dir)
        return artifacts(p.run_dir)
    warn_notes(p)
    with running(p) as run_dir:
        if cfg.force:
            if detect().is_main:  # rank 0 (holding the lock) clears; the others have not started training
                log.info("force=true: discarding every earlier output of %s", run_dir)
                for name in ("checkpoints", "final"):
                    shutil.rmtree(run_dir / name, ignore_errors=True)
                for name in ("metrics.jsonl", "summary.json", "loss.png", runs.DONE):
                    (run_dir / name).unlink(missing_ok=True)
        elif p.done:
            return artifacts(run_dir)
        examples = load_data(p)
        log.info("SFT of %s on %d examples (%s) -> %s", cfg.model.name, len(examples), p.detail["data_label"], run_dir)
        with tracking(cfg, f"sft-{cfg.model.name}-{p.detail['data_label']}", run_dir, p.identity) as tracker:
            result = train(examples, model_at_run(cfg.model, p.upstream), p.detail["sft"], run_dir, tracker=tracker)
        summary = {**result, "model": cfg.model.name, "data": p.detail["data_label"], "examples": len(examples),
                   "data_counts": result.get("data"), "scale": cfg.scale.name, "scale_caps": caps_record(p.detail["caps"])}
        finish_training_run(run_dir, "summary.json", summary)
    return artifacts(p.run_dir)


def artifacts(run_dir: Path) -> Artifacts:
    """A finished SFT run: its summary and the final HF checkpoint (``files["model"]``)."""
    run_dir = Path(run_dir)
    if not runs.is_done(run_dir):
        raise FileNotFoundError(f"{run_dir}: not a finished SFT run (no DONE)")
    files = {"model": run_dir / FINAL_MODEL[NAME], "metrics": run_dir / "metrics.jsonl", "plot": run_dir / "loss.png"}
    return Artifacts(NAME, run_dir, runs.read_json(run_dir / "summary.json"), files)


def report(plans: Sequence[Plan], results: Sequence[Artifacts]) -> None:
    """Steps, final loss and throughput of each SFT run (its evaluations print their own table)."""
    rows = []
    for a in results:
        s, m = a.summary, a.summary.get("metrics", {})
        rows.append((s["model"], s["data"], s["examples"], f"{s['steps']}/{s['total_steps']}",
                     f"{m.get('final_loss', float('nan')):.4f}", f"{m.get('mean_tokens_per_s') or 0:.0f}"))
    caps = sorted({str(c) for p in plans for c in p.detail["caps"]})
    title = f"longcot sft (scale={plans[0].cfg.scale.name}{'; capped ' + ', '.join(caps) if caps else ''})"
    print_table(title, ("model", "data", "examples", "steps", "final loss", "tokens/s"), rows,
                [f"checkpoint: {a.files['model']}" for a in results])
