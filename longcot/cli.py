"""The ``longcot`` command: compose a run from ``conf/`` with Hydra, plan its stage, run it.

    longcot                                   # the embedded CPU default (tiny model, eval)
    longcot model=qwen2.5-math-7b generation=vllm benchmark=aime24
    longcot +experiment=NAME                  # an ablation grid from experiments/
    longcot -m +experiment=NAME cluster=slurm # a study: its stage graph, each stage run a SLURM job
    longcot status +experiment=NAME           # a study's points x stages; collect: its results

Config errors (an unknown key, value or option) exit 2 with one line naming the key; errors while
running (a malformed data line, a missing model) exit 1 with one line. ``HYDRA_FULL_ERROR=1`` or
``LONGCOT_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import logging
import os
import sys

import hydra
from omegaconf import DictConfig

from longcot.config.loading import CONF_DIR
from longcot.config.schema import register_configs

log = logging.getLogger("longcot")
register_configs()


def debug() -> bool:
    return any(os.environ.get(v, "") not in ("", "0") for v in ("HYDRA_FULL_ERROR", "LONGCOT_DEBUG"))


def fail(kind: str, exc: BaseException, code: int) -> None:
    """Print ``exc`` as one line (the traceback with HYDRA_FULL_ERROR=1 / LONGCOT_DEBUG=1) and exit."""
    if debug():
        raise exc
    message = " ".join(str(exc).split()) or type(exc).__name__
    print(f"longcot: {kind}: {message}", file=sys.stderr)
    sys.exit(code)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _main(cfg: DictConfig) -> object:
    from hydra.core.hydra_config import HydraConfig

    from longcot.config.validate import validate
    from longcot.stages import plan_all, plan_follow_ups, run_all, run_follow_ups

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from longcot.training.distributed import detect

    if not detect().is_main:  # one process of a multi-process job (torchrun / srun): rank 0 logs the run
        logging.getLogger("longcot").setLevel(logging.WARNING)
    try:
        validate(cfg, HydraConfig.get().launcher.get("_target_"))
        plans = plan_all(cfg)  # the stage's own checks and identities, before anything runs
        follow = plan_follow_ups(plans)  # <stage>.eval_benchmarks: eval runs of the final checkpoint
    except (ValueError, FileNotFoundError) as exc:  # ConfigError, the stages' checks, a missing file
        fail("config error", exc, 2)
    for p in follow:
        log.info("after training: eval of %s on %s -> %s (%s)", p.upstream[-1].run_dir.name, p.cfg.benchmark.name,
                 p.run_dir, "done" if p.done else "to run")
    try:
        results = run_all(plans)
        run_follow_ups(follow)
        return results
    except (ValueError, OSError, RuntimeError, KeyError) as exc:
        fail("error", exc, 1)
    return None


HELP = {
    "run": """usage: longcot [KEY=VALUE | GROUP=OPTION ...]                 one stage run (default: eval of the tiny model)
       longcot [-m] +experiment=NAME [overrides] [--dry-run] [--wait]   a study: its whole stage graph
       longcot status  +experiment=NAME [overrides]              a study's points x stages
       longcot collect +experiment=NAME [overrides]              a study's results table and figures

Compose a run from conf/ (groups: model data reward algorithm benchmark generation cluster logger
stage scale) and experiments/ (+experiment=NAME), plan it, run it. Examples:
  longcot benchmark=aime24 benchmark.limit=5          any field can be overridden
  longcot stage=sft +experiment=demo_cpu_sft          a stage with an experiment's settings
  longcot +experiment=demo                            the main job: the CPU twin of Fig. 1 (about 10 minutes)
  longcot +experiment=fig1_sft_scaling --dry-run      the plan: runs, dependencies, GPU-hours
In a study the command line wins over the study's base, stage and point values; the plan lists, per
stage run, every key it changed. scale=smoke (the default) caps each stage's work and names every cap;
scale=full removes the caps.

flags:  --dry-run  plan a study, run nothing      --wait  (cluster=slurm) block until the jobs end
        -m         Hydra multirun (a study on cluster=slurm; flat sweeps a=1,2)
        --cfg job  print the composed config      --hydra-help  Hydra's own help
exit codes: 0 ok; 1 a run failed (one line; LONGCOT_DEBUG=1 shows the traceback); 2 a config error
(one line naming the key, the valid values, a "did you mean").
More: `longcot status --help`, `longcot collect --help`, README.md.""",
    "status": """usage: longcot status +experiment=NAME [overrides]

One row per grid point of the study, one column per stage: done, running, interrupted (with the step
reached), pending or failed, with the SLURM job id or the local log. The overrides must be the ones
the study was launched with (they are part of each run's identity). Nothing runs.
exit codes: 0 no run failed; 1 a run failed; 2 a config error.""",
    "collect": """usage: longcot collect +experiment=NAME [overrides]

Write <output_root>/studies/NAME/: results.md and results.csv (one row per point and benchmark,
beside the paper's numbers) and the figures; print the table. Runs not finished show as "not run".
The overrides must be the ones the study was launched with. Overrides that change what the study
computes (seeds, points, settings; not output_root, torch_threads, cluster.*, logger) write to
<output_root>/studies/NAME/variants/KEY/ instead, the changes listed at the top of its report.md, so
the study's own files are never replaced. Nothing runs.
exit codes: 0 ok; 2 a config error.""",
}
def _usage_error(message: str) -> None:
    print(f"longcot: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    from longcot.config.overrides import did_you_mean
    from longcot.study.cli import COMMANDS, maybe_study

    from longcot.progress import quiet_libraries

    quiet_libraries()  # off a terminal: the libraries' progress bars off, ours one line per interval
    argv = sys.argv[1:]
    command = argv[0] if argv and argv[0] in COMMANDS else None
    if "-h" in argv or "--help" in argv:
        print(HELP[command or "run"])
        if command is None:
            from longcot.config.loading import group_options

            print(f"experiments (+experiment=NAME): {', '.join(group_options('experiment'))}")
        sys.exit(0)
    words = [a for a in argv[1 if command else 0:] if "=" not in a and not a.startswith(("-", "+", "~"))]
    after_flag = {argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--cfg", "-c", "--info", "-i", "--package", "-p",
                                                                        "--config-name", "-cn", "--config-path", "-cp",
                                                                        "--config-dir", "-cd")}
    stray = [w for w in words if w not in after_flag]
    if stray:
        _usage_error(f"{stray[0]!r}: not a command or an override{did_you_mean(stray[0], COMMANDS)} "
                     "(commands: status, collect; overrides: KEY=VALUE, GROUP=OPTION; see longcot --help)")
    try:
        from longcot.config.overrides import check_overrides

        check_overrides([a for a in argv if "=" in a and not a.startswith("-") or a.startswith("~")])
    except ValueError as exc:
        fail("config error", exc, 2)
    code = maybe_study(argv)  # a study (+experiment=NAME with study.name), status or collect
    if code is not None:
        sys.exit(code)
    if {"-m", "--multirun"} & set(argv) and "cluster=slurm" in argv:  # Hydra's submitit launcher
        from longcot.study.cli import slurm_unavailable

        problem = slurm_unavailable()
        if problem:
            print(f"longcot: error: {problem}", file=sys.stderr)
            sys.exit(1)
    _main()
