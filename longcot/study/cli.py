"""The study commands of ``longcot`` (wired into :func:`longcot.cli.main` by :func:`maybe_study`):

    longcot [-m] +experiment=NAME [overrides] [--dry-run]   # run the study (locally, or cluster=slurm)
    longcot status +experiment=NAME [overrides]             # points x stages: done/running/pending/failed
    longcot collect +experiment=NAME [overrides]            # results.md/.csv beside the paper, figures

A run composes each stage run from the command line's overrides, ``study.base``,
``study.stages[S]`` and the point's overrides (:mod:`longcot.study.spec`), plans the graph
(:mod:`longcot.study.graph`), then runs it in dependency order here (``cluster=local``) or submits it
to SLURM with afterok dependencies (``cluster=slurm``; ``--wait`` blocks until the jobs end).
Exit codes: 0 ok, 1 a run failed, 2 a config error (one line naming the key).
"""

from __future__ import annotations

import logging
import sys
from typing import Optional, Sequence

COMMANDS = ("status", "collect")
FLAGS = ("-m", "--multirun", "--dry-run", "--wait")


def _is_study(overrides: Sequence[str]) -> bool:
    return any(o.lstrip("+").startswith("experiment=") for o in overrides)


def maybe_study(argv: Sequence[str]) -> Optional[int]:
    """The exit code of a study command, or None when ``argv`` is not one (the normal Hydra app runs)."""
    argv = list(argv)
    command = argv.pop(0) if argv and argv[0] in COMMANDS else None
    if any(a.startswith("-") and a not in FLAGS for a in argv):
        return None  # --cfg, --help, ...: Hydra's
    overrides = [a for a in argv if a not in FLAGS]
    if not _is_study(overrides):
        if command:
            print(f"longcot {command}: name the study: longcot {command} +experiment=NAME", file=sys.stderr)
            return 2
        return None
    from longcot.study.spec import compose

    try:
        cfg = compose(overrides)
    except ValueError as exc:
        print(f"longcot: config error: {exc}", file=sys.stderr)
        return 2
    if not cfg.study.name:
        if command:
            print(f"longcot {command}: {overrides} is not a study (no study.name in the experiment)", file=sys.stderr)
            return 2
        return None
    return main([*([command] if command else []), *argv])


def main(argv: Sequence[str]) -> int:
    """``[status|collect] +experiment=NAME [overrides] [-m] [--dry-run] [--wait]``."""
    argv = list(argv)
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "run"
    flags = {a for a in argv if a in FLAGS}
    overrides = [a for a in argv if a not in FLAGS]
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from longcot.study.graph import build_graph
    from longcot.study.spec import load_study

    try:
        study = load_study(overrides)
        graph = build_graph(study)
    except (ValueError, FileNotFoundError) as exc:
        print(f"longcot: config error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    if command == "status":
        from longcot.study.status import print_status

        states = print_status(graph)
        return 1 if any(s.state == "failed" for s in states.values()) else 0
    if command == "collect":
        from longcot.stages.base import print_table
        from longcot.study.collect import collect

        out = collect(graph)
        print_table(f"longcot study {study.name}: results", out["columns"], out["body"],
                    [f"written: {out['markdown']}, {out['csv']}", *[f"figure: {f}" for f in out["figures"]]])
        return 0
    if "--dry-run" in flags:
        from longcot.study.dryrun import dry_run

        dry_run(graph)
        return 0
    cluster = graph.ordered()[0].plan.cfg.cluster.name
    if cluster == "slurm":
        from longcot.study.slurm import submit, wait

        sub = submit(graph)
        print(f"study {study.name}: {len(sub.submitted)} jobs submitted, {len(sub.reused)} still queued/running, "
              f"{len(sub.done)} runs done; `longcot status {' '.join(overrides)}` shows progress")
        if "--wait" not in flags:
            return 0
        wait(graph, timeout_s=float("inf"))
    else:
        from longcot.study.local import run_local

        run_local(graph)
    from longcot.study.status import print_status

    states = print_status(graph)
    if all(s.state == "done" for s in states.values()):
        from longcot.study.collect import collect
        from longcot.stages.base import print_table

        out = collect(graph)
        print_table(f"longcot study {study.name}: results", out["columns"], out["body"],
                    [f"written: {out['markdown']}, {out['csv']}", *[f"figure: {f}" for f in out["figures"]]])
        return 0
    return 1
