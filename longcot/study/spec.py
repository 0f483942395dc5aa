"""A study (an ``experiments/`` file with ``study.name`` set): grid points, each a chain of stage runs
distill -> sft -> rl -> eval (any prefix or suffix), composed with Hydra's compose API.

The config of stage ``S`` of a point is the root config composed with, in order: ``+experiment=NAME``,
``study.base``, ``study.stages[S]``, ``point[S]``, the rest of the command line's overrides and
``stage=S`` (later overrides win: the command line wins over the study's values;
:mod:`longcot.study.overrides` lists what it changed, per stage run). A point lists the stages it
runs; ``[]`` means base + stage overrides only.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
import difflib
from typing import Any, Iterator, Optional, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

from longcot.study.seeds import parse_compare

from longcot.study.paper import Paper, parse_paper

STAGE_ORDER = ("distill", "sft", "rl", "eval")


# ``study.seeds`` without ``study.seed_overrides``: what one seed sets (data draw, the held-out split, data
# order, sampling and the tiny model's init); ``{seed}`` is replaced by the seed.
DEFAULT_SEED_OVERRIDES = (
    "data.toy_seed={seed}", "data.toy_split_seed={seed}", "benchmark.toy_split_seed={seed}", "benchmark.seed={seed}",
    "distill.seed={seed}", "distill.budget_seed={seed}", "sft.seed={seed}", "rl.seed={seed}", "model.tiny_seed={seed}",
)


@dataclass(frozen=True)
class Point:
    """One grid point: its name and, per stage it runs (in chain order), that stage's overrides.

    With ``study.seeds`` every point of the file is repeated once per seed: ``name`` is then
    ``<group>@s<seed>`` and each stage's overrides start with that seed's."""

    name: str
    stages: dict[str, tuple[str, ...]]
    group: str = ""  # the point's name in the study file (== name without seeds)
    seed: Optional[int] = None


@dataclass(frozen=True)
class Study:
    """A parsed ``study:`` section and the command-line overrides it was composed with."""

    name: str
    description: str
    overrides: tuple[str, ...]
    base: tuple[str, ...]
    stages: dict[str, tuple[str, ...]]
    points: tuple[Point, ...]
    paper: Paper = field(default_factory=Paper)  # study.paper: cited values and plot statements (study/paper.py)
    output_root: str = "runs"
    seeds: tuple[int, ...] = ()  # study.seeds: every point repeated per seed (empty: no seed axis)
    compare: tuple[Any, ...] = ()  # study.compare: longcot.study.seeds.Compare, arms compared per seed
    local_workers: int = 1  # cluster.local_workers of the study's own composition (longcot/study/parallel.py)

    def groups(self) -> list[str]:
        """The points' names as the study file gives them (one per group of seeds), in file order."""
        return list(dict.fromkeys(p.group or p.name for p in self.points))

    def stage_overrides(self, point: Point, stage: str, command_line: bool = True) -> list[str]:
        """The overrides that compose ``stage`` of ``point``: the experiment, then base < stage < point <
        the rest of the command line (the command line wins; without ``command_line``: the study's own)."""
        chosen = [o for o in self.overrides if is_experiment(o) or o.lstrip("+").startswith("hydra")]
        rest = [o for o in self.overrides if o not in chosen] if command_line else []
        return [*chosen, *self.base, *self.stages.get(stage, ()), *point.stages[stage], *rest, f"stage={stage}"]

    def point(self, name: str) -> Point:
        for p in self.points:
            if p.name == name:
                return p
        raise ValueError(f"study {self.name}: no point {name!r}; valid: {', '.join(p.name for p in self.points)}")


