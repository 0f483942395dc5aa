"""What the command line changed in a study: the rule is that the command line wins over the study's
``base``, ``stages`` and point values (:meth:`longcot.study.spec.Study.stage_overrides`); nothing it
sets is dropped, and the plan says, per stage run, every key whose value it changed.

Each stage of each point is composed twice, with and without the command line's overrides (besides
``+experiment=NAME``), and the keys those overrides name are compared. A key of a section only one
stage reads (``sft.*``; ``rl.*``, ``algorithm.*``, ``reward.*``; ``eval.*``, ``benchmark.*``;
``distill.*``, also read by an SFT that plans its own distillation) is listed for that stage only.
A command-line key that changes no stage run is named too (:func:`unused`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf

from longcot.study.spec import Point, Study, compose, is_experiment

# top-level sections read by one stage only (others -- model, data, generation, scale, ... -- by all)
READ_BY = {"distill": ("distill", "sft"), "sft": ("sft",), "rl": ("rl",), "algorithm": ("rl",), "reward": ("rl",),
           "eval": ("eval",), "benchmark": ("eval",)}


@dataclass(frozen=True)
class Change:
    """The command line set ``key`` to ``value`` where the study alone gives ``study_value``."""

    key: str
    study_value: Any
    value: Any

    def __str__(self) -> str:
        return f"{self.key}={_fmt(self.value)} (study: {_fmt(self.study_value)})"


def _fmt(value: Any) -> str:
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=False)
    if isinstance(value, dict) and "name" in value:
        return str(value["name"])
    return "null" if value is None else str(value)


def command_line(study: Study) -> list[str]:
    """The command line's overrides besides the experiment's name (``hydra.*`` excluded)."""
    return [o for o in study.overrides if not is_experiment(o) and not o.lstrip("+~").startswith("hydra")]


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0].replace("/", ".")


def _select(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=None, throw_on_missing=False)


def stage_changes(study: Study, point: Point, stage: str, cfg: Optional[DictConfig] = None) -> list[Change]:
    """Every key the command line changed in ``stage`` of ``point`` (see the module docstring)."""
    keys = list(dict.fromkeys(_key(o) for o in command_line(study)))
    if not keys:
        return []
    cfg = cfg if cfg is not None else compose(study.stage_overrides(point, stage))
    own = compose(study.stage_overrides(point, stage, command_line=False))
    out = []
    for key in keys:
        readers = READ_BY.get(key.split(".")[0])
        if readers is not None and stage not in readers:
            continue
        if key.startswith("distill") and stage == "sft" and "distill" in point.stages:
            continue  # the point's own distill stage is the SFT's upstream
        new, old = _select(cfg, key), _select(own, key)
        if new != old:
            out.append(Change(key, old, new))
    return out


def summary(study: Study, changes: dict[str, list[Change]]) -> tuple[list[Change], dict[str, list[Change]], list[str]]:
    """(changes common to every stage run, the other changes per run key, command-line keys that
    change no stage run)."""
    runs = [set(map(str, cs)) for cs in changes.values()]
    common_text = set.intersection(*runs) if runs else set()
    common = list({str(c): c for cs in changes.values() for c in cs if str(c) in common_text}.values())
    per_run = {k: [c for c in cs if str(c) not in common_text] for k, cs in changes.items()}
    used = {c.key for cs in changes.values() for c in cs}
    unused = [k for k in dict.fromkeys(_key(o) for o in command_line(study)) if k not in used]
    return common, {k: v for k, v in per_run.items() if v}, unused


def lines(study: Study, changes: dict[str, list[Change]]) -> list[str]:
    """The changes as lines for the plan (before the runs are listed)."""
    common, _, unused = summary(study, changes)
    out = []
    if common:
        out.append(f"command line, in every stage run: {', '.join(map(str, common))}")
    if any(changes.values()) and not common:
        out.append("command line: changes listed under each stage run it changes")
    out += [f"command line: {k} changes no stage run of study {study.name} (no stage of it reads it, or it already "
            "has this value)" for k in unused]
    return out


def written_lines(study: Study, changes: dict[str, list[Change]]) -> list[str]:
    """The command line's changes as markdown for the files ``collect`` writes (``report.md``,
    ``seeds.md``): a report of a seed subset or of changed settings says so at its top, and sits in its
    own folder (:func:`variant`) ([] when the command line changed nothing)."""
    common, per_run, unused = summary(study, changes)
    if not (common or per_run or unused):
        return []
    out = ["Written under these command-line changes to the study file:", ""]
    if common:
        out.append(f"- in every stage run: {', '.join(map(str, common))}")
    out += [f"- {key}: {', '.join(map(str, cs))}" for key, cs in per_run.items()]
    out += [f"- {key}: changes no stage run" for key in unused]
    return [*out, ""]


# command-line keys that change where runs live or how they are scheduled, not what a study computes
WHERE_NOT_WHAT = ("output_root", "torch_threads", "cluster", "logger")


def variant(changes: dict[str, list[Change]]) -> str:
    """A short name for the command line's changes that alter what the study computes or reports (seeds,
    points, settings; not :data:`WHERE_NOT_WHAT`), "" when there are none. ``collect`` writes such a
    variant's files beside the study's own (``studies/<name>/variants/<this>/``), so an ad-hoc rerun never
    replaces the report, seeds table or figures of the study as written."""
    typed = sorted({str(c) for cs in changes.values() for c in cs if c.key.split(".")[0] not in WHERE_NOT_WHAT})
    return hashlib.sha256("\n".join(typed).encode()).hexdigest()[:10] if typed else ""


def print_changes(graph: Any) -> None:
    """The command line's changes before a study runs: the common ones, then per stage run."""
    common_lines = lines(graph.study, graph.changes)
    per_run = summary(graph.study, graph.changes)[1]
    for line in common_lines:
        print(line)
    for key, cs in per_run.items():
        print(f"  {key}: {', '.join(map(str, cs))}")
