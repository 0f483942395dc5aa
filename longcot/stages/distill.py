"""The distill stage (paper §3): rejection-sample a teacher into SFT datasets, one per N.

    longcot stage=distill model=qwq-32b-preview data=math_train distill.n=256 distill.derive_n=[32,64,128,192]
    longcot stage=distill ... distill.num_shards=8 distill.shard=3     # one shard (a job)
    longcot stage=distill ... distill.num_shards=8 distill.workers=4   # all shards, 4 local processes
    longcot stage=distill +experiment=demo_cpu_distill                 # toy task, synthetic teacher, CPU

Outputs under ``<output_root>/distill/<teacher>/<data>-<hash>/`` (hash of the config that defines
the sampling: model, generation, data, mode, sampling settings, seed, prompt, shard count):
``config.yaml``, ``shards/`` (graded candidates + a marker per shard), ``stats.json`` (timings),
``DONE`` (every shard sampled), and ``select-<hash>/`` per selection setting (dedupe, cap, student
tokenizer, format, budget order) holding ``n<N>/`` datasets, ``n<N>/budget-<tokens>/`` subsets and a
``manifest.json`` (see :mod:`longcot.distill.dataset`). Re-running skips finished shards and
datasets; once every shard is finished (by any job), the merge runs. Merges of one run directory
are serialized by an exclusive lock (``.merge.lock``), and a selection directory records the
shards' rows hashes it was built from (``samples.json``): a merge over changed shards rebuilds it.

``force=true`` re-samples every shard the job runs (all of them, or ``distill.shard``): it first
removes those shards' markers and the ``DONE`` markers (under the merge lock), and each new marker
carries the force run's token (``distill.force_token``; default: the SLURM array job id, else the
Hydra multirun sweep directory, else one per process). The merge of a forced job only accepts
markers with its token, so with one job per shard the merge happens exactly once all shards carry
new markers, never over a mix of old and new shards. Forced shard jobs that share no token (e.g.
separate shells without ``distill.force_token``) never merge each other's shards: run the stage
once more without ``force=true`` to merge (it re-samples nothing that is finished).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from longcot import environment, runs
from longcot.data.records import Problem
from longcot.config.scale import Cap, capped, caps_note, caps_record
from longcot.distill.sampling import Selection, TeacherPlan, grade_rows, teacher_plan
from longcot.distill.shards import (Shard, all_shards, merge_lock, read_marker, run_in_processes, run_shard,
                                    samples_fingerprint)
from longcot.stages.base import (Artifacts, Plan, generation_identity, generator_model_identity,
                                 print_table as table, remove_if_unused, run_lock, set_threads, sweep_temp_files,
                                 tracking, warn_notes)

log = logging.getLogger(__name__)
NAME = "distill"


@dataclass(frozen=True)
class Resolved:
    """What a distill plan resolves: the teacher plan (sampling capped by the scale), the prompt set
    (its limit capped), the sampling directory shared by every selection, and the caps."""

    teacher: TeacherPlan
    data: DictConfig
    sampling_dir: Path
    caps: tuple[Cap, ...]


def _container(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def sampling_identity(cfg: DictConfig, plan: TeacherPlan, data: DictConfig) -> dict[str, Any]:
    """The config that defines the sampled candidates (not the selection: dedupe, N, budgets...):
    the teacher's identity, the engine, the prompt data actually read, the sampling settings."""
    from longcot.data.loading import data_identity

    d = cfg.distill
    extra: dict[str, Any] = {
        "mode": d.mode,
        "sampling": asdict(plan.params),
        "system_prompt": d.system_prompt,
        "prompt_template": d.prompt_template,
        "num_shards": d.num_shards,
        "grader_timeout": d.grader_timeout,
    }
    if d.mode == "constructed":
        extra["constructed"] = _container(d.constructed)
    if d.mode == "silver":
        extra["silver"] = _container(d.silver)
    generation = generation_identity(cfg)
    return {"model": generator_model_identity(cfg), "generation": generation,
            "data": data_identity(data, "data"), "distill": extra}


