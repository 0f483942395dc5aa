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
from typing import TYPE_CHECKING, Optional, Sequence

if TYPE_CHECKING:
    from longcot.study.spec import Study

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


def slurm_unavailable() -> Optional[str]:
    """Why jobs cannot be submitted to SLURM from here (no ``sbatch``, or no controller answers
    ``scontrol ping``), or None; asked before anything is written, so a refusal leaves nothing behind."""
    import shutil
    import subprocess

    if shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        return "cluster=slurm: SLURM's commands (sbatch, scontrol) are not on PATH; run on a login node, or cluster=local"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "cluster=slurm: no SLURM controller answered `scontrol ping` within 20 s; run on a login node, or cluster=local"
    if ping.returncode != 0 or " UP" not in ping.stdout:
        said = " ".join((ping.stdout.strip().splitlines() or ping.stderr.strip().splitlines() or ["no answer"])[:1])
        return (f"cluster=slurm: no SLURM controller answers (`scontrol ping`: {said}); run on a login node, "
                "or cluster=local")
    return None


def check_study(study: "Study") -> None:
    """The study file's own override lists, checked like the command line's (one line naming the list),
    and no ``stage=`` on the command line (a study sets each stage run's stage)."""
    from longcot.config.overrides import check_overrides
    from longcot.study.overrides import command_line

    where = f"experiments/{study.name}.yaml"
    check_overrides(study.base, f"{where} study.base")
    for stage, over in study.stages.items():
        check_overrides(over, f"{where} study.stages.{stage}")
    for point in study.points:
        for stage, over in point.stages.items():
            check_overrides(over, f"{where} point {point.name}, {stage}")
    staged = [o for o in command_line(study) if o.lstrip("+").startswith("stage=")]
    if staged:
        raise ValueError(f"{staged[0]}: a study sets the stage of each of its stage runs; drop it (the study "
                         f"{study.name} runs {', '.join(sorted({s for p in study.points for s in p.stages}))})")


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
        check_study(study)
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
                    out["footer"])
        return 0
    cluster = graph.ordered()[0].plan.cfg.cluster.name
    typed = [o for o in overrides if o.lstrip("+").startswith("cluster.local_workers=")]
    if cluster == "slurm" and typed:
        print(f"longcot: config error: {typed[0]}: runs a local study's parts in processes; with cluster=slurm "
              "SLURM runs every stage run as its own job (drop it)", file=sys.stderr)
        return 2
    if "--dry-run" in flags:
        from longcot.study.dryrun import dry_run

        dry_run(graph)
        return 0
    from longcot.study.overrides import print_changes

    print_changes(graph)
    if cluster == "slurm":
        from longcot.study.slurm import study_resources, submit, wait

        try:  # a stage's resources (cluster.stages.<stage>.*): a config error, found before SLURM is asked
            study_resources(graph)
        except ValueError as exc:
            print(f"longcot: config error: {' '.join(str(exc).split())}", file=sys.stderr)
            return 2
        problem = slurm_unavailable()
        if problem:
            print(f"longcot: error: {problem}", file=sys.stderr)
            return 1
        if study.local_workers > 1:  # said once SLURM answers: a refused submission stays one line
            print(f"study {study.name}: its cluster.local_workers={study.local_workers} is for local runs; on SLURM "
                  "every stage run is its own job")
        sub = submit(graph)
        print(f"study {study.name}: {len(sub.submitted)} jobs submitted, {len(sub.reused)} still queued/running, "
              f"{len(sub.done)} runs done; `longcot status {' '.join(overrides)}` shows progress")
        if "--wait" not in flags:
            return 0
        wait(graph, timeout_s=float("inf"))
    else:
        from longcot.study.parallel import Stopped, run_parallel

        try:
            outcome = run_parallel(graph, study.local_workers)
        except Stopped as exc:
            print(f"longcot: study {study.name} {exc}", file=sys.stderr)
            return 128 + 15
        print(f"study {study.name}: {len(outcome.done_before)} done, skipped; {len(outcome.ran)} ran; "
              f"{len(outcome.failed)} failed; {len(outcome.skipped)} not run (an upstream run failed)")
    from longcot.study.status import print_status

    states = print_status(graph)
    if all(s.state == "done" for s in states.values()):
        from longcot.study.collect import collect
        from longcot.stages.base import print_table

        out = collect(graph)
        print_table(f"longcot study {study.name}: results", out["columns"], out["body"],
                    out["footer"])
        return 0
    return 1
