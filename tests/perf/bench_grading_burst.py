"""The grader under a burst of hostile answers (issue 7), screen on vs off in one run (a script).

    PYTHONPATH=. python tests/perf/bench_grading_burst.py [--workers 2] [--timeout 5] [--data DIR]

1. Burst: the seven hostile answers of the issue (two power towers, a 1 MB string, 5,000 open
   braces, `\\boxed{` + 3,000 parentheses, `10^{10^{10^{10}}}!`, an `__import__` injection) are
   submitted at once from 4 threads to `math_equal` (the shared default pool, already started, as
   in a running eval). Prints the latency of the last verdict, with the screen (the default) and
   without it (`screen=False`, the baseline: every one reaches math-verify under the timeout).
2. Mixed batch: 1,000 ordinary pairs (the first 1,000 of `bench_grading.workload` on MATH-500:
   answers vs own/other solutions, bare answers and rewritten boxes), alone ("clean") and with 10
   hostile pairs mixed in at even intervals ("mixed"). Prints ordinary answers/s of each and
   mixed/clean, which must be >= 0.90 with the screen; and the same ratio without the screen.

Clean and mixed are timed alternately (`--repeat` times with the screen, once without; the order
flips each time, as workers' sympy caches warm up) and the fastest of each is kept, so a load spike from other processes does not land on one side only;
CPU seconds (caller + workers, from /proc) are printed too, as a load-independent check. Exits non-zero when
the screened burst's worst latency is not below one timeout or the screened ratio is < 0.90.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_grading import _cpu_seconds, load_math500, workload  # noqa: E402

BURST = [
    r"\boxed{9^{9^{9^{9^{9}}}}}",
    r"$5^{5^{5^{5^5}}}$",
    "x" * 1_000_000,
    "{" * 5000,
    "\\boxed{" + "(" * 3000,
    r"\boxed{10^{10^{10^{10}}}!}",
    "__import__('os').system('touch /tmp/pwned')",
]
MIXED_EXTRA = [r"\boxed{((10^{10})!)!}", "\\boxed{" + "{" * 40 + "1" + "}" * 40 + "}", "$" + "1+" * 60_000 + "1$"]
HOSTILE = set(BURST + MIXED_EXTRA)


def burst(timeout: float, screen: bool) -> float:
    """Seconds from submission until the last of the 7 verdicts (4 threads, shared pool)."""
    from longcot.grading import math_equal

    done: list[float] = []
    start = time.monotonic()

    def run(k: int) -> None:
        for text in BURST[k::4]:
            assert math_equal("3", text, timeout=timeout, screen=screen) is False
            done.append(time.monotonic() - start)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(done) == len(BURST)
    return max(done)


def timed(pairs: list[tuple[str, str]], timeout: float, workers: int, screen: bool) -> tuple[float, float, list[bool]]:
    """(wall seconds, CPU seconds of caller + workers, verdicts) of one batch."""
    from longcot.grading import math_equal_batch
    from longcot.grading.pool import default_pool

    pids = default_pool().worker_pids()
    cpu0, wcpu0, start = time.process_time(), _cpu_seconds(pids), time.perf_counter()
    verdicts = math_equal_batch(pairs, timeout=timeout, workers=workers, screen=screen)
    wall = time.perf_counter() - start
    return wall, time.process_time() - cpu0 + _cpu_seconds(pids) - wcpu0, verdicts  # exact while no worker is replaced


def throughput(clean: list, mixed: list, timeout: float, workers: int, screen: bool, repeat: int) -> dict[str, float]:
    """Best wall and CPU seconds of clean and mixed, timed alternately `repeat` times; verdicts
    of the ordinary pairs must be the same in both."""
    best = {"clean": float("inf"), "mixed": float("inf"), "clean_cpu": float("inf"), "mixed_cpu": float("inf")}
    verdicts = {}
    for k in range(repeat):
        for name in ("clean", "mixed") if k % 2 == 0 else ("mixed", "clean"):  # neither always goes first
            wall, cpu, verdicts[name] = timed(clean if name == "clean" else mixed, timeout, workers, screen)
            best[name], best[name + "_cpu"] = min(best[name], wall), min(best[name + "_cpu"], cpu)
        v_clean, v_mixed = verdicts["clean"], verdicts["mixed"]
        ordinary = [v for v, (_, p) in zip(v_mixed, mixed) if p not in HOSTILE]
        assert ordinary == v_clean, "the hostile pairs changed verdicts of ordinary ones"
    return best


def main() -> None:
    default_data = os.environ.get("LONGCOT_SHARED_DATA") or str(Path(__file__).resolve().parents[2].parent / "shared" / "data")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(default_data), help="shared data folder (default: %(default)s)")
    ap.add_argument("--workers", type=int, default=None, help="pool workers (default: CPU count)")
    ap.add_argument("--timeout", type=float, default=5.0, help="per-answer timeout in seconds (the default)")
    ap.add_argument("--repeat", type=int, default=3, help="alternations of clean/mixed with the screen (best kept)")
    args = ap.parse_args()
    logging.disable(logging.WARNING)

    from longcot.grading import grading_stats, math_equal_batch
    from longcot.grading.pool import default_pool

    workers = args.workers or default_pool().size
    clean = workload(load_math500(args.data), 1)[:1000]
    hostile = BURST + MIXED_EXTRA
    mixed = list(clean)
    for k, text in enumerate(hostile):  # 10 hostile predictions at even intervals
        mixed.insert((k + 1) * len(mixed) // (len(hostile) + 1), (clean[k][0], text))
    print(f"{workers} workers, {os.cpu_count()} CPUs, timeout {args.timeout:g}s; "
          f"clean batch {len(clean)} pairs, mixed {len(mixed)} (+{len(hostile)} hostile)")
    math_equal_batch(clean[:8], workers=workers)  # start the workers, as in a running eval

    worst_on = burst(args.timeout, screen=True)
    worst_off = burst(args.timeout, screen=False)
    print(f"burst of {len(BURST)} hostile answers from 4 threads: last verdict after {worst_on:.3f}s with the screen, "
          f"{worst_off:.2f}s without (timeout {args.timeout:g}s)")

    before = grading_stats()
    on = throughput(clean, mixed, args.timeout, workers, screen=True, repeat=args.repeat)
    screened = (grading_stats().screened - before.screened) // args.repeat
    ratio_on = on["clean"] / on["mixed"]  # ordinary answers/s mixed / clean = clean time / mixed time
    print(f"with the screen:    clean {len(clean) / on['clean']:.0f} answers/s, mixed {len(clean) / on['mixed']:.0f} "
          f"ordinary answers/s -> mixed/clean = {ratio_on:.3f} wall-clock, "
          f"{on['clean_cpu'] / on['mixed_cpu']:.3f} CPU time ({screened} hostile screened per mixed batch)")
    off = throughput(clean, mixed, args.timeout, workers, screen=False, repeat=1)
    print(f"without the screen: clean {len(clean) / off['clean']:.0f} answers/s, mixed {len(clean) / off['mixed']:.0f} "
          f"ordinary answers/s -> mixed/clean = {off['clean'] / off['mixed']:.3f} wall-clock")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"1-minute load average at the end: {load:.2f} (other processes skew wall-clock numbers)")
    failures = []
    if not worst_on < args.timeout:
        failures.append(f"screened burst took {worst_on:.2f}s >= one timeout")
    if ratio_on < 0.90:
        failures.append(f"screened mixed/clean throughput {ratio_on:.3f} < 0.90")
    if failures:
        sys.exit("FAIL: " + "; ".join(failures))


if __name__ == "__main__":
    main()
