"""Wall time of each CPU twin study, and the share of each stage (distill / sft / rl / eval).

Runs each study locally into a fresh output folder (``longcot +experiment=NAME``, extra overrides
passed through, e.g. ``study.seeds=[0]``), then reads every stage run's log (the driver's
``jobs/<stage>/<run>/local.log``: first and last record) for its wall time. Prints, per study, the
total wall time of the command and each stage's seconds as a share of the summed stage time (the
baseline of the same run); what is left is planning, composition and collect.

    python tests/perf/bench_twin_studies.py twin_fig1_sft_scaling twin_sec4_cosine_vs_classic -- study.seeds=[0]
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ("distill", "sft", "rl", "eval")


def _stamp(line: str) -> dt.datetime:
    return dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


def stage_seconds(root: Path) -> dict[str, float]:
    out = dict.fromkeys(STAGES, 0.0)
    for stage in STAGES:
        for log in (root / "jobs" / stage).glob("*/local.log"):
            lines = [x for x in log.read_text().splitlines() if x[:4].isdigit()]
            if lines:
                out[stage] += (_stamp(lines[-1]) - _stamp(lines[0])).total_seconds()
    return out


def main(argv: list[str]) -> int:
    studies, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    if not studies:
        print(__doc__)
        return 2
    for name in studies:
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
            t0 = time.perf_counter()
            proc = subprocess.run(["longcot", f"+experiment={name}", f"output_root={tmp}", *extra],
                                  capture_output=True, text=True)
            wall = time.perf_counter() - t0
            secs = stage_seconds(Path(tmp))
            total = sum(secs.values()) or 1.0
            shares = ", ".join(f"{s} {secs[s]:.0f}s ({secs[s] / total:.0%})" for s in STAGES)
            state = "ok" if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"
            print(f"{name}: {wall:.0f}s wall ({state}); stages {total:.0f}s = {shares}; "
                  f"other (plan, compose, collect) {max(0.0, wall - total):.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
