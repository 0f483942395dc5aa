"""Where a shard's candidates come from, one source per ``distill.mode``.

* ``sample`` (§3): the teacher ``model`` answers each prompt N times.
* ``constructed`` (§3.3): the action-prompting state machine composes N trajectories per prompt.
* ``silver`` (§5): an instruct model first extracts a reference answer from each scraped
  solution; the teacher then answers N times and is graded against that reference.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

from longcot.data.records import Problem
from longcot.distill.config import MODES
from longcot.distill.sampling import Row, TeacherPlan, sample_candidates
from longcot.distill.tokens import resolve_model
from longcot.generation.base import Generator

log = logging.getLogger(__name__)


class Generators:
    """Generators built on first use, one per model config name (the run's ``model`` by default)."""

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self._built: dict[str, Generator] = {}

    def get(self, name: str | None, key: str = "model") -> Generator:
        from longcot.generation import build_generator

        model_cfg = resolve_model(name, self.cfg.model, key=key)
        if model_cfg.name not in self._built:
            log.info("building %s generator for %s", self.cfg.generation.backend, model_cfg.name)
            self._built[model_cfg.name] = build_generator(model_cfg, self.cfg.generation)
        return self._built[model_cfg.name]

    def release(self, name: str | None) -> None:
        """Free a generator that is no longer needed (e.g. the §5 extractor before the teacher)."""
        model_cfg = resolve_model(name, self.cfg.model)
        if self._built.pop(model_cfg.name, None) is not None:
            gc.collect()
            try:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except ImportError:  # pragma: no cover
                pass


class SampleSource:
    """§3 rejection sampling: N teacher candidates per prompt."""

    def __init__(self, cfg: Any, plan: TeacherPlan, gens: Generators, progress: bool):
        self.cfg, self.plan, self.gens, self.progress = cfg, plan, gens, progress

    def prepare(self, problems: list[Problem]) -> tuple[list[Problem], dict[str, Any]]:
        return problems, {}

    def produce(self, problems: list[Problem]) -> list[Row]:
        d = self.cfg.distill
        return sample_candidates(self.gens.get(None), problems, self.plan.params, system_prompt=d.system_prompt,
                                 template=d.prompt_template, progress=self.progress)


class ConstructedSource(SampleSource):
    """§3.3 constructed long CoT: action model + reflection model through the state machine."""

    def produce(self, problems: list[Problem]) -> list[Row]:
        from longcot.distill.constructed import construct_candidates

        c = self.cfg.distill.constructed
        action = self.gens.get(c.action_model, "distill.constructed.action_model")
        reflection = self.gens.get(c.reflection_model or c.action_model, "distill.constructed.reflection_model")
        return construct_candidates(problems, self.plan.params, c, action, reflection,
                                    template=self.cfg.distill.prompt_template, progress=self.progress)


class SilverSource(SampleSource):
    """§5 silver supervision: extract references (greedy), then sample and grade against them."""

    def prepare(self, problems: list[Problem]) -> tuple[list[Problem], dict[str, Any]]:
        from longcot.distill.silver import extract_references, with_references

        s = self.cfg.distill.silver
        extractor = self.gens.get(s.extractor, "distill.silver.extractor")
        refs = extract_references(extractor, problems, s.extract_template, int(s.extract_max_new_tokens), progress=self.progress)
        if resolve_model(s.extractor, self.cfg.model).name != self.cfg.model.name:
            self.gens.release(s.extractor)
        kept = with_references(problems, refs)
        return kept, {"prompts_without_reference": len(problems) - len(kept)}


def make_source(cfg: Any, plan: TeacherPlan, progress: bool = True) -> SampleSource:
    mode = cfg.distill.mode
    classes = {"sample": SampleSource, "constructed": ConstructedSource, "silver": SilverSource}
    if mode not in classes:
        raise ValueError(f"distill.mode={mode!r}; valid: {', '.join(MODES)}")
    return classes[mode](cfg, plan, Generators(cfg), progress)
