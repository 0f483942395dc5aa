"""The eval stage: sample responses on benchmarks, grade them, summarise (paper App. E settings).

Per benchmark it writes graded chunks as it goes (``chunks/``, the resume points), then ``samples.jsonl`` (one row per sample), ``summary.json`` and the
resolved ``config.yaml`` and a ``summary.png`` (lengths, reflection keywords) into ``<output_root>/eval/<model>/<benchmark>-<hash>/``, then ``DONE``.
An identical re-launch skips a benchmark whose directory is done (``force=true`` redoes it).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from longcot import runs
from longcot.analysis.plots import plot_eval
from longcot.analysis.reflection import keyword_frequency
from longcot.config.scale import cap_problems, cap_sampling, smoke_warning
from longcot.data import Problem, load_benchmark
from longcot.data.prompts import chat_prompt
from longcot.generation.base import Completion, SamplingParams, prompt_seed
from longcot.grading import extract_answer
from longcot.grading.by_kind import grade_batch

log = logging.getLogger(__name__)
IDENTITY_KEYS = ["model", "generation", "scale"]


def benchmark_configs(cfg: DictConfig) -> list[DictConfig]:
    """The primary ``benchmark`` plus each name in ``eval.benchmarks``, validated by the schema."""
    from longcot.config.schema import BenchmarkConfig
    from longcot.config.loading import load_group_option

    out = [cfg.benchmark]
    for name in cfg.eval.benchmarks:
        if name == cfg.benchmark.name:
            continue
        out.append(load_group_option("benchmark", name, BenchmarkConfig))
    return out


def sampling_params(bench: DictConfig, gen: DictConfig, scale: DictConfig) -> SamplingParams:
    """The benchmark's sampling settings, with any ``generation.*`` override applied, capped by the scale."""
    from longcot.generation import apply_overrides

    base = SamplingParams(
        temperature=bench.temperature,
        top_p=bench.top_p,
        max_new_tokens=bench.max_new_tokens,
        n=bench.num_samples,
        seed=bench.seed,
    )
    return cap_sampling(apply_overrides(base, gen), scale)


def summarise(problems: list[Problem], rows: list[dict[str, Any]], n: int, keywords: list[str]) -> dict[str, Any]:
    """Accuracy (mean, standard error across the n sample sets and across problems), length,
    truncation rate and reflection-keyword frequencies."""
    total = len(rows)
    correct = [r["correct"] for r in rows]
    acc = sum(correct) / total if total else 0.0
    # Accuracy of sample set k (the k-th sample of every problem): pass@1 averaged over k.
    per_set = [sum(r["correct"] for r in rows if r["sample_index"] == k) / len(problems) for k in range(n)]
    se_sets = _std(per_set) / math.sqrt(n) if n > 1 else float("nan")
    per_problem: dict[str, list[bool]] = {}
    for r in rows:
        per_problem.setdefault(r["problem_id"], []).append(r["correct"])
    means = [sum(v) / len(v) for v in per_problem.values()]
    se_problems = _std(means) / math.sqrt(len(means)) if len(means) > 1 else float("nan")
    return {
        "num_problems": len(problems),
        "samples_per_problem": n,
        "num_samples": total,
        "accuracy": acc,
        "accuracy_se": se_sets,
        "accuracy_se_problems": se_problems,
        "accuracy_per_sample_set": per_set,
        "mean_tokens": sum(r["tokens"] for r in rows) / max(total, 1),
        "truncation_rate": sum(r["finish_reason"] == "length" for r in rows) / max(total, 1),
        "extracted_rate": sum(r["extracted_answer"] is not None for r in rows) / max(total, 1),
        "reflection": keyword_frequency([r["response"] for r in rows], keywords),
    }


def _std(xs: list[float]) -> float:
    if len(xs) < 2:
        return float("nan")
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


