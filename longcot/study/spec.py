"""A study (an ``experiments/`` file with ``study.name`` set): grid points, each a chain of stage runs
distill -> sft -> rl -> eval (any prefix or suffix), composed with Hydra's compose API.

The config of stage ``S`` of a point is the root config composed with, in order: the command line's
overrides (with ``+experiment=NAME``), ``study.base``, ``study.stages[S]``, ``point[S]`` and
``stage=S`` (later overrides win). A point lists the stages it runs; ``[]`` means base + stage
overrides only.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

STAGE_ORDER = ("distill", "sft", "rl", "eval")


@dataclass(frozen=True)
class Point:
    """One grid point: its name and, per stage it runs (in chain order), that stage's overrides."""

    name: str
    stages: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class Study:
    """A parsed ``study:`` section and the command-line overrides it was composed with."""

    name: str
    description: str
    overrides: tuple[str, ...]
    base: tuple[str, ...]
    stages: dict[str, tuple[str, ...]]
    points: tuple[Point, ...]
    paper: dict[str, Any] = field(default_factory=dict)
    output_root: str = "runs"

    def stage_overrides(self, point: Point, stage: str) -> list[str]:
        """The overrides that compose ``stage`` of ``point`` (command line < base < stage < point)."""
        return [*self.overrides, *self.base, *self.stages.get(stage, ()), *point.stages[stage], f"stage={stage}"]

    def point(self, name: str) -> Point:
        for p in self.points:
            if p.name == name:
                return p
        raise ValueError(f"study {self.name}: no point {name!r}; valid: {', '.join(p.name for p in self.points)}")


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, ListConfig):
        value = OmegaConf.to_container(value, resolve=False)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key}: must be a list of override strings (e.g. [\"sft.epochs=1\"]), got {value!r}")
    return tuple(value)


def parse_study(cfg: DictConfig, overrides: Sequence[str] = ()) -> Study:
    """The ``study:`` section of a composed config, checked (one line naming the key on an error)."""
    s = cfg.study
    if not s.name:
        raise ValueError("study.name: not set; this config is not a study (an experiments/ file with a study: section)")
    stages = {}
    for stage in s.stages:
        if stage not in STAGE_ORDER:
            raise ValueError(f"study.stages.{stage}: unknown stage; valid: {', '.join(STAGE_ORDER)}")
        stages[stage] = _strings(s.stages[stage], f"study.stages.{stage}")
    points, names = [], set()
    for i, raw in enumerate(s.points):
        if not isinstance(raw, DictConfig) or not raw.get("name"):
            raise ValueError(f"study.points[{i}]: each point is a mapping with a name and its stages "
                             f"({', '.join(STAGE_ORDER)})")
        name = str(raw.name)
        if name in names:
            raise ValueError(f"study.points[{i}].name={name!r}: duplicate point name")
        names.add(name)
        unknown = [k for k in raw if k not in ("name", *STAGE_ORDER)]
        if unknown:
            raise ValueError(f"study.points[{i}] ({name}): unknown key {unknown[0]!r}; valid: name, {', '.join(STAGE_ORDER)}")
        chain = {st: _strings(raw[st], f"study.points[{i}].{st}") for st in STAGE_ORDER if st in raw}
        if not chain:
            raise ValueError(f"study.points[{i}] ({name}): lists no stage; valid: {', '.join(STAGE_ORDER)}")
        points.append(Point(name, chain))
    if not points:
        raise ValueError(f"study.points: study {s.name} has no grid point")
    paper = OmegaConf.to_container(s.paper, resolve=True) if s.paper is not None else {}
    for point in paper:
        if point not in names:
            raise ValueError(f"study.paper.{point}: not a point of the study; valid: {', '.join(sorted(names))}")
    return Study(str(s.name), str(s.description or ""), tuple(overrides), _strings(s.base, "study.base"), stages,
                 tuple(points), paper, str(cfg.output_root))


@contextmanager
def hydra_context() -> Iterator[None]:
    """Hydra's compose API on ``conf/`` (re-entrant: an initialised global Hydra is kept as it was)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from longcot.config.loading import CONF_DIR
    from longcot.config.schema import register_configs

    register_configs()
    if GlobalHydra.instance().is_initialized():
        yield
        return
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield


_COMPOSED: dict[tuple[str, ...], DictConfig] = {}


def compose(overrides: Sequence[str]) -> DictConfig:
    """The root config composed with ``overrides`` (a composition error is a ValueError naming it).
    Compositions are cached by their overrides (points often share a stage's overrides) until the next
    :func:`load_study`; each caller gets its own copy."""
    import copy

    key = tuple(overrides)
    if key not in _COMPOSED:
        _COMPOSED[key] = _compose(key)
    return copy.deepcopy(_COMPOSED[key])


def _compose(overrides: Sequence[str]) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    with hydra_context():
        try:
            return hydra_compose(config_name="config", overrides=list(overrides))
        except (HydraException, OmegaConfBaseException) as exc:
            raise ValueError(" ".join(str(exc).split())) from None


def load_study(overrides: Sequence[str]) -> Study:
    """Compose the command line's overrides (``+experiment=NAME ...``) and parse its study (the
    composition cache starts empty: config files may have changed since an earlier study)."""
    _COMPOSED.clear()
    return parse_study(compose(overrides), overrides)


def compose_stage(study: Study, point: Point, stage: str) -> DictConfig:
    """The config of ``stage`` of ``point``, composed and validated (unknown keys, field rules)."""
    from longcot.config.validate import validate

    cfg = compose(study.stage_overrides(point, stage))
    try:
        validate(cfg)
    except ValueError as exc:
        raise ValueError(f"study {study.name}, point {point.name}, stage {stage}: {exc}") from None
    return cfg