def selection_identity(cfg: DictConfig, tp: TeacherPlan) -> dict[str, Any]:
    """What defines the datasets built from the samples: the N, the selection, the budgets."""
    from longcot.distill.tokens import resolve_model

    d = cfg.distill
    return {
        "ns": list(tp.ns),
        "token_budgets": list(d.token_budgets),
        "budget_n": d.budget_n,
        "dedupe": d.dedupe,
        "max_per_prompt": d.max_per_prompt,
        "keep_truncated": d.keep_truncated,
        "student": _container(resolve_model(d.student, key="distill.student")),
        "budget_unit": d.budget_unit,
        "budget_seed": d.budget_seed,
        "format": d.format,
    }


def plan(cfg: DictConfig, upstream: Sequence[Plan] = ()) -> Plan:
    """Every distill setting checked, the teacher's sampling resolved and capped by the scale; the run
    directory is the selection's (``<sampling dir>/select-<hash>``), done once its datasets are built."""
    from longcot.distill.budget import parse_budget
    from longcot.distill.tokens import resolve_model

    d = cfg.distill
    Shard(0 if d.shard is None else d.shard, d.num_shards)  # shard < num_shards, with a clear message
    tp = teacher_plan(cfg)  # n / derive_n
    for b in d.token_budgets:
        parse_budget(b)  # "distill.token_budgets: cannot parse ...; use e.g. 1000, 250M, 0.25B, 3.5B"
    if d.budget_n is not None and int(d.budget_n) not in tp.ns:
        raise ValueError(f"distill.budget_n={d.budget_n} is not one of the datasets' N; valid: "
                         f"{', '.join(map(str, tp.ns))} (distill.n and distill.derive_n), or null for the largest")
    resolve_model(d.student, key="distill.student")
    if d.mode == "constructed":
        from longcot.distill.constructed import ActionMachine

        ActionMachine.from_config(d.constructed)
        resolve_model(d.constructed.action_model, cfg.model, key="distill.constructed.action_model")
        resolve_model(d.constructed.reflection_model, cfg.model, key="distill.constructed.reflection_model")
    if d.mode == "silver":
        resolve_model(d.silver.extractor, cfg.model, key="distill.silver.extractor")
    caps: list[Cap] = []
    tok_key = "generation.max_new_tokens" if cfg.generation.max_new_tokens is not None else "distill.max_new_tokens"
    # N is the experiment itself: never capped
    tp = replace(tp, params=replace(tp.params, max_new_tokens=capped(tok_key, tp.params.max_new_tokens,
                                                                        cfg.scale.max_new_tokens, caps)))
    data = cfg.data.copy()
    data.limit = capped("data.limit", data.limit, cfg.scale.max_problems, caps)
    sampling = sampling_identity(cfg, tp, data)
    sampling_dir = Path(cfg.output_root) / NAME / tp.teacher / f"{cfg.data.name}-{runs.config_hash(sampling)}"
    selection = selection_identity(cfg, tp)
    identity = {"sampling": sampling, "selection": selection}
    notes = startup_warnings(cfg, tp, caps)
    return Plan(NAME, cfg, identity, sampling_dir / f"select-{runs.config_hash(selection)}", tuple(upstream),
                tuple(notes), Resolved(tp, data, sampling_dir, tuple(caps)))


def _is_tiny(model: Any) -> bool:
    return model.name == "tiny" or model.path == "tiny"


def toy_teacher(cfg: DictConfig) -> bool:
    """True when no real model writes text: the synthetic backend, or only the tiny model."""
    from longcot.distill.tokens import resolve_model

    if cfg.generation.backend == "synthetic":
        return True
    d = cfg.distill
    names = {"constructed": [d.constructed.action_model, d.constructed.reflection_model],
             "silver": [d.silver.extractor]}.get(d.mode, [])
    return _is_tiny(cfg.model) and all(_is_tiny(resolve_model(n, cfg.model)) for n in names)


def startup_warnings(cfg: DictConfig, plan: TeacherPlan, caps: Sequence[Cap]) -> list[str]:
    """What a run should be told before it starts (what the scale capped, a toy student tokenizer)."""
    from longcot.distill.tokens import resolve_model

    out = []
    toy = toy_teacher(cfg)
    note = caps_note(cfg.scale, caps, real=not toy or cfg.generation.backend == "vllm",
                     detail=f"teacher {plan.teacher}, {cfg.generation.backend}")
    if note:
        out.append(note)
    if cfg.scale.name == "full" and not toy and _is_tiny(resolve_model(cfg.distill.student, key="distill.student")):
        out.append(f"distill.student={cfg.distill.student}: SFT token counts and token budgets of teacher "
                   f"{plan.teacher} are measured with the tiny model's toy tokenizer, not the SFT student's; "
                   "set distill.student (the paper's student: llama3.1-8b)")
    return out


