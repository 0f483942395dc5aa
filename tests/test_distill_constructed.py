"""§3.3 constructed long CoT: the action state machine's transitions and the composed trajectories."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from longcot.data.toy import toy_problems
from longcot.distill.config import ConstructedConfig
from longcot.distill.constructed import ActionMachine, MachineError, construct_candidates
from longcot.generation.base import SamplingParams
from longcot.generation.synthetic import SyntheticGenerator
from longcot.stages import distill as stage
from tests.stage_helpers import distill_run
from tests.test_distill_sampling import distill_cfg


def machine(**changes) -> ActionMachine:
    node = OmegaConf.structured(ConstructedConfig)
    node.merge_with(OmegaConf.create(changes))
    return ActionMachine.from_config(node)


def test_walks_follow_the_configured_transitions() -> None:
    m = machine()
    forced = {m.reflection_action, m.terminal}
    for seed in range(400):
        seq = m.walk(random.Random(seed))
        assert seq[0] == "clarify" and seq[-1] == "answer" and seq.count("answer") == 1
        assert len(seq) <= m.max_actions and seq.count("reflection") >= m.min_reflections
        for a, b in zip(seq, seq[1:]):
            assert m.transitions[a].get(b, 0) > 0 or b in forced, (a, b, seq)
        assert seq[:3] == ["clarify", "decompose", "solution_step"]  # weight-1 transitions
    assert machine().walk(random.Random(7)) == machine().walk(random.Random(7))


def test_transition_frequencies_follow_the_weights() -> None:
    m = machine(max_actions=10_000, min_reflections=0,
                transitions={"solution_step": {"solution_step": 0.6, "reflection": 0.3, "answer": 0.1}})
    counts: Counter = Counter()
    rng = random.Random(0)
    for _ in range(600):
        seq = m.walk(rng)
        counts.update(b for a, b in zip(seq, seq[1:]) if a == "solution_step")
    total = sum(counts.values())
    assert abs(counts["solution_step"] / total - 0.6) < 0.04
    assert abs(counts["reflection"] / total - 0.3) < 0.04
    assert abs(counts["answer"] / total - 0.1) < 0.03


def test_zero_weight_is_never_taken_and_limits_force_moves() -> None:
    m = machine(max_actions=10_000, min_reflections=0, transitions={"solution_step": {"answer": 0.0}})
    for seed in range(200):
        seq = m.walk(random.Random(seed))
        assert ("solution_step", "answer") not in set(zip(seq, seq[1:]))
    # a short budget forces a reflection then the answer
    m = machine(max_actions=4, min_reflections=1, transitions={"solution_step": {"reflection": 0.0}})
    for seed in range(50):
        seq = m.walk(random.Random(seed))
        assert seq == ["clarify", "decompose", "reflection", "answer"]


@pytest.mark.parametrize("changes,message", [
    ({"start": "ponder"}, r"distill.constructed.start='ponder' is not an action with instructions; valid: clarify"),
    ({"transitions": {"decompose": {"guess": 1.0}}}, r"distill.constructed.transitions.decompose.guess: unknown action"),
    ({"transitions": {"decompose": {"answer": -1.0}}}, r"transitions.decompose.answer: weight must be >= 0"),
    ({"transitions": {"answer": {"clarify": 1.0}}}, r"transitions.answer: the terminal action cannot have transitions"),
    ({"transitions": {"decompose": {"solution_step": 0.0}}}, r"transitions.decompose: no transition with a positive weight"),
    ({"transitions": {"solution_step": {"answer": 0.0, "reflection": 0.0}, "reflection": {"answer": 0.0}}},
     r"terminal action 'answer' is unreachable"),
    ({"max_actions": 2}, r"distill.constructed.max_actions=2 leaves no room"),
])
def test_bad_machines_fail_with_the_key(changes: dict, message: str) -> None:
    with pytest.raises(MachineError, match=message):
        machine(**changes)


# Reflection unreachable from start and without a way on: a forced reflection (min_reflections=1)
# would jump there mid-run and have nowhere to go.
DEAD_REFLECTION = {"solution_step": {"solution_step": 0.0, "reflection": 0.0, "answer": 1.0},
                   "reflection": {"solution_step": 0.0, "answer": 0.0}}


def test_forced_reflection_must_have_a_way_on() -> None:
    with pytest.raises(MachineError, match=r"distill.constructed.transitions.reflection: no transition with a positive "
                                           r"weight \(action 'reflection' is reachable from the forced reflection"):
        machine(transitions=DEAD_REFLECTION)
    # and so must what the reflection leads to (decompose: unreachable from start here)
    with pytest.raises(MachineError, match=r"transitions.decompose: no transition with a positive weight"):
        machine(transitions={"clarify": {"decompose": 0.0, "solution_step": 1.0}, "decompose": {"solution_step": 0.0},
                             "solution_step": {"solution_step": 0.0, "reflection": 0.0, "answer": 1.0},
                             "reflection": {"decompose": 1.0, "solution_step": 0.0, "answer": 0.0}})
    # without forced reflections an unreachable dead end is harmless
    m = machine(transitions=DEAD_REFLECTION, min_reflections=0)
    assert all("reflection" not in m.walk(random.Random(seed)) for seed in range(20))
    # a forced reflection off the start's paths that has a way on walks fine
    m = machine(transitions={**DEAD_REFLECTION, "reflection": {"solution_step": 0.0, "answer": 1.0}})
    for seed in range(20):
        seq = m.walk(random.Random(seed))
        assert seq == ["clarify", "decompose", "solution_step", "reflection", "answer"]


class Recording:
    """Delegates to a generator and records the action names it was asked to write."""

    def __init__(self, inner):
        self.inner, self.actions = inner, []

    def generate(self, prompts, params, **kw):
        self.actions += [p[-1]["content"].rsplit("Action: ", 1)[1] for p in prompts]
        return self.inner.generate(prompts, params, **kw)

    def count_tokens(self, texts):
        return self.inner.count_tokens(texts)


def test_reflections_are_written_by_the_reflection_model_and_fix_slips() -> None:
    problems = toy_problems(12, seed=5)
    c = OmegaConf.structured(ConstructedConfig)
    c.merge_with({"transitions": {"solution_step": {"solution_step": 0.0, "reflection": 1.0, "answer": 0.0},
                                  "reflection": {"solution_step": 1.0, "answer": 1e-12}}})
    c.max_actions = 9  # clarify, decompose, (step, reflection) x3, then the forced answer
    action = Recording(SyntheticGenerator(error_rate=1.0))  # every solution step slips
    reflection = Recording(SyntheticGenerator(error_rate=0.0))
    rows = construct_candidates(problems, SamplingParams(temperature=1.0, n=3), c, action, reflection,
                                template="{problem}", progress=False)
    assert set(reflection.actions) == {"reflection"} and "reflection" not in action.actions
    assert len(rows) == 36
    from longcot.grading import extract_answer

    for r, p in zip(rows, [p for p in problems for _ in range(3)]):
        assert r["actions"][:2] == ["clarify", "decompose"] and r["actions"][-1] == "answer"
        assert len(r["response"].split("\n\n")) == len(r["actions"])
        assert extract_answer(r["response"]) == p.answer  # every slip was caught by a reflection


def test_constructed_stage_grades_and_keeps_like_distilled(tmp_path: Path) -> None:
    common = ["distill.mode=constructed", "data.toy_size=12", "distill.num_shards=2", "generation.error_rate=0.4"]
    big = distill_run(distill_cfg(tmp_path, *common, "distill.n=4", "distill.derive_n=[2]"))
    small = distill_run(distill_cfg(tmp_path, *common, "distill.n=2", "distill.derive_n=[]"))
    rows = pq.read_table(Path(big["dir"]) / "n4/data.parquet").to_pylist()
    assert rows and all(r["correct"] and r["extracted_answer"] == r["answer"] for r in rows)
    assert all(r["actions"][0] == "clarify" and r["actions"][-1] == "answer" and "reflection" in r["actions"] for r in rows)
    assert big["datasets"]["4"]["correct_candidates"] < 12 * 4  # some trajectories were wrong and dropped
    assert (pq.read_table(Path(big["dir"]) / "n2/data.parquet").to_pylist()
            == pq.read_table(Path(small["dir"]) / "n2/data.parquet").to_pylist())