def evaluate_benchmark(cfg: DictConfig, bench: DictConfig, generator: Any, run_dir: Path) -> dict[str, Any]:
    """Generate, grade and write one benchmark's outputs into ``run_dir``; returns the summary.

    Problems go in chunks of ``eval.chunk_problems``; each graded chunk is written atomically to
    ``chunks/`` as soon as it is done, so a killed run resumes from its last finished chunk (every
    sample's seed is fixed by problem id and sample index, so chunking does not change what is drawn).
    """
    from tqdm.auto import tqdm

    problems = cap_problems(load_benchmark(bench), cfg.scale)
    if not problems:
        raise ValueError(f"benchmark {bench.name}: no problems loaded")
    params = sampling_params(bench, cfg.generation, cfg.scale)
    prompts = [chat_prompt(p, bench.system_prompt, bench.prompt_template) for p in problems]
    seeds = [prompt_seed(params.seed, p.id) for p in problems]
    size = cfg.eval.chunk_problems
    starts = range(0, len(problems), size)
    log.info("%s: %d problems x %d samples, max_new_tokens=%d, %d chunk(s)", bench.name, len(problems), params.n,
             params.max_new_tokens, len(starts))
    rows: list[dict[str, Any]] = []
    gen_s = grade_s = 0.0
    generated_tokens = resumed = 0
    for start in tqdm(starts, desc=f"eval {bench.name}", unit="chunk", disable=len(starts) == 1):
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
        sampling=asdict(params),
        generation_seconds=gen_s,
        grading_seconds=grade_s,
        resumed_chunks=resumed,
        tokens_per_second=generated_tokens / gen_s if gen_s > 0 else None,
    )
    runs.write_jsonl(run_dir / "samples.jsonl", rows)
    runs.write_json(run_dir / "summary.json", summary)
    plot_eval(rows, summary, run_dir / "summary.png")
    runs.mark_done(run_dir)
    return summary


def run_identity(cfg: DictConfig, bench: DictConfig) -> dict[str, Any]:
    """Everything that changes a benchmark's results: model, generation engine (with the device it
    resolves to), scale, benchmark settings and the data actually read, grading/analysis settings."""
    from longcot.data.loading import data_identity
    from longcot.models.loading import resolve_device

    extra = {
        "benchmark": data_identity(bench, "benchmark"),
        "eval": {"grader_timeout": cfg.eval.grader_timeout, "reflection_keywords": list(cfg.eval.reflection_keywords),
                 "chunk_problems": cfg.eval.chunk_problems},  # chunks are batches: padding noise may differ
    }
    if cfg.generation.backend == "hf":  # sampling streams differ between CPU and CUDA
        extra["device"] = resolve_device(cfg.generation.device).split(":")[0]
    return runs.identity(cfg, IDENTITY_KEYS, extra)


def run(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """Evaluate ``model`` on every configured benchmark; returns ``{benchmark: summary}``."""
    from longcot.generation import build_generator
    from longcot.tracking import Tracker

    smoke = smoke_warning(cfg.scale, cfg.generation.backend == "vllm" or (cfg.model.path != "tiny" and cfg.generation.backend != "synthetic"))
    if smoke:
        log.warning(smoke)
    benches = benchmark_configs(cfg)
    results: dict[str, dict[str, Any]] = {}
    generator = None
    for bench in benches:
        ident = run_identity(cfg, bench)
        run_dir = Path(cfg.output_root) / "eval" / cfg.model.name / f"{bench.name}-{runs.config_hash(ident)}"
        if runs.is_done(run_dir) and not cfg.force:
            log.info("%s: finished run found at %s; skipping (force=true to redo)", bench.name, run_dir)
            results[bench.name] = runs.read_json(run_dir / "summary.json")
            continue
        run_dir.mkdir(parents=True, exist_ok=True)
        runs.write_text(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(ident)))
        if generator is None:
            generator = build_generator(cfg.model, cfg.generation)
        tracker = Tracker(cfg.logger, f"eval-{cfg.model.name}-{bench.name}", run_dir, ident)
        try:
            summary = evaluate_benchmark(cfg, bench, generator, run_dir)
            tracker.summary({f"{bench.name}/{k}": v for k, v in summary.items() if isinstance(v, (int, float))})
        finally:
            tracker.finish()
        results[bench.name] = summary
        log.info("%s: wrote %s", bench.name, run_dir)
    if cfg.eval.print_table:
        print_table(cfg.model.name, cfg.scale.name, results)
    return results


def print_table(model: str, scale: str, results: dict[str, dict[str, Any]]) -> None:
    """A rich table of accuracy, length, truncation and reflection frequency per benchmark."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"longcot eval: {model} (scale={scale})")
    for col in ("benchmark", "problems", "samples", "accuracy", "± se", "mean tokens", "truncated", "'wait'/resp"):
        table.add_column(col, justify="right")
    for name, s in results.items():
        table.add_row(
            name,
            str(s["num_problems"]),
            str(s["samples_per_problem"]),
            f"{100 * s['accuracy']:.1f}%",
            "-" if math.isnan(s["accuracy_se"]) else f"{100 * s['accuracy_se']:.1f}",
            f"{s['mean_tokens']:.0f}",
            f"{100 * s['truncation_rate']:.1f}%",
            f"{s['reflection'].get('wait', {}).get('per_response', 0.0):.2f}",
        )
    console = Console()
    Console(width=max(console.width, 110)).print(table)  # don't squeeze columns when piped