def force_token(cfg: DictConfig) -> str:
    """The token shared by the jobs of one ``force=true`` run (see the module docstring)."""
    if cfg.distill.force_token:
        return str(cfg.distill.force_token)
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"slurm-array-{os.environ['SLURM_ARRAY_JOB_ID']}"
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            return f"hydra-multirun-{os.path.abspath(HydraConfig.get().sweep.dir)}"
    except (ImportError, AttributeError, ValueError):  # pragma: no cover - another Hydra version
        log.debug("no Hydra multirun sweep directory to share a force token")
    import uuid

    return f"process-{os.getpid()}-{uuid.uuid4().hex}"


def plan_for(cfg: DictConfig, *, teacher: str, teacher_generation: Any = None, data: Any = None,
             overrides: Sequence[str] = (), where: str) -> Plan:
    """The distill run another stage reads (an ``sft.mix`` component, ``rl.prompts``): ``cfg`` with
    ``model=<teacher>``, ``generation=<teacher_generation>``, ``data=<data>`` (options of those groups)
    and the dotted ``overrides`` (Hydra syntax, e.g. ``distill.mode=silver``); ``where`` names the key
    in errors."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from longcot.config.loading import load_group_option
    from longcot.config.schema import DataConfig
    from longcot.generation.config import GenerationConfig
    from longcot.models.config import ModelConfig

    dcfg = cfg.copy()
    dcfg.model = load_group_option("model", teacher, ModelConfig)
    if teacher_generation:
        dcfg.generation = load_group_option("generation", teacher_generation, GenerationConfig)
    if data:
        dcfg.data = load_group_option("data", data, DataConfig)
    parser = OverridesParser.create()
    for text in overrides:
        try:
            (o,) = parser.parse_overrides([text])
            OmegaConf.update(dcfg, o.key_or_group, o.value(), merge=False)
        except Exception as exc:  # noqa: BLE001 (a parse error or an unknown key: one line naming the entry)
            raise ValueError(f"{where}.overrides: {text!r}: {' '.join(str(exc).split())[:200]}") from None
    dcfg.stage.name = NAME
    return plan(dcfg)


def candidate_files(p: Plan) -> list[Path]:
    """The graded-candidate files of a distill run's shards (every candidate of every prompt)."""
    return [s.rows_path(p.detail.sampling_dir) for s in all_shards(p.cfg.distill.num_shards)]


def load_problems(p: Plan) -> tuple[list[Problem], dict[str, Any]]:
    """The whole prompt set (``data.limit`` as capped by the scale), in a fixed order (silver: web
    records, near-duplicates removed once and cached in the sampling directory)."""
    cfg, data, run_dir = p.cfg, p.detail.data, p.detail.sampling_dir
    d = cfg.distill
    if d.mode != "silver":
        from longcot.data import load_prompts

        problems = load_prompts(data)
        info: dict[str, Any] = {}
    else:
        from longcot.distill.silver import dedupe_questions, load_web_problems

        problems = load_web_problems(data, d.silver)
        info = {"near_duplicates_removed": 0}
        if d.silver.near_dedup:
            cache = run_dir / "near_duplicates.json"
            if cache.is_file():
                removed = set(runs.read_json(cache)["removed_ids"])
            else:
                kept, _ = dedupe_questions(problems, d.silver)
                keep_ids = {p.id for p in kept}
                removed = {p.id for p in problems if p.id not in keep_ids}
                runs.write_json(cache, {"removed_ids": sorted(removed)})
            problems = [p for p in problems if p.id not in removed]
            info["near_duplicates_removed"] = len(removed)
    if not problems:
        raise ValueError(f"data {cfg.data.name}: no prompts loaded")
    return problems, info


