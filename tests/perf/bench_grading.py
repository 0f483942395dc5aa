"""Throughput of the pooled grader vs. calling math-verify directly (a script, not a test).

    PYTHONPATH=. python tests/perf/bench_grading.py [--repeat 2] [--workers 2] [--data DIR]

Workload, per MATH-500 problem and per repeat (a repeat is another "sample" of the same problem:
same gold, full responses prefixed with `Sample k:` and extracted answers padded with k spaces,
so that no pair is an exact duplicate and dedup does not help), four
pairs mixing full responses and extracted answers:

1. gold answer vs. its full reference solution (correct; mostly settled by the string fast path);
2. gold answer vs. another problem's full solution (wrong);
3. gold answer vs. another problem's answer as a bare extracted answer (wrong);
4. full reference solution as gold vs. the answer re-written in `\\boxed{}` with `\\dfrac`/spaces
   (correct).

(a) `math_equal_batch` (fast path in-process + math-verify in `--workers` killable processes) and
(b) the baseline: a plain in-process loop of math-verify `parse` + `verify` (default settings, its
own signal-alarm timeouts), with bare gold answers wrapped in `\\boxed{}` and the same
latex2sympy percent fix applied (without it the baseline also rejects every boxed `10\\%`).
Prints answers/s for both and their ratio, and exits non-zero if verdicts agree on < 99%.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from pathlib import Path


def load_math500(data_dir: Path) -> list[dict]:
    path = data_dir / "math500" / "test.jsonl"
    if not path.is_file():
        sys.exit(f"MATH-500 not found at {path}; pass --data or set LONGCOT_SHARED_DATA")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def workload(rows: list[dict], repeat: int) -> list[tuple[str, str]]:
    rng = random.Random(0)
    n = len(rows)
    pairs: list[tuple[str, str]] = []
    for k in range(repeat):
        tag = f"Sample {k}: " if k else ""
        for i, r in enumerate(rows):
            j = (i + 1 + rng.randrange(n - 1)) % n  # another problem
            rewritten = "\\boxed{" + r["answer"].replace("\\frac", "\\dfrac").replace(",", ", ") + "}"
            pairs += [
                (r["answer"], tag + r["solution"]),
                (r["answer"], tag + rows[j]["solution"]),
                (r["answer"], rows[j]["answer"] + " " * k),
                (r["solution"], tag + "The final answer is " + rewritten),
            ]
    return pairs


def baseline(pairs: list[tuple[str, str]]) -> list[bool]:
    from math_verify import parse, verify

    from longcot.grading.equivalence import _setup
    from longcot.grading.extract import extract_boxed

    _setup()  # the percent fix only; parsing below is plain math-verify
    verdicts = []
    for gold, pred in pairs:
        g = parse(gold if extract_boxed(gold) is not None else "\\boxed{" + gold + "}")
        verdicts.append(bool(verify(g, parse(pred))))
    return verdicts


def _cpu_seconds(pids: list[int]) -> float:
    """User+system CPU seconds consumed so far by the given live processes (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def main() -> None:
    default_data = os.environ.get("LONGCOT_SHARED_DATA") or str(Path(__file__).resolve().parents[2].parent / "shared" / "data")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(default_data), help="shared data folder (default: %(default)s)")
    ap.add_argument("--repeat", type=int, default=2, help="times the 4x500-pair workload is repeated")
    ap.add_argument("--workers", type=int, default=None, help="pool workers (default: CPU count)")
    args = ap.parse_args()
    logging.disable(logging.WARNING)

    from longcot.grading import grading_stats, math_equal_batch
    from longcot.grading.pool import default_pool

    pairs = workload(load_math500(args.data), args.repeat)
    workers = args.workers or default_pool().size
    print(f"workload: {len(pairs)} pairs ({args.repeat} x 500 problems x 4), {workers} workers, {os.cpu_count()} CPUs")

    start = time.perf_counter()
    math_equal_batch(pairs[:8], workers=workers)  # start the workers (reported separately)
    startup = time.perf_counter() - start
    pids = default_pool().worker_pids()
    cpu0, wcpu0, start = time.process_time(), _cpu_seconds(pids), time.perf_counter()
    pooled = math_equal_batch(pairs, workers=workers)
    t_pool = time.perf_counter() - start
    restarts = grading_stats().restarts
    cpu_pool = time.process_time() - cpu0 + _cpu_seconds(pids) - wcpu0  # exact while no worker was replaced
    stats = grading_stats()

    cpu0, start = time.process_time(), time.perf_counter()
    direct = baseline(pairs)
    t_base = time.perf_counter() - start
    cpu_base = time.process_time() - cpu0

    agree = sum(a == b for a, b in zip(pooled, direct)) / len(pairs)
    diffs = [(g[:60], p[-60:], a, b) for (g, p), a, b in zip(pairs, pooled, direct) if a != b]
    print(f"pool start-up (first small batch): {startup:.2f}s")
    print(
        f"(a) pooled math_equal_batch: {t_pool:.2f}s = {len(pairs) / t_pool:.0f} answers/s "
        f"(fast path {stats.fast_path}, sent to workers {stats.dispatched}, timeouts {stats.timeouts})"
    )
    print(f"(b) in-process math-verify:  {t_base:.2f}s = {len(pairs) / t_base:.0f} answers/s")
    print(f"speed ratio (a)/(b): {t_base / t_pool:.2f}x wall-clock")
    cpu_note = "" if restarts == 0 else " (a worker was replaced: (a) undercounted)"
    print(
        f"CPU time: (a) {cpu_pool:.2f} CPU-s (caller + workers) = {len(pairs) / cpu_pool:.0f} answers/CPU-s; "
        f"(b) {cpu_base:.2f} CPU-s = {len(pairs) / cpu_base:.0f} answers/CPU-s{cpu_note}"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"1-minute load average at the end: {load:.2f} (other processes skew wall-clock numbers)")
    print(f"verdict agreement: {agree:.2%} ({len(diffs)} differ); accuracy (a) {sum(pooled)}, (b) {sum(direct)}")
    for d in diffs[:20]:
        print("  differ:", d)
    if agree < 0.99:
        sys.exit("FAIL: verdicts agree on less than 99%")


if __name__ == "__main__":
    main()
