"""The stage protocol: ``plan -> run -> artifacts`` (after Dora's "identity = hash of the config that
matters"; see the README's "Stages" section).

A stage is a module with three functions:

* ``plan(cfg, upstream=()) -> Plan``: validates ``cfg`` and resolves the run's identity and directory,
  with no side effects (nothing is written, no model is loaded). The identity holds everything that
  changes the output -- including the content digests of the data and model it reads and the run ids
  of its ``upstream`` plans -- and nothing that does not.
* ``run(plan) -> Artifacts``: does the work, idempotently: a finished run is read back, a partial one
  resumes inside its run directory. Runs of one directory are serialised by a lock.
* ``artifacts(run_dir) -> Artifacts``: reads a finished run.

The steps every stage shares live here once: the run lock, the config and environment snapshots, the sweep of stale
temporary files, the cleanup of a run that failed before finishing anything, the tracker, the scale
notes (what ``scale=smoke`` capped) and the result table.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from omegaconf import DictConfig, OmegaConf

from longcot import environment, runs

log = logging.getLogger(__name__)
LOCK = ".run.lock"
CONFIG = "config.yaml"
SNAPSHOTS = (CONFIG, environment.FILE, LOCK)  # what a run writes before any output


@dataclass(frozen=True)
class Plan:
    """One unit of work of a stage, resolved before anything runs.

    ``identity`` is what defines the output (its hash is ``run_id``); ``run_dir`` is where the output
    goes (``DONE`` there marks it finished); ``upstream`` the plans whose outputs it reads; ``notes``
    what the run must be told (scale caps, overrides) -- logged as warnings and kept in the outputs;
    ``detail`` stage-specific resolved settings (e.g. distill's teacher plan).
    """

    stage: str
    cfg: DictConfig
    identity: dict[str, Any]
    run_dir: Path
    upstream: tuple["Plan", ...] = ()
    notes: tuple[str, ...] = ()
    detail: Any = None

    @property
    def run_id(self) -> str:
        return runs.config_hash(self.identity)

    @property
    def done(self) -> bool:
        return runs.is_done(self.run_dir)


@dataclass
class Artifacts:
    """What a finished (or, with ``done=False``, a pending) run produced: its directory, named
    output paths and a JSON-able summary."""

    stage: str
    run_dir: Path
    summary: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    done: bool = True


def upstream_identity(upstream: Sequence[Plan]) -> list[dict[str, str]]:
    """What a plan's identity records of its upstream: each one's stage and run id."""
    return [{"stage": p.stage, "run_id": p.run_id} for p in upstream]


def warn_notes(plan: Plan) -> None:
    for note in plan.notes:
        log.warning(note)


# --------------------------------------------------------------------------- running a plan
@contextmanager
def run_lock(run_dir: Path, what: str = "run", name: str = LOCK) -> Iterator[None]:
    """An exclusive lock on ``run_dir`` (lock file ``name`` in it): a second identical run waits,
    saying so, then finds the work done. The lock file holds the owner's host and pid."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / name
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            owner = fh.read().strip() or "another process"
            log.warning("%s %s is in progress (%s); waiting for it to finish", what, run_dir, owner)
            t0 = time.monotonic()
            fcntl.flock(fh, fcntl.LOCK_EX)
            log.info("lock on %s acquired after %.0fs", run_dir, time.monotonic() - t0)
        fh.seek(0)
        fh.truncate()
        fh.write(f"host {os.uname().nodename} pid {os.getpid()}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def sweep_temp_files(directory: Path) -> int:
    """Remove temporary files left by killed atomic writes (``.<name>.*.tmp``, see
    :func:`longcot.runs.atomic_path`) and temporary checkpoint directories below ``directory``.
    Call only while holding the directory's lock (no other writer is active there)."""
    removed = 0
    if not directory.is_dir():
        return 0
    for path in directory.rglob(".*.tmp"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    if removed:
        log.info("removed %d stale temporary file(s) under %s", removed, directory)
    return removed


def set_threads(cfg: DictConfig) -> None:
    """``torch_threads`` (a resource setting of the run) applied to torch."""
    if cfg.get("torch_threads"):
        import torch

        torch.set_num_threads(int(cfg.torch_threads))


@contextmanager
def running(plan: Plan, keep: Sequence[str] = ()) -> Iterator[Path]:
    """The shared frame of ``run``: lock, sweep stale temp files, snapshot the config and append the
    environment (:mod:`longcot.environment`), warn the notes; on failure, remove the run directory if
    nothing in it but those snapshots and the lock (and the names in ``keep``) was written. In a multi-process job only rank 0 does these."""
    from longcot.training.distributed import detect

    run_dir = plan.run_dir
    existed = run_dir.exists()
    set_threads(plan.cfg)
    if not detect().is_main:
        # Another process of a multi-process training job (torchrun / srun): rank 0 holds the lock,
        # sweeps and snapshots; this rank only trains (it writes through rank-aware checkpoints).
        run_dir.mkdir(parents=True, exist_ok=True)
        yield run_dir
        return
    with run_lock(run_dir, f"{plan.stage} run"):
        sweep_temp_files(run_dir)
        runs.write_text(run_dir / CONFIG, OmegaConf.to_yaml(OmegaConf.create(
            {"identity": plan.identity, "notes": list(plan.notes)})))
        if plan.cfg.get("force") or not runs.is_done(run_dir):  # not a waiter that finds the work done
            environment.record(run_dir)
        try:
            yield run_dir
        except BaseException:
            remove_if_unused(run_dir, existed, keep, root=Path(plan.cfg.output_root))
            raise


def finish_training_run(run_dir: Path, summary_name: str, summary: dict[str, Any]) -> None:
    """A training stage's last writes: rank 0 writes the summary, then DONE; every rank of a
    multi-process job waits there, so all of them then read a finished run."""
    from longcot.training.distributed import barrier, detect

    if detect().is_main:
        runs.write_json(run_dir / summary_name, summary)
        runs.mark_done(run_dir)
    barrier()


def remove_if_unused(run_dir: Path, existed: bool, keep: Sequence[str] = (), root: Path | None = None) -> None:
    """After a failure: remove ``run_dir`` if this run created it and wrote nothing in it but its
    config and environment snapshots and lock (and the names in ``keep``), so no empty run looks like a real one;
    then the parents it leaves empty, up to ``root``."""
    leftover = {p.name for p in run_dir.iterdir()} - {*SNAPSHOTS, *keep} if run_dir.is_dir() else set()
    if existed or leftover:
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    parent = run_dir.parent
    while root is not None and parent != root and parent.is_relative_to(root):
        try:
            parent.rmdir()  # only when empty
        except OSError:
            break
        parent = parent.parent


@contextmanager
def tracking(cfg: DictConfig, name: str, run_dir: Path, identity: dict[str, Any]) -> Iterator[Any]:
    """The experiment tracker of a run (``logger=none``: a no-op), finished whatever happens."""
    from longcot.tracking import Tracker

    tracker = Tracker(cfg.logger, name, run_dir, identity)
    try:
        yield tracker
    finally:
        tracker.finish()


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], footer: Sequence[str] = ()) -> None:
    """A right-aligned rich table (never squeezed below 110 columns when piped; a long cell wraps, it is
    never cut with an ellipsis), then footer lines."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right", overflow="fold")
    for row in rows:
        table.add_row(*[str(v) for v in row])
    console = Console(width=max(Console().width, 110))
    console.print(table)
    for line in footer:
        console.print(line)


# Generation settings that change what distill and eval generate. Not resources (memory fractions) and
# not generation.batch_size: outputs were byte-identical at batch sizes 3, 16 and 64 (tiny model, 40 toy
# problems x 4 samples x 64 tokens, CPU; README "Run identity").
GENERATION_KEYS = ("backend", "tensor_parallel_size", "enforce_eager", "style", "error_rate")


def generation_identity(cfg: DictConfig) -> dict[str, Any]:
    """The engine settings that change what a distill or eval run generates: the keys above, the
    device for a real engine (sampling streams differ between CPU and CUDA), and the synthetic twin
    teacher's ``giveup_rate`` when it is not the built-in rate and its ``recheck_rate`` when it is not 0
    (absent = the rates every run before the keys were added used, so their identities stand)."""
    from longcot.generation.search_teacher import GIVEUP_RATE

    gen: dict[str, Any] = {k: cfg.generation[k] for k in GENERATION_KEYS}
    if cfg.generation.backend != "synthetic":
        gen["device"] = identity_device(cfg)
    else:
        if float(cfg.generation.giveup_rate) != GIVEUP_RATE:
            gen["giveup_rate"] = float(cfg.generation.giveup_rate)
        if float(cfg.generation.recheck_rate) != 0.0:
            gen["recheck_rate"] = float(cfg.generation.recheck_rate)
    return gen


def identity_device(cfg: DictConfig, setting: str | None = None) -> str:
    """The device a run uses, for its identity (CPU and CUDA kernels compute differently):
    ``setting`` (default ``generation.device``) as set (``cuda:1`` -> ``cuda``); ``auto`` resolves from
    the cluster the run goes to (SLURM: ``cuda`` when the stage's GPUs per node, ``cluster.stages.<stage>``
    else ``cluster``, are > 0), else from this machine. It never imports an engine, so a login node
    plans the identities a GPU node will run."""
    device = str(cfg.generation.device if setting is None else setting).split(":")[0]
    if device != "auto":
        return device
    if cfg.cluster.name == "slurm":
        stage = cfg.get("stage") or {}
        per_stage = (cfg.cluster.get("stages") or {}).get(str(stage.get("name", ""))) or {}
        gpus = per_stage.get("gpus_per_node", cfg.cluster.gpus_per_node)
        return "cuda" if gpus and gpus > 0 else "cpu"
    from longcot.models.loading import resolve_device

    return resolve_device("auto").split(":")[0]


# --------------------------------------------------------------------------- the model a stage reads
TRAINING_STAGES = ("sft", "rl")
# a training stage's final HF checkpoint, relative to its run directory
FINAL_MODEL = {"sft": Path("final") / "model", "rl": Path("final") / "actor"}


def trained_by(upstream: Sequence[Plan]) -> Plan | None:
    """The last training plan upstream (its final checkpoint is the model this stage reads), or None."""
    trained = [p for p in upstream if p.stage in TRAINING_STAGES]
    return trained[-1] if trained else None


def model_identity(model_cfg: Any, upstream: Sequence[Plan] = ()) -> dict[str, Any]:
    """What identifies the model a stage reads: the producing training run's id when the model is an
    upstream checkpoint (it does not exist yet when the stage is planned), else the model's content
    (:func:`longcot.models.fingerprint.model_identity`: weights, config, tokenizer, revision)."""
    producer = trained_by(upstream)
    if producer is not None:
        return {"checkpoint_of": {"stage": producer.stage, "run_id": producer.run_id}}
    from longcot.models.fingerprint import model_identity as content_identity

    return content_identity(model_cfg)


def generator_model_identity(cfg: DictConfig, upstream: Sequence[Plan] = ()) -> dict[str, Any]:
    """The model's part of a generating stage's identity (distill, eval). The synthetic backend writes
    its text itself and reads only the model's name (:func:`longcot.generation.synthetic.build`; the
    name is written into the outputs), so its runs hash the name alone: the same text from any weights
    is the same run. Every other backend reads the model: :func:`model_identity`."""
    if cfg.generation.backend == "synthetic":
        return {"name": str(cfg.model.name), "read_by": "synthetic"}
    return model_identity(cfg.model, upstream)


def model_at_run(model_cfg: Any, upstream: Sequence[Plan] = ()) -> DictConfig:
    """The model config a run loads: ``model_cfg``, pointed at the upstream training run's final
    checkpoint when there is one (its load-time RoPE scaling is already in that checkpoint's config)."""
    node = OmegaConf.create(OmegaConf.to_container(model_cfg, resolve=True))
    producer = trained_by(upstream)
    if producer is not None:
        node.path = str(producer.run_dir / FINAL_MODEL[producer.stage])
        node.tokenizer = None
        node.revision = None
        # The checkpoint's config.json already holds the overrides its training loaded with (the RoPE
        # theta scaled by rope_theta_scale): scaling again would multiply theta twice.
        node.rope_theta_scale = 1.0
    return node