def execute_shard(p: Plan, shard: Shard, problems: list[Problem] | None = None, source: Any = None,
                  progress: bool = True, token: str | None = None) -> dict[str, Any] | None:
    """Run one shard (loading prompts and building the teacher if not given); ``token``: of a force
    run. Identical shard jobs are serialised by a lock per shard; one that finds its shard finished
    (by the job it waited for) returns None."""
    from longcot.distill.sources import make_source

    cfg, run_dir = p.cfg, p.detail.sampling_dir
    d = cfg.distill
    with run_lock(run_dir / "shards", f"distill {shard.name}", name=f".{shard.name}.lock"):
        if shard.is_done(run_dir) and token is None:
            log.info("%s was finished by another job; skipping it", shard.name)
            return None
        if problems is None:
            problems, _ = load_problems(p)
        mine = shard.select(problems)
        # one bar: the shard's chunks when there are several, else the teacher's own (no bar per chunk)
        source = source or make_source(cfg, p.detail.teacher, progress and len(mine) <= d.chunk_prompts)
        grade = lambda ps, rows: grade_rows(ps, rows, timeout=d.grader_timeout, workers=d.grader_workers)  # noqa: E731
        marker = run_shard(run_dir, shard, mine, source, grade, chunk_prompts=d.chunk_prompts,
                           progress=progress, marker_extra={"force_token": token})
    log.info("%s: %d candidates in %.1fs (%.1f/s)", shard.name, marker["candidates"], marker["wall_seconds"],
             marker["candidates_per_second"] or 0.0)
    return marker