def is_experiment(override: str) -> bool:
    """Whether ``override`` selects the experiment (``+experiment=NAME``)."""
    return override.lstrip("+").startswith("experiment=")


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
        points.append(Point(name, chain, group=name))
    if not points:
        raise ValueError(f"study.points: study {s.name} has no grid point")
    _whole_study_only(s.base, stages, points)
    file_names = [p.name for p in points]
    points = _only(points, s.get("only"))
    seeds = _seeds(s.get("seeds"))
    if seeds:
        templates = _strings(s.get("seed_overrides"), "study.seed_overrides") if s.get("seed_overrides") is not None \
            else DEFAULT_SEED_OVERRIDES
        points = _with_seeds(points, seeds, templates, _strings(s.base, "study.base"), stages)
    paper = parse_paper(OmegaConf.to_container(s.paper, resolve=True) if s.paper is not None else None, sorted(names))
    return Study(str(s.name), str(s.description or ""), tuple(overrides), _strings(s.base, "study.base"), stages,
                 tuple(points), paper, str(cfg.output_root), tuple(seeds),
                 parse_compare(OmegaConf.to_container(s.compare, resolve=True) if s.get("compare") else None,
                               file_names),
                 int(cfg.cluster.local_workers) if cfg.get("cluster") is not None else 1)


WHOLE_STUDY_KEYS = ("cluster.local_workers",)  # settings of the study's execution, not of one stage run


def _whole_study_only(base: Any, stages: dict[str, tuple[str, ...]], points: list[Point]) -> None:
    """Refuse a whole-study setting inside ``study.base`` / ``study.stages`` / a point (where it would
    reach stage runs, and be ignored by the driver)."""
    where = [("study.base", _strings(base, "study.base")),
             *((f"study.stages.{st}", o) for st, o in stages.items()),
             *((f"study.points ({p.name}).{st}", o) for p in points for st, o in p.stages.items())]
    for place, overrides in where:
        for o in overrides:
            if _key(o) in WHOLE_STUDY_KEYS:
                raise ValueError(f"{place}: {o!r} sets how the whole study runs, not one stage run; set it at the "
                                 f"top of the experiment file (cluster: {{local_workers: N}}) or on the command line")


def _only(points: list[Point], value: Any) -> list[Point]:
    """The points ``study.only`` names (in file order), or all of them when it is unset."""
    if value is None:
        return points
    names = list(_strings(value, "study.only"))
    valid = [p.name for p in points]
    for name in names:
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=2)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ValueError(f"study.only: no point {name!r}; {hint}valid: {', '.join(valid)}")
    if not names:
        raise ValueError("study.only: empty; name at least one point (or leave it unset for every point)")
    return [p for p in points if p.name in names]


def _seeds(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, ListConfig):
        value = OmegaConf.to_container(value, resolve=True)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"study.seeds: must be a list of integers (e.g. [0, 1, 2]), got {value!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"study.seeds: {value!r} repeats a seed")
    return list(value)


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _with_seeds(points: list[Point], seeds: list[int], templates: Sequence[str], base: Sequence[str],
                stages: dict[str, tuple[str, ...]]) -> list[Point]:
    """Each point once per seed, its stages starting with the seed's overrides. A key that the seed sets
    may not be set by the study too (one of the two would be ignored): that is an error naming both."""
    for t in templates:
        if "=" not in t or "{seed}" not in t:
            raise ValueError(f"study.seed_overrides: {t!r} must be KEY=VALUE with {{seed}} in the value")
    seeded = {_key(t): t for t in templates}
    for where, overrides in [("study.base", base), *[(f"study.stages.{st}", o) for st, o in stages.items()],
                             *[(f"study.points ({p.name}).{st}", o) for p in points for st, o in p.stages.items()]]:
        for o in overrides:
            if _key(o) in seeded:
                raise ValueError(f"{where}: sets {_key(o)!r}, which study.seeds sets per seed ({seeded[_key(o)]!r}); "
                                 "remove one of them (or list study.seed_overrides without it)")
    out = []
    for p in points:
        for seed in seeds:
            ovr = tuple(t.replace("{seed}", str(seed)) for t in templates)
            out.append(Point(f"{p.name}@s{seed}", {st: (*ovr, *o) for st, o in p.stages.items()}, group=p.name, seed=seed))
    return out


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
