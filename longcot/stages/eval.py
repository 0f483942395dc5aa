"""The eval stage: sample responses on a benchmark, grade them, summarise (paper App. E settings).

    longcot benchmark=aime24 scale=full                     # one benchmark
    longcot eval.benchmarks=[aime24,theoremqa]              # several: one run (directory) each

One plan per benchmark (:func:`expand` gives one config each). A run writes graded chunks as it goes
(``chunks/``, the resume points), then ``samples.jsonl`` (one row per sample), ``summary.json``,
``summary.png`` (lengths, reflection keywords) and ``config.yaml`` (the identity) into
``<output_root>/eval/<model>/<benchmark>-<hash>/``, then ``DONE``. An identical re-launch reads the
finished run back; ``force=true`` redoes it from scratch (no chunk is reused).
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from longcot import runs
from longcot.analysis.length import length_gap_of_rows
from longcot.analysis.plots import plot_eval
from longcot.analysis.reflection import keyword_frequency
from longcot.config.scale import Cap, capped, caps_note, caps_record
from longcot.data import Problem, load_benchmark, train_overlap
from longcot.data.prompts import chat_prompt
from longcot.generation.base import Completion, SamplingParams, prompt_seed
from longcot.grading import extract_answer
from longcot.grading.by_kind import grade_batch
from longcot.stages.base import (Artifacts, Plan, generation_identity, generator_model_identity, model_at_run,
                                 print_table, running, tracking, warn_notes)

log = logging.getLogger(__name__)
NAME = "eval"


def expand(cfg: DictConfig) -> list[DictConfig]:
    """One config per benchmark: the primary ``benchmark`` plus each name in ``eval.benchmarks``."""
    from longcot.config.loading import load_group_option
    from longcot.config.schema import BenchmarkConfig

    out = [cfg]
    for name in cfg.eval.benchmarks:
        if name == cfg.benchmark.name:
            continue
        one = cfg.copy()
        one.benchmark = load_group_option("benchmark", name, BenchmarkConfig)
        out.append(one)
    return out


def sampling_params(cfg: DictConfig, caps: list[Cap]) -> SamplingParams:
    """The benchmark's sampling settings, ``generation.*`` overrides applied, capped by the scale."""
    from longcot.generation import apply_overrides

    bench, gen, scale = cfg.benchmark, cfg.generation, cfg.scale
    base = apply_overrides(SamplingParams(temperature=bench.temperature, top_p=bench.top_p,
                                          max_new_tokens=bench.max_new_tokens, n=bench.num_samples, seed=bench.seed), gen)
    n_key = "generation.n" if gen.n is not None else "benchmark.num_samples"
    tok_key = "generation.max_new_tokens" if gen.max_new_tokens is not None else "benchmark.max_new_tokens"
    return replace(base, n=capped(n_key, base.n, scale.max_samples, caps),
                   max_new_tokens=capped(tok_key, base.max_new_tokens, scale.max_new_tokens, caps))


def is_real(cfg: DictConfig) -> bool:
    """A real model or engine (a smoke-scale run of one is almost certainly a mistake)."""
    return cfg.generation.backend == "vllm" or (cfg.model.path != "tiny" and cfg.generation.backend != "synthetic")


