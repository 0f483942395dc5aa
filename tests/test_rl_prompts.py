"""RL prompts with silver answers (Table 3): the filter by hand, the plan (the silver distill run as an
upstream, identities), and the prompt set read from a real silver distill run on the toy task."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_dir

from longcot.config.loading import CONF_DIR
from longcot.config.schema import register_configs
from longcot.data.records import Problem
from longcot.rl.prompts import select_prompts
from longcot.stages import distill as distill_stage
from longcot.stages import rl as rl_stage
from tests.stage_helpers import distill_run

register_configs()


def test_select_prompts_by_hand():
    problems = [Problem(str(i), f"q{i}", "", "math", {}) for i in range(5)]
    rows = [  # prompt 0: sample 1 agrees; 1: none; 2: only sample 2 (beyond n=2); 3: both; 4: no reference (no rows)
        {"prompt_id": "0", "candidate_index": 0, "answer": "7", "correct": False},
        {"prompt_id": "0", "candidate_index": 1, "answer": "7", "correct": True},
        {"prompt_id": "1", "candidate_index": 0, "answer": "x", "correct": False},
        {"prompt_id": "1", "candidate_index": 1, "answer": "x", "correct": False},
        {"prompt_id": "2", "candidate_index": 2, "answer": "5", "correct": True},
        {"prompt_id": "3", "candidate_index": 0, "answer": "9", "correct": True},
        {"prompt_id": "3", "candidate_index": 1, "answer": "9", "correct": True},
    ]
    unfiltered = select_prompts(problems, rows, filter="all", n=2)
    assert [(p.id, p.answer, p.problem) for p in unfiltered] == [("0", "7", "q0"), ("1", "x", "q1"), ("2", "5", "q2"),
                                                                 ("3", "9", "q3")]
    assert [p.id for p in select_prompts(problems, rows, filter="agreed", n=2)] == ["0", "3"]
    assert [p.id for p in select_prompts(problems, rows, filter="agreed", n=3)] == ["0", "2", "3"]
    assert [p.id for p in select_prompts(problems, rows, filter="all", n=2, limit=2)] == ["0", "1"]
    with pytest.raises(ValueError, match="valid: all, agreed"):
        select_prompts(problems, rows, filter="some", n=2)


def _cfg(root: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"output_root={root}", *overrides])


SILVER = ["distill.mode=silver", "distill.n=2", "distill.derive_n=[]", "distill.silver.near_dedup=false",
          "distill.silver.toy_noise=0.3", "distill.silver.toy_missing=0.1", "distill.num_shards=2"]
RL = ("+experiment=demo_cpu_sft", "stage=rl", "algorithm=grpo", "reward=classic", "data.toy_size=60",
      "algorithm.rollout_batch_size=4", "algorithm.samples_per_prompt=4", "algorithm.train_batch_size=16",
      "algorithm.micro_train_batch_size=8")


def _prompts(filter_: str) -> str:
    return ("rl.prompts={teacher: synthetic-long, teacher_generation: synthetic, filter: " + filter_
            + ", overrides: [" + ", ".join(f"'{o}'" for o in SILVER) + "]}")


def test_rl_prompts_plan_the_silver_distill_run(tmp_path: Path) -> None:
    p = rl_stage.plan(_cfg(tmp_path, *RL, _prompts("agreed")))
    [dist] = [u for u in p.upstream if u.stage == "distill"]
    direct = distill_stage.plan(_cfg(tmp_path, *RL[:1], "stage=distill", "model=synthetic-long", "generation=synthetic",
                                     "data.toy_size=60", *SILVER))
    assert dist.run_id == direct.run_id
    assert p.identity["data"] == {"distill": dist.run_id, "filter": "agreed", "n": 2, "limit": None}
    assert "prompts" not in p.identity["rl"]
    assert rl_stage.plan(_cfg(tmp_path, *RL, _prompts("all"))).run_id != p.run_id
    assert "prompts" not in rl_stage.plan(_cfg(tmp_path, *RL)).identity["rl"]  # unset: no new identity key
    with pytest.raises(ValueError, match="distill.mode=sample; silver answers need distill.mode=silver"):
        rl_stage.plan(_cfg(tmp_path, *RL, _prompts("all").replace("'distill.mode=silver', ", "")))
    with pytest.raises(ValueError, match="rl.prompts.filter='some'; valid: all, agreed"):
        rl_stage.plan(_cfg(tmp_path, *RL, _prompts("some")))
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_rl_prompts_are_the_silver_answers_of_the_distill_run(tmp_path: Path) -> None:
    out = distill_run(_cfg(tmp_path, *RL[:1], "stage=distill", "model=synthetic-long", "generation=synthetic",
                           "data.toy_size=60", "distill.print_table=false", *SILVER))
    agreed = rl_stage._prompts(rl_stage.plan(_cfg(tmp_path, *RL, _prompts("agreed"))))
    unfiltered = rl_stage._prompts(rl_stage.plan(_cfg(tmp_path, *RL, _prompts("all"))))
    kept = pq.read_table(Path(out["dir"]) / "n2/data.parquet").to_pylist()  # prompts a response matched
    assert {p.id for p in agreed} == {r["prompt_id"] for r in kept}
    assert len(unfiltered) == out["sampling"]["prompts"] and {p.id for p in agreed} < {p.id for p in unfiltered}
    ref = {r["prompt_id"]: r["answer"] for r in kept}
    assert all(p.answer == ref[p.id] for p in agreed)  # the extracted answer is the reference
    assert [p.id for p in unfiltered] == sorted((p.id for p in unfiltered), key=lambda i: [q.id for q in unfiltered].index(i))
    limited = rl_stage._prompts(rl_stage.plan(_cfg(tmp_path, *RL, _prompts("all"), "data.limit=5")))
    assert [p.id for p in limited] == [p.id for p in unfiltered][:5]
