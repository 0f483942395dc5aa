"""Throughput of the distill stage on CPU and the saving of prefix reuse (a script, not a test).

    PYTHONPATH=. python tests/perf/bench_distill.py [--prompts 1000] [--n 16] [--grid-prompts 20] [--out DIR]

1. Toy distillation: ``--prompts`` toy prompts x ``--n`` candidates with the synthetic long-CoT
   teacher (error rate 0.2), graded by the pooled grader, in 4 shards run in-process, then merged
   into the datasets (tiny student tokenizer). Prints wall time and candidates/s (sampling +
   grading; and end to end with the merge).
2. The Fig. 1 grid on the toy task: the experiment's settings (long teacher N=256 serving
   32/64/128/192, short teacher N=256 serving 32/64/128) with the synthetic long/short teachers
   standing in for QwQ-32B-Preview / Qwen2.5-Math-72B-Instruct. Counts the candidates actually
   sampled (rows in the shard files) against the naive sum of sampling every N separately, and
   checks that the derived N=32 dataset equals a direct N=32 sampling.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from longcot.config.loading import CONF_DIR
    from longcot.config.schema import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def shard_rows(run_dir: Path) -> int:
    return sum(sum(1 for _ in f.open()) for f in (run_dir / "shards").glob("*.jsonl"))


def bench_throughput(out: Path, prompts: int, n: int) -> None:
    from longcot.stages import distill as stage

    cfg = compose(["+experiment=demo_cpu_distill", f"output_root={out}", f"data.toy_size={prompts}", f"distill.n={n}",
                   "distill.derive_n=[]", "distill.token_budgets=[]", "generation.error_rate=0.2",
                   "distill.print_table=false"])
    t0 = time.perf_counter()
    manifest = distill_run(cfg)
    wall = time.perf_counter() - t0
    stats = __import__("json").loads((Path(manifest["dir"]).parent / "stats.json").read_text())
    cands = stats["candidates"]
    print(f"[throughput] {prompts} prompts x N={n} = {cands} candidates (synthetic long teacher, 4 shards, in-process)")
    print(f"  sampling+grading: {stats['shard_wall_seconds']:.1f}s -> {cands / stats['shard_wall_seconds']:.0f} candidates/s "
          f"(generation {stats['generation_seconds']:.1f}s, grading {stats['grading_seconds']:.1f}s)")
    print(f"  end to end incl. merge + student token counting: {wall:.1f}s -> {cands / wall:.0f} candidates/s")
    m = manifest["datasets"][str(n)]
    print(f"  kept {m['responses_kept']} responses from {m['prompts_with_correct']} prompts, {m['sft_tokens']:,} SFT tokens")


def bench_fig1_grid(out: Path, prompts: int) -> None:
    import pyarrow.parquet as pq

    from longcot.stages import distill as stage

    sampled = naive = 0
    for teacher, style in (("qwq-32b-preview", "long"), ("qwen2.5-math-72b-instruct", "short")):
        base = ["+experiment=fig1_long_vs_short_n", f"model={teacher}", "data=toy", f"data.toy_size={prompts}",
                "generation=synthetic", f"generation.style={style}", "distill.num_shards=2", f"output_root={out}",
                "distill.print_table=false", "distill.student=tiny"]  # the real student's tokenizer is a download
        manifest = distill_run(compose(base))
        run_dir = Path(manifest["dir"]).parent
        s = manifest["sampling"]
        rows = shard_rows(run_dir)
        assert rows == s["candidates_sampled"], (rows, s)
        ns = sorted(int(k) for k in manifest["datasets"])
        print(f"[fig1] {teacher} ({style}, t={s['temperature']}, top-p {s['top_p']}, max {s['max_new_tokens']}): "
              f"N={ns} from one sampling at {s['n_sampled']}: {rows} candidates sampled vs {s['candidates_naive']} naive "
              f"({100 * (1 - rows / s['candidates_naive']):.1f}% saved)")
        sampled += rows
        naive += s["candidates_naive"]
        direct_cfg = compose(base + ["distill.n=32", "distill.derive_n=[]"])
        direct = distill_run(direct_cfg)
        a = pq.read_table(Path(manifest["dir"]) / "n32/data.parquet").to_pylist()
        b = pq.read_table(Path(direct["dir"]) / "n32/data.parquet").to_pylist()
        assert a == b, "derived N=32 differs from a direct N=32 sampling"
        print(f"  derived N=32 dataset == direct N=32 sampling ({len(a)} rows)")
    print(f"[fig1] both teachers: {sampled} candidates sampled vs {naive} naive = {100 * (1 - sampled / naive):.1f}% saved "
          f"(per prompt: {sampled // prompts} vs {naive // prompts})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=1000)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--grid-prompts", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None, help="output root (default: a temporary directory)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        bench_throughput(out / "throughput", args.prompts, args.n)
        bench_fig1_grid(out / "fig1", args.grid_prompts)


if __name__ == "__main__":
    main()