def plan(cfg: DictConfig, upstream: Sequence[Plan] = ()) -> Plan:
    """Identity and directory of evaluating ``cfg.model`` (or the upstream training run's final
    checkpoint) on ``cfg.benchmark``: the model's identity, the engine (and the device it resolves
    to), the sampling settings and problem limit as capped by the scale, the benchmark data actually
    read, and the grading/analysis settings."""
    from longcot.data.loading import data_identity

    caps: list[Cap] = []
    params = sampling_params(cfg, caps)
    bench = cfg.benchmark.copy()
    bench.limit = capped("benchmark.limit", bench.limit, cfg.scale.max_problems, caps)
    gen = generation_identity(cfg)
    identity = {
        "model": generator_model_identity(cfg, upstream),
        "generation": gen,
        "sampling": asdict(params),
        "benchmark": data_identity(bench, "benchmark"),
        "eval": {"grader_timeout": cfg.eval.grader_timeout, "reflection_keywords": list(cfg.eval.reflection_keywords),
                 "chunk_problems": cfg.eval.chunk_problems},  # the resume points: chunk files are per chunk size
    }
    note = caps_note(cfg.scale, caps, real=is_real(cfg))
    run_dir = Path(cfg.output_root) / NAME / cfg.model.name / f"{bench.name}-{runs.config_hash(identity)}"
    return Plan(NAME, cfg, identity, run_dir, tuple(upstream), (note,) if note else (),
                detail={"params": params, "benchmark": bench, "caps": caps})


def summarise(problems: list[Problem], rows: list[dict[str, Any]], n: int, keywords: list[str]) -> dict[str, Any]:
    """Accuracy (mean, standard error across the n sample sets and across problems), length (all
    responses, the correct ones, the wrong ones, right vs wrong within a problem), truncation rate and
    reflection-keyword frequencies."""
    total = len(rows)
    correct = [r["correct"] for r in rows]
    acc = sum(correct) / total if total else 0.0
    # Accuracy of sample set k (the k-th sample of every problem): pass@1 averaged over k.
    per_set = [sum(r["correct"] for r in rows if r["sample_index"] == k) / len(problems) for k in range(n)]
    se_sets = _std(per_set) / math.sqrt(n) if n > 1 else None
    per_problem: dict[str, list[bool]] = {}
    for r in rows:
        per_problem.setdefault(r["problem_id"], []).append(r["correct"])
    means = [sum(v) / len(v) for v in per_problem.values()]
    se_problems = _std(means) / math.sqrt(len(means)) if len(means) > 1 else None
    return {
        "num_problems": len(problems),
        "samples_per_problem": n,
        "num_samples": total,
        "accuracy": acc,
        "accuracy_se": se_sets,
        "accuracy_se_problems": se_problems,
        "accuracy_per_sample_set": per_set,
        "mean_tokens": sum(r["tokens"] for r in rows) / max(total, 1),
        # §4.1's premise (longer reasoning is more often right) read off one checkpoint; None: no such response
        "mean_tokens_correct": _mean([r["tokens"] for r in rows if r["correct"]]),
        "mean_tokens_wrong": _mean([r["tokens"] for r in rows if not r["correct"]]),
        # the same within each problem (what a group-relative reward sees): longcot/analysis/length.py
        "length_gap": length_gap_of_rows(rows),
        "truncation_rate": sum(r["finish_reason"] == "length" for r in rows) / max(total, 1),
        "extracted_rate": sum(r["extracted_answer"] is not None for r in rows) / max(total, 1),
        "reflection": keyword_frequency([r["response"] for r in rows], keywords),
    }


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _std(xs: list[float]) -> float:
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def sample_rows(problems: list[Problem], prompts: list[Any], completions: list[list[Completion]], verdicts: list[bool]) -> list[dict[str, Any]]:
    """One ``samples.jsonl`` row per completion, in problem order then sample order."""
    flat = [(p, prompt, c) for p, prompt, cs in zip(problems, prompts, completions) for c in cs]
    return [
        {
            "problem_id": p.id,
            "sample_index": c.sample_index,
            "prompt": prompt[-1]["content"],
            "response": c.text,
            "extracted_answer": extract_answer(c.text),
            "gold": p.answer,
            "correct": ok,
            "tokens": c.num_tokens,
            "prompt_tokens": c.prompt_tokens,
            "finish_reason": c.finish_reason,
        }
        for (p, prompt, c), ok in zip(flat, verdicts)
    ]