def _shard_job(container: dict[str, Any], index: int) -> None:
    """Entry point of a spawned local worker process (``distill.force_token``: the parent's force token)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cfg = OmegaConf.create(container)
    token = cfg.distill.force_token if cfg.force else None
    execute_shard(plan(cfg), Shard(index, cfg.distill.num_shards), progress=False, token=token)


def invalidate_for_force(run_dir: Path, shards: list[Shard]) -> None:
    """``force=true``: remove the markers of the shards about to be re-sampled and every DONE that
    covers them (the run's and each selection's), under the merge lock."""
    with merge_lock(run_dir):
        for s in shards:
            s.done_path(run_dir).unlink(missing_ok=True)
        (run_dir / runs.DONE).unlink(missing_ok=True)
        for sel_done in run_dir.glob(f"select-*/{runs.DONE}"):
            sel_done.unlink(missing_ok=True)


def ready_markers(run_dir: Path, num_shards: int, token: str | None) -> tuple[list[dict[str, Any]], list[int], list[int]]:
    """(markers, unfinished shards, shards finished before this force run) of a run directory.

    ``token`` (force runs): a marker counts only if it carries that token.
    """
    markers, waiting, stale = [], [], []
    for s in all_shards(num_shards):
        if not s.is_done(run_dir):
            waiting.append(s.index)
            continue
        m = read_marker(run_dir, s)
        if token is not None and m.get("force_token") != token:
            stale.append(s.index)
        markers.append(m)
    return markers, waiting, stale


def merge(p: Plan, load_info: dict[str, Any], markers: list[dict[str, Any]]) -> dict[str, Any]:
    """Datasets per N, token budgets and the manifest of the plan's selection settings.

    Call under :func:`merge_lock`, with every shard's marker. A selection directory built from other
    samples (the shards' rows hashes differ) is rebuilt; ``force=true`` always rebuilds it. Temporary
    files of a merge that was killed are removed first.
    """
    from longcot.distill.dataset import build_budgets, build_datasets, data_file
    from longcot.distill.tokens import student_tokenizer

    cfg, plan, run_dir, select_dir = p.cfg, p.detail.teacher, p.detail.sampling_dir, p.run_dir
    d = cfg.distill
    sel_ident = p.identity["selection"]
    fingerprint = samples_fingerprint(markers)
    samples_file = select_dir / "samples.json"
    sweep_temp_files(select_dir)
    if select_dir.exists():
        if cfg.force:
            shutil.rmtree(select_dir)
        elif not samples_file.is_file() or runs.read_json(samples_file) != fingerprint:
            log.info("the shards changed since %s was built; rebuilding it", select_dir.name)
            shutil.rmtree(select_dir)
    runs.write_text(select_dir / "selection.yaml", OmegaConf.to_yaml(OmegaConf.create(sel_ident)))
    runs.write_json(samples_file, fingerprint)
    shards = all_shards(d.num_shards)
    extra = ["actions"] if d.mode == "constructed" else []
    sel = Selection(dedupe=d.dedupe, max_per_prompt=d.max_per_prompt, keep_truncated=d.keep_truncated)
    datasets = build_datasets(
        select_dir, [s.rows_path(run_dir) for s in shards], plan.ns, sel, teacher=plan.teacher,
        count_tokens=lambda texts: student_tokenizer(d.student).count(texts), fmt=d.format, extra=extra,
    )
    budgets: dict[str, Any] = {}
    if d.token_budgets:
        bn = int(d.budget_n) if d.budget_n is not None else max(plan.ns)  # checked by validate()
        budgets = {f"n{bn}/{k}": v for k, v in build_budgets(
            select_dir / f"n{bn}", list(d.token_budgets), seed=d.budget_seed, unit=d.budget_unit, fmt=d.format, extra=extra
        ).items()}
    prompts = sum(m["prompts_sampled"] for m in markers)
    manifest = {
        "teacher": plan.teacher,
        "data": cfg.data.name,
        "mode": d.mode,
        "scale": cfg.scale.name,
        "scale_caps": caps_record(p.detail.caps),
        "student": d.student,
        "system_prompt": d.system_prompt,
        "prompt_template": d.prompt_template,
        "sampling": {
            **asdict(plan.params),
            "n_sampled": plan.params.n,
            "derived_n": [n for n in plan.ns if n != plan.params.n],
            "prompts": prompts,
            "candidates_sampled": prompts * plan.params.n,
            "candidates_naive": prompts * plan.candidates_naive,
            "saving": plan.saving,
        },
        "prompts_loaded": sum(m["prompts_loaded"] for m in markers),
        **{k: sum(m.get(k, 0) for m in markers) for k in ("prompts_without_reference",) if d.mode == "silver"},
        **load_info,
        "datasets": {str(n): {**m, "path": f"n{n}/{data_file(d.format)}"} for n, m in datasets.items()},
        "budgets": {k: {**v, "path": f"{k}/{data_file(d.format)}"} for k, v in budgets.items()},
    }
    runs.write_json(select_dir / "manifest.json", manifest)
    runs.mark_done(select_dir)
    wall = sum(m["wall_seconds"] for m in markers)
    cands = sum(m["candidates"] for m in markers)
    runs.write_json(run_dir / "stats.json", {
        "shards": len(markers), "candidates": cands, "shard_wall_seconds": wall,
        "generation_seconds": sum(m["generation_seconds"] for m in markers),
        "grading_seconds": sum(m["grading_seconds"] for m in markers),
        "candidates_per_second": cands / wall if wall > 0 else None,
    })
    runs.mark_done(run_dir)
    manifest["dir"] = str(select_dir)
    return manifest


def built_from_current_samples(p: Plan) -> bool:
    """Whether the finished selection was built from the shards as they are now (a shard redone or
    removed since makes it stale: it is rebuilt, never served)."""
    markers, waiting, _ = ready_markers(p.detail.sampling_dir, p.cfg.distill.num_shards, None)
    samples = p.run_dir / "samples.json"
    return not waiting and samples.is_file() and runs.read_json(samples) == samples_fingerprint(markers)


def run(p: Plan) -> Artifacts:
    """Sample the pending shards (one, or all), then merge once every shard is finished. A finished
    selection is read back (``force=true`` re-samples); a pending one returns ``done=False``."""
    from longcot.distill.sources import make_source

    cfg, tp, run_dir = p.cfg, p.detail.teacher, p.detail.sampling_dir
    d = cfg.distill
    if p.done and not cfg.force and built_from_current_samples(p):
        log.info("finished distill datasets found at %s; skipping (force=true to re-sample)", p.run_dir)
        return artifacts(p.run_dir)
    warn_notes(p)
    set_threads(cfg)
    existed = run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    runs.write_text(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(p.identity["sampling"])))
    environment.record(run_dir)
    log.info("distill %s on %s (scale=%s): N=%s (sampling %d per prompt, %d new tokens%s), %s", tp.teacher,
             cfg.data.name, cfg.scale.name, list(tp.ns), tp.params.n, tp.params.max_new_tokens,
             f", saving {100 * tp.saving:.0f}% vs sampling each N" if tp.saving > 0 else "", run_dir)
    try:
        problems, load_info = load_problems(p)
        targets = [Shard(d.shard, d.num_shards)] if d.shard is not None else all_shards(d.num_shards)
        token = force_token(cfg) if cfg.force else None
        if token is not None:
            log.info("force=true: re-sampling %d shard(s) (force token %s)", len(targets), token)
            invalidate_for_force(run_dir, targets)
        todo = [s for s in targets if cfg.force or not s.is_done(run_dir)]
        if len(todo) < len(targets):
            log.info("%d of %d shard(s) already finished; skipping them", len(targets) - len(todo), len(targets))
        if todo and d.workers > 1 and len(todo) > 1:
            container = _container(cfg)
            container["distill"]["force_token"] = token
            run_in_processes(_shard_job, container, [s.index for s in todo], int(d.workers))
        elif todo:
            source = make_source(cfg, tp)
            for shard in todo:
                execute_shard(p, shard, problems, source, token=token)
    except BaseException:
        remove_if_unused(run_dir, existed, keep=("near_duplicates.json",), root=Path(cfg.output_root))
        raise
    with merge_lock(run_dir):
        markers, waiting, stale = ready_markers(run_dir, d.num_shards, token)
        if waiting or stale:
            if waiting:
                log.info("shards %s are not finished yet; the merge runs when the last one finishes", waiting)
            if stale:
                log.info("shards %s were sampled before this force run (token %s); the merge runs when they are "
                         "re-sampled by it (or run again without force=true to merge the shards as they are)",
                         stale, token)
            return Artifacts(NAME, p.run_dir, {"dir": str(run_dir), "pending_shards": sorted(waiting + stale)}, done=False)
        manifest = merge(p, load_info, markers)
    log.info("distill datasets in %s", p.run_dir)
    with tracking(cfg, f"distill-{tp.teacher}-{cfg.data.name}", p.run_dir, p.identity["sampling"]) as tracker:
        tracker.summary({f"n{n}/{k}": v for n, m in manifest["datasets"].items() for k, v in m.items()
                         if isinstance(v, (int, float))} | {"saving": manifest["sampling"]["saving"]})
    return artifacts(p.run_dir)


def artifacts(run_dir: Path) -> Artifacts:
    """A finished selection: its manifest (``summary``, with ``dir``) and one data file per N and budget
    (``files``: ``n<N>`` and ``n<N>/budget-<tokens>``)."""
    run_dir = Path(run_dir)
    if not runs.is_done(run_dir):
        raise FileNotFoundError(f"{run_dir}: not a finished distill selection (no DONE)")
    manifest = runs.read_json(run_dir / "manifest.json")
    manifest["dir"] = str(run_dir)
    files = {f"n{n}": run_dir / m["path"] for n, m in manifest["datasets"].items()}
    files.update({k: run_dir / b["path"] for k, b in manifest["budgets"].items()})
    return Artifacts(NAME, run_dir, manifest, files)


def report(plans: Sequence[Plan], results: Sequence[Artifacts]) -> None:
    """Per-N counts, the sampling saving and the budgets of each selection."""
    for a in results:
        m = a.summary
        s = m["sampling"]
        caps = m.get("scale_caps") or {}
        title = (f"longcot distill: {m['teacher']} on {m['data']} ({m['mode']}, scale={m.get('scale', '?')}"
                 + (f"; capped {', '.join(caps)}" if caps else "") + ")")
        rows = [(n, d["prompts"], d["prompts_with_correct"], d["responses_kept"], d["duplicates_removed"],
                 f"{d['sft_tokens']:,}", f"{d['mean_response_tokens']:.0f}") for n, d in m["datasets"].items()]
        footer = [f"budget {k}: {b['responses']} responses, reached={b['reached']}" for k, b in m["budgets"].items()]
        if s["derived_n"]:
            footer.insert(0, f"sampled {s['candidates_sampled']:,} candidates instead of {s['candidates_naive']:,} "
                             f"(one sampling at N={s['n_sampled']} serves N={s['derived_n']}): {100 * s['saving']:.1f}% saved")
        else:
            footer.insert(0, f"sampled {s['candidates_sampled']:,} candidates (N={s['n_sampled']}; no derived N)")
        table(title, ("N", "prompts", "with correct", "kept", "duplicates", "SFT tokens", "mean resp. tokens"), rows, footer)
