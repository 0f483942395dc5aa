"""Wall time of each CPU twin study, and the share of each stage (distill / sft / rl / eval).

Two modes:

* run (default): runs each study into a fresh output folder (``python -m longcot +experiment=NAME``,
  overrides after ``--`` passed through, e.g. ``study.seeds=[0]``) and times the command; the baseline
  of the ratio is the summed logged time of the stage runs that study plans there, so the rest is
  planning, composition and collect (runs another study wrote into a ``--keep`` folder meanwhile are
  not counted).
* ``--from ROOT``: runs nothing; plans each study against an output root where its runs already ran
  and reads the driver's log of every stage run (``<root>/jobs/<stage>/<run>/local.log``, first and
  last record: the last local attempt). Runs that shared the cores with others were slower than alone,
  so this is what was logged, not what a study costs on an idle machine.

    python tests/perf/bench_twin_studies.py twin_fig1_sft_scaling -- 'study.seeds=[0]'
    python tests/perf/bench_twin_studies.py --keep /data/findings twin_findings   # its runs kept for collect
    python tests/perf/bench_twin_studies.py --from /work/twinruns twin_all
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Optional

STAGES = ("distill", "sft", "rl", "eval")


def _stamp(line: str) -> dt.datetime:
    return dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


def log_seconds(log: Path) -> Optional[float]:
    """Seconds between the first and last timestamped record of a driver log; None if it has none."""
    if not log.is_file():
        return None
    lines = [x for x in log.read_text(errors="replace").splitlines() if x[:4].isdigit() and x[4:5] == "-"]
    return (_stamp(lines[-1]) - _stamp(lines[0])).total_seconds() if lines else None


def planned_seconds(name: str, root: Path, overrides: list[str]) -> tuple[dict[str, float], int, int]:
    """Per stage, the logged seconds of the runs study ``name`` plans under ``root``; and how many
    of its runs there are, and how many have no log (not run here, or run by SLURM)."""
    from longcot.study import records
    from longcot.study.graph import build_graph
    from longcot.study.spec import load_study

    graph = build_graph(load_study([f"+experiment={name}", f"output_root={root}", *overrides]))
    out = dict.fromkeys(STAGES, 0.0)
    missing = 0
    for node in graph.ordered():
        secs = log_seconds(records.local_log(node.plan))
        if secs is None:
            missing += 1
        else:
            out[node.stage] += secs
    return out, len(graph.nodes), missing


def shares(secs: dict[str, float]) -> str:
    total = sum(secs.values()) or 1.0
    return ", ".join(f"{s} {secs[s] / 60:.1f} min ({secs[s] / total:.0%})" for s in STAGES)


def main(argv: list[str]) -> int:
    studies, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="overrides for every study go after '--'")
    ap.add_argument("studies", nargs="+", help="experiment names, e.g. twin_fig1_sft_scaling")
    ap.add_argument("--from", dest="root", type=Path, default=None,
                    help="read the logged times of runs already under this output root; run nothing")
    ap.add_argument("--keep", type=Path, default=None,
                    help="run mode: use this new (absent or empty) output root and keep it, instead of a temp folder")
    args = ap.parse_args(studies)
    if args.keep is not None and (args.root is not None or len(args.studies) > 1 or args.keep.is_file()
                                  or (args.keep.is_dir() and any(args.keep.iterdir()))):
        print(f"--keep {args.keep}: must be a new or empty folder, for one study, without --from", file=sys.stderr)
        return 2
    for name in args.studies:
        if args.root is not None:
            try:
                secs, n, missing = planned_seconds(name, args.root, extra)
            except (ValueError, FileNotFoundError) as exc:
                print(f"{name}: config error: {' '.join(str(exc).split())}", file=sys.stderr)
                return 2
            total = sum(secs.values())
            print(f"{name}: {n} stage runs, {n - missing} logged, {missing} without a log; logged "
                  f"{total / 60:.1f} min = {shares(secs)}", flush=True)
            continue
        with (nullcontext(str(args.keep)) if args.keep else tempfile.TemporaryDirectory(prefix=f"bench-{name}-")) as tmp:
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "longcot", f"+experiment={name}", f"output_root={tmp}",
                                   *extra], capture_output=True, text=True)
            wall = time.perf_counter() - t0
            try:
                secs = planned_seconds(name, Path(tmp), extra)[0]
            except (ValueError, FileNotFoundError):  # the run itself failed on its config: its error is below
                secs = dict.fromkeys(STAGES, 0.0)
            total = sum(secs.values())
            state = "ok" if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"
            print(f"{name}: {wall / 60:.1f} min wall ({state}); stages {total / 60:.1f} min = {shares(secs)}; "
                  f"wall - stages {(wall - total) / 60:+.1f} min (plan, compose, collect; below 0 where stages overlap); "
                  f"wall / stages {wall / (total or 1.0):.2f}x (below 1: stages ran in parallel processes)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