def evaluate(plan: Plan, generator: Any, tracker: Any) -> dict[str, Any]:
    """Generate, grade and write the benchmark's outputs into the run directory; returns the summary.

    Problems go in chunks of ``eval.chunk_problems``; each graded chunk is written atomically to
    ``chunks/`` as soon as it is done, so a killed run resumes from its last finished chunk (every
    sample's seed is fixed by problem id and sample index, so chunking does not change what is drawn).
    """
    from longcot.progress import bar

    cfg, run_dir = plan.cfg, plan.run_dir
    bench, params = plan.detail["benchmark"], plan.detail["params"]
    problems = load_benchmark(bench)
    if not problems:
        raise ValueError(f"benchmark {bench.name}: no problems loaded")
    prompts = [chat_prompt(p, bench.system_prompt, bench.prompt_template) for p in problems]
    seeds = [prompt_seed(params.seed, p.id) for p in problems]
    size = cfg.eval.chunk_problems
    starts = range(0, len(problems), size)
    log.info("%s: %d problems x %d samples, max_new_tokens=%d, %d chunk(s)", bench.name, len(problems), params.n,
             params.max_new_tokens, len(starts))
    rows: list[dict[str, Any]] = []
    gen_s = grade_s = 0.0
    generated_tokens = resumed = 0
    for start in bar(starts, desc=f"eval {bench.name}", unit="chunk", disable=len(starts) == 1):
        chunk = run_dir / "chunks" / f"chunk-{start // size:05d}.jsonl"
        if chunk.is_file():
            rows.extend(runs.read_jsonl(chunk))
            resumed += 1
            continue
        part = slice(start, start + size)
        t0 = time.perf_counter()
        completions = generator.generate(prompts[part], params, seeds=seeds[part], progress=len(starts) == 1)
        t1 = time.perf_counter()
        texts = [c.text for cs in completions for c in cs]
        graded = [p for p, cs in zip(problems[part], completions) for _ in cs]
        verdicts = grade_batch(graded, texts, timeout=cfg.eval.grader_timeout, workers=cfg.eval.grader_workers)
        gen_s, grade_s = gen_s + t1 - t0, grade_s + time.perf_counter() - t1
        chunk_rows = sample_rows(problems[part], prompts[part], completions, verdicts)
        generated_tokens += sum(r["tokens"] for r in chunk_rows)
        runs.write_jsonl(chunk, chunk_rows)
        rows.extend(chunk_rows)
    if resumed:
        log.info("%s: resumed %d finished chunk(s) of %d", bench.name, resumed, len(starts))
    summary = summarise(problems, rows, params.n, list(cfg.eval.reflection_keywords))
    summary.update(
        benchmark=bench.name,
        model=cfg.model.name,
        checkpoint=_checkpoint(plan),
        scale=cfg.scale.name,
        scale_caps=caps_record(plan.detail["caps"]),
        sampling=asdict(params),
        generation_seconds=gen_s,
        grading_seconds=grade_s,
        resumed_chunks=resumed,
        tokens_per_second=generated_tokens / gen_s if gen_s > 0 else None,
        train_overlap=train_overlap(problems, cfg.data),
    )
    runs.write_jsonl(run_dir / "samples.jsonl", rows)
    runs.write_json(run_dir / "summary.json", summary)
    plot_eval(rows, summary, run_dir / "summary.png")
    tracker.summary({f"{bench.name}/{k}": v for k, v in summary.items() if isinstance(v, (int, float))})
    runs.mark_done(run_dir)
    return summary


_GENERATOR: dict[str, Any] = {}  # one live engine per process, reused by the plans of one model


def _generator(model_cfg: DictConfig, gen_cfg: DictConfig) -> Any:
    from longcot.generation import build_generator

    key = runs.config_hash({"model": OmegaConf.to_container(model_cfg), "generation": OmegaConf.to_container(gen_cfg)})
    if key not in _GENERATOR:
        _GENERATOR.clear()
        _GENERATOR[key] = build_generator(model_cfg, gen_cfg)
    return _GENERATOR[key]


