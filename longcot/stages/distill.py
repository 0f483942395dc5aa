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
datasets; once every shard is finished (by any job), the merge runs.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from longcot import runs
from longcot.data.records import Problem
from longcot.distill.config import FORMATS, MODES
from longcot.config.scale import cap_problems
from longcot.distill.sampling import Selection, TeacherPlan, grade_rows, teacher_plan
from longcot.distill.shards import Shard, all_shards, read_marker, run_in_processes, run_shard

log = logging.getLogger(__name__)
IDENTITY_KEYS = ["model", "generation", "data", "scale"]


def _container(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def sampling_identity(cfg: DictConfig, plan: TeacherPlan) -> dict[str, Any]:
    """The config that defines the sampled candidates (not the selection: dedupe, N, budgets...)."""
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
    return runs.identity(cfg, IDENTITY_KEYS, {"distill": extra})


def selection_identity(cfg: DictConfig) -> dict[str, Any]:
    from longcot.distill.tokens import resolve_model

    d = cfg.distill
    return {
        "dedupe": d.dedupe,
        "max_per_prompt": d.max_per_prompt,
        "keep_truncated": d.keep_truncated,
        "student": _container(resolve_model(d.student, key="distill.student")),
        "budget_unit": d.budget_unit,
        "budget_seed": d.budget_seed,
        "format": d.format,
    }


def run_dir_of(cfg: DictConfig, plan: TeacherPlan) -> Path:
    ident = sampling_identity(cfg, plan)
    return Path(cfg.output_root) / "distill" / plan.teacher / f"{cfg.data.name}-{runs.config_hash(ident)}"


def validate(cfg: DictConfig) -> None:
    d = cfg.distill
    if d.mode not in MODES:
        raise ValueError(f"distill.mode={d.mode!r}; valid: {', '.join(MODES)}")
    if d.format not in FORMATS:
        raise ValueError(f"distill.format={d.format!r}; valid: {', '.join(FORMATS)}")
    if d.workers < 1:
        raise ValueError(f"distill.workers must be >= 1, got {d.workers}")
    if d.max_per_prompt is not None and d.max_per_prompt < 1:
        raise ValueError(f"distill.max_per_prompt must be >= 1 or null, got {d.max_per_prompt}")
    if d.shard is not None:
        Shard(d.shard, d.num_shards)  # range check with a clear message
    from longcot.distill.tokens import resolve_model

    resolve_model(d.student, key="distill.student")
    if d.mode == "constructed":
        from longcot.distill.constructed import ActionMachine

        ActionMachine.from_config(d.constructed)
        resolve_model(d.constructed.action_model, cfg.model, key="distill.constructed.action_model")
        resolve_model(d.constructed.reflection_model, cfg.model, key="distill.constructed.reflection_model")
    if d.mode == "silver":
        resolve_model(d.silver.extractor, cfg.model, key="distill.silver.extractor")


def load_problems(cfg: DictConfig, run_dir: Path) -> tuple[list[Problem], dict[str, Any]]:
    """The whole prompt set, in a fixed order (silver: web records, near-duplicates removed once and cached)."""
    d = cfg.distill
    if d.mode != "silver":
        from longcot.data import load_prompts

        problems = load_prompts(cfg.data)
        info: dict[str, Any] = {}
    else:
        from longcot.distill.silver import dedupe_questions, load_web_problems

        problems = load_web_problems(cfg.data, d.silver)
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
    problems = cap_problems(problems, cfg.scale)
    if not problems:
        raise ValueError(f"data {cfg.data.name}: no prompts loaded")
    return problems, info


def execute_shard(cfg: DictConfig, shard: Shard, problems: list[Problem] | None = None, source: Any = None,
                  progress: bool = True) -> dict[str, Any]:
    """Run one shard (loading prompts and building the teacher if not given)."""
    from longcot.distill.sources import make_source

    d = cfg.distill
    plan = teacher_plan(cfg)
    run_dir = run_dir_of(cfg, plan)
    if problems is None:
        problems, _ = load_problems(cfg, run_dir)
    source = source or make_source(cfg, plan, progress)
    grade = lambda ps, rows: grade_rows(ps, rows, timeout=d.grader_timeout, workers=d.grader_workers)  # noqa: E731
    marker = run_shard(run_dir, shard, shard.select(problems), source, grade, chunk_prompts=d.chunk_prompts, progress=progress)
    log.info("%s: %d candidates in %.1fs (%.1f/s)", shard.name, marker["candidates"], marker["wall_seconds"],
             marker["candidates_per_second"] or 0.0)
    return marker


def _shard_job(container: dict[str, Any], index: int) -> None:
    """Entry point of a spawned local worker process."""
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cfg = OmegaConf.create(container)
    execute_shard(cfg, Shard(index, cfg.distill.num_shards), progress=False)


def merge(cfg: DictConfig, plan: TeacherPlan, run_dir: Path, load_info: dict[str, Any]) -> dict[str, Any]:
    """Datasets per N, token budgets and the manifest of the current selection settings."""
    from longcot.distill.dataset import build_budgets, build_datasets, data_file
    from longcot.distill.tokens import student_tokenizer

    d = cfg.distill
    sel_ident = selection_identity(cfg)
    select_dir = run_dir / f"select-{runs.config_hash(sel_ident)}"
    if cfg.force and select_dir.exists():
        shutil.rmtree(select_dir)
    runs.write_text(select_dir / "selection.yaml", OmegaConf.to_yaml(OmegaConf.create(sel_ident)))
    shards = all_shards(d.num_shards)
    markers = [read_marker(run_dir, s) for s in shards]
    extra = ["actions"] if d.mode == "constructed" else []
    sel = Selection(dedupe=d.dedupe, max_per_prompt=d.max_per_prompt, keep_truncated=d.keep_truncated)
    datasets = build_datasets(
        select_dir, [s.rows_path(run_dir) for s in shards], plan.ns, sel, teacher=plan.teacher,
        count_tokens=lambda texts: student_tokenizer(d.student).count(texts), fmt=d.format, extra=extra,
    )
    budgets: dict[str, Any] = {}
    if d.token_budgets:
        bn = int(d.budget_n) if d.budget_n is not None else max(plan.ns)
        if bn not in plan.ns:
            raise ValueError(f"distill.budget_n={bn} is not one of the datasets' N {list(plan.ns)}")
        budgets = {f"n{bn}/{k}": v for k, v in build_budgets(
            select_dir / f"n{bn}", list(d.token_budgets), seed=d.budget_seed, unit=d.budget_unit, fmt=d.format, extra=extra
        ).items()}
    prompts = sum(m["prompts_sampled"] for m in markers)
    manifest = {
        "teacher": plan.teacher,
        "data": cfg.data.name,
        "mode": d.mode,
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


def run(cfg: DictConfig) -> dict[str, Any]:
    """Sample the pending shards (one, or all), then merge once every shard is finished."""
    from longcot.distill.sources import make_source

    validate(cfg)
    d = cfg.distill
    plan = teacher_plan(cfg)
    run_dir = run_dir_of(cfg, plan)
    run_dir.mkdir(parents=True, exist_ok=True)
    runs.write_text(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(sampling_identity(cfg, plan))))
    log.info("distill %s on %s: N=%s (sampling %d per prompt, saving %.0f%% vs sampling each N), %s",
             plan.teacher, cfg.data.name, list(plan.ns), plan.params.n, 100 * plan.saving, run_dir)
    problems, load_info = load_problems(cfg, run_dir)
    targets = [Shard(d.shard, d.num_shards)] if d.shard is not None else all_shards(d.num_shards)
    todo = [s for s in targets if cfg.force or not s.is_done(run_dir)]
    if len(todo) < len(targets):
        log.info("%d of %d shard(s) already finished; skipping them", len(targets) - len(todo), len(targets))
    if todo and d.workers > 1 and len(todo) > 1:
        run_in_processes(_shard_job, _container(cfg), [s.index for s in todo], int(d.workers))
    elif todo:
        source = make_source(cfg, plan)
        for shard in todo:
            execute_shard(cfg, shard, problems, source)
    waiting = [s.index for s in all_shards(d.num_shards) if not s.is_done(run_dir)]
    if waiting:
        log.info("shards %s are not finished yet; the merge runs when the last one finishes", waiting)
        return {"dir": str(run_dir), "pending_shards": waiting}
    manifest = merge(cfg, plan, run_dir, load_info)
    log.info("distill datasets in %s", manifest["dir"])
    _track(cfg, plan, manifest)
    if d.print_table:
        print_table(manifest)
    return manifest


def _track(cfg: DictConfig, plan: TeacherPlan, manifest: dict[str, Any]) -> None:
    """Per-N counts to the experiment tracker (a no-op for ``logger=none``)."""
    from longcot.tracking import Tracker

    tracker = Tracker(cfg.logger, f"distill-{plan.teacher}-{cfg.data.name}", Path(manifest["dir"]),
                      sampling_identity(cfg, plan))
    try:
        tracker.summary({f"n{n}/{k}": v for n, m in manifest["datasets"].items() for k, v in m.items()
                         if isinstance(v, (int, float))} | {"saving": manifest["sampling"]["saving"]})
    finally:
        tracker.finish()


def print_table(manifest: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    s = manifest["sampling"]
    table = Table(title=f"longcot distill: {manifest['teacher']} on {manifest['data']} ({manifest['mode']})")
    for col in ("N", "prompts", "with correct", "kept", "duplicates", "SFT tokens", "mean resp. tokens"):
        table.add_column(col, justify="right")
    for n, m in manifest["datasets"].items():
        table.add_row(n, str(m["prompts"]), str(m["prompts_with_correct"]), str(m["responses_kept"]),
                      str(m["duplicates_removed"]), f"{m['sft_tokens']:,}", f"{m['mean_response_tokens']:.0f}")
    console = Console()
    console.print(table)
    console.print(f"sampled {s['candidates_sampled']:,} candidates instead of {s['candidates_naive']:,} "
                  f"(one sampling at N={s['n_sampled']} serves N={s['derived_n']}): {100 * s['saving']:.1f}% saved")
    for k, b in manifest["budgets"].items():
        console.print(f"budget {k}: {b['responses']} responses, reached={b['reached']}")
