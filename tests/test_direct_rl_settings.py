"""Table 4's direct RL settings (../shared/paper/tables.yaml, Table 4 note): the +1 / -0.5 / -1 (no answer)
reward by hand, MATH level 3-5 prompts, and the identities of runs that do not use them unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from longcot.config.loading import load_group_option
from longcot.config.schema import DataConfig
from longcot.rewards.channels import ScoredSample, compute_channel_rewards
from longcot.rewards.classic import classic_reward_batch
from longcot.rewards.config import to_reward_config


def test_no_answer_reward_by_hand():
    got = classic_reward_batch([True, False, False, True], [5, 5, 5, 60], [64] * 4, [False, False, False, True],
                               correct_reward=1.0, wrong_reward=-0.5, exceed=None, no_answer=-1.0,
                               answered=[True, True, False, False])
    assert got.tolist() == [1.0, -0.5, -1.0, -1.0]  # correct, wrong, no answer, truncated without an answer
    with pytest.raises(ValueError, match="no_answer needs answered"):
        classic_reward_batch([True], no_answer=-1.0)


def test_classic_direct_reward_file_on_responses():
    cfg = to_reward_config(load_group_option("reward", "classic_direct", type(to_reward_config({"name": "x"}))))
    texts = ["so \\boxed{4}", "so \\boxed{5}", "I am not sure", "The final answer is 7"]
    samples = [ScoredSample([1, 2, 3], ok, 3072, False, t) for ok, t in zip([True, False, False, False], texts)]
    r = compute_channel_rewards(cfg, samples)["correctness"]
    assert [float(x[-1]) for x in r] == [1.0, -0.5, -1.0, -0.5]  # an answer phrase counts as an answer
    assert all(np.count_nonzero(x[:-1]) == 0 for x in r)


def test_math_levels_filter_and_identity():
    from longcot.data.loading import data_identity, load_prompts

    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "math_train" / "train.jsonl"
    if not path.exists():
        pytest.skip(f"{path} not present")
    levels = [json.loads(line).get("level") for line in path.open()]
    cfg = load_group_option("data", "math_train", DataConfig)
    cfg.path = str(path)
    plain = data_identity(cfg, "data")
    assert "levels" not in plain["settings"]  # unset: identities of runs from before the key unchanged
    cfg.levels = [3, 4, 5]
    assert len(load_prompts(cfg)) == sum(lv in ("Level 3", "Level 4", "Level 5") for lv in levels)
    assert data_identity(cfg, "data")["settings"]["levels"] == [3, 4, 5]
    cfg.levels = [9]
    with pytest.raises(Exception, match=r"data.levels=\[9\]: no record"):
        load_prompts(cfg)


def test_reward_identity_has_no_no_answer_key_when_unset():
    from longcot.stages.rl import reward_identity

    plain = reward_identity(load_group_option("reward", "classic", type(to_reward_config({"name": "x"}))))
    assert "no_answer" not in plain["classic"]
    direct = reward_identity(load_group_option("reward", "classic_direct", type(to_reward_config({"name": "x"}))))
    assert direct["classic"]["no_answer"] == -1.0 and direct["classic"]["exceed"] is None