def run(plan: Plan) -> Artifacts:
    """Evaluate the plan's benchmark (a finished run is read back unless ``force=true``)."""
    cfg = plan.cfg
    if plan.done and not cfg.force:
        log.info("%s: finished run found at %s; skipping (force=true to redo)", cfg.benchmark.name, plan.run_dir)
        return artifacts(plan.run_dir)
    warn_notes(plan)
    with running(plan) as run_dir:
        if cfg.force:
            log.info("force=true: discarding every earlier output of %s", run_dir)
            shutil.rmtree(run_dir / "chunks", ignore_errors=True)
            (run_dir / runs.DONE).unlink(missing_ok=True)
        elif plan.done:  # finished by the run we waited for
            return artifacts(run_dir)
        generator = _generator(model_at_run(cfg.model, plan.upstream), cfg.generation)
        with tracking(cfg, f"eval-{cfg.model.name}-{cfg.benchmark.name}", run_dir, plan.identity) as tracker:
            evaluate(plan, generator, tracker)
    log.info("%s: wrote %s", cfg.benchmark.name, plan.run_dir)
    return artifacts(plan.run_dir)


def plan_after_training(p: Plan, benchmarks: Sequence[str]) -> list[Plan]:
    """The evaluations of training run ``p``'s final checkpoint (``<stage>.eval_benchmarks``), each its
    own planned eval run with the settings the user composed: the run's ``benchmark`` as composed (with
    its overrides) when named, another benchmark's own config otherwise; the run's ``eval.*``."""
    from longcot.config.loading import load_group_option
    from longcot.config.schema import BenchmarkConfig

    out = []
    for name in benchmarks:
        ecfg = p.cfg.copy()
        if name != p.cfg.benchmark.name:
            ecfg.benchmark = load_group_option("benchmark", name, BenchmarkConfig)
        ecfg.eval.benchmarks = []
        ecfg.stage.name = "eval"
        out.append(plan(ecfg, (p,)))
    return out


def _checkpoint(plan: Plan) -> str | None:
    """Which checkpoint is evaluated: the upstream training run's (``sft <run dir name>``), None for the
    model as configured."""
    from longcot.stages.base import trained_by

    producer = trained_by(plan.upstream)
    return f"{producer.stage} {producer.run_dir.name}" if producer is not None else None


def artifacts(run_dir: Path) -> Artifacts:
    """A finished eval run: its summary and files."""
    run_dir = Path(run_dir)
    if not runs.is_done(run_dir):
        raise FileNotFoundError(f"{run_dir}: not a finished eval run (no DONE)")
    files = {k: run_dir / f for k, f in (("samples", "samples.jsonl"), ("summary", "summary.json"), ("plot", "summary.png"))}
    return Artifacts(NAME, run_dir, runs.read_json(files["summary"]), files)


def report(plans: Sequence[Plan], results: Sequence[Artifacts]) -> None:
    """Accuracy, length, truncation and reflection frequency per benchmark."""
    first = plans[0].cfg
    caps = sorted({str(c) for p in plans for c in p.detail["caps"]})
    title = f"longcot eval: {first.model.name} (scale={first.scale.name}{'; capped ' + ', '.join(caps) if caps else ''})"
    rows = []
    for a in results:
        s = a.summary
        se = s.get("accuracy_se")
        rows.append((s["benchmark"], s["num_problems"], s["samples_per_problem"], f"{100 * s['accuracy']:.1f}%",
                     "-" if se is None else f"{100 * se:.1f}", f"{s['mean_tokens']:.0f}",
                     f"{100 * s['truncation_rate']:.1f}%", f"{s['reflection'].get('wait', {}).get('per_response', 0.0):.2f}"))
    print_table(title, ("benchmark", "problems", "samples", "accuracy", "± se", "mean tokens", "truncated", "'wait'/resp"), rows)
