"""RL step rewards as the official experience maker computes them (eddycmu/demystify-long-cot @ e90cf9b,
openrlhf/trainer/ppo_utils/experience_maker.py ``_generate_vllm`` + ``make_experience``; models/utils.py
``compute_reward``; cli/train_ppo_ray.py ``reward_fn``): the last token is made EOS before the rewards,
and one gamma for several channels clips their sum. Token rewards computed by hand."""

from __future__ import annotations

import pytest
import torch

from longcot.generation.base import Completion
from longcot.rewards.channels import reward_channels, single_gamma
from longcot.rewards.config import to_reward_config
from longcot.rl.returns import pack_channel_rewards, token_rewards
from longcot.rl.scoring import score_responses

EOS, STOP = 2, 3
P = -0.05


def _reward(gamma_p=0.99, ngram=2):
    return to_reward_config({"name": "t", "kind": "cosine", "gamma": 1.0, "margin": 0,
                             "repetition": {"variant": "dense", "ngram_size": ngram, "penalty": P, "gamma": gamma_p}})


def _score(comps, mode="official", max_len=6, cfg=None):
    cfg = cfg or _reward()
    graded: list[list[str]] = []

    def grade(texts):
        graded.append(list(texts))
        return [False] * len(texts)

    decode = lambda ids: " ".join(str(t) for t in ids if t not in (EOS,))  # noqa: E731 (EOS is special)
    out = score_responses(cfg, comps, grade, eos_id=EOS, max_len=max_len, truncated_eos=mode, decode=decode)
    chans = reward_channels(cfg)
    t = pack_channel_rewards(out.channels, chans, [len(c.token_ids) for c in comps], max(len(c.token_ids) for c in comps))
    mask = torch.zeros(t.shape[:2])
    for i, c in enumerate(comps):
        mask[i, : len(c.token_ids)] = 1
    return out, token_rewards(t, mask, clip=10.0, sum_channels=single_gamma(cfg)), graded[0]


def _completion(ids, reason):
    return Completion(" ".join(str(t) for t in ids if t != EOS), tuple(ids), reason, 4)


LOOP = [5, 6, 5, 6, 5, 6]  # truncated at the limit 6, repeating the bigram (5, 6)


def test_truncated_looping_response_gets_no_penalty_on_its_last_token():
    """Official: the tokens become [5 6 5 6 5 EOS]; repeated bigrams start at 2 and 3 -> tokens 2..4
    penalised, the last token (now EOS) 0; the correctness channel is the exceed reward -10 there."""
    out, r, graded = _score([_completion(LOOP, "length")])
    assert r[0, :, 1].tolist() == pytest.approx([0, 0, P, P, P, 0])
    assert r[0, :, 0].tolist() == pytest.approx([0, 0, 0, 0, 0, -10.0])
    assert out.samples[0].token_ids == (5, 6, 5, 6, 5, EOS) and out.samples[0].length == 6
    assert graded == ["5 6 5 6 5"]  # the grader reads the text without the replaced token
    # the former behaviour (and keep): the sampled tokens, so the bigram at 4 penalises the last token
    for mode in ("truncated", "keep"):
        _, r_old, graded_old = _score([_completion(LOOP, "length")], mode=mode)
        assert r_old[0, :, 1].tolist() == pytest.approx([0, 0, P, P, P, P])
        assert graded_old == ["5 6 5 6 5 6"]


def test_response_ending_in_a_non_eos_stop_id():
    """[7 8 7 8 STOP] becomes [7 8 7 8 EOS]: the bigram (7, 8) at 2 penalises tokens 2, 3; the last
    token carries the cosine reward of a wrong answer of length 5 with T = 6 (rL_wrong=0, r0_wrong=-10:
    rL + (r0 - rL) (1 + cos(5/6 pi)) / 2 = -5 (1 + cos(5/6 pi))) and no penalty; the grader reads the text without the stop id."""
    import math

    out, r, graded = _score([_completion([7, 8, 7, 8, STOP], "stop")])
    wrong = 0 + 0.5 * (-10 - 0) * (1 + math.cos(5 / 6 * math.pi))  # -0.67
    assert r[0, :, 0].tolist() == pytest.approx([0, 0, 0, 0, wrong])
    assert r[0, :, 1].tolist() == pytest.approx([0, 0, P, P, 0])
    assert out.samples[0].token_ids == (7, 8, 7, 8, EOS)
    assert graded == ["7 8 7 8"]
    _, _, graded_old = _score([_completion([7, 8, 7, 8, STOP], "stop")], mode="truncated")
    assert graded_old == ["7 8 7 8 3"]


def test_one_gamma_for_two_channels_clips_their_sum():
    """reward.repetition.gamma: null = official --gamma 1 with two reward functions: reward_fn sums
    them, compute_reward clamps the sum to [-10, 10]: last token -10 (not -10 - 0.05 as per channel)."""
    loop = [5, 6, 5, 6, 5, 6, 5]  # truncated at 7: exceed -10 at the last token, bigram repeats on 2..6
    comp = Completion("x", tuple(loop), "length", 4)
    cfg = _reward(gamma_p=None)
    assert single_gamma(cfg) and [c.gamma for c in reward_channels(cfg)] == [1.0, 1.0]
    _, r, _ = _score([comp], mode="keep", max_len=7, cfg=cfg)
    assert r.shape == (1, 7, 1)
    assert r[0, :, 0].tolist() == pytest.approx([0, 0, P, P, P, P, -10.0])
    _, r2, _ = _score([comp], mode="keep", max_len=7, cfg=_reward(gamma_p=1.0))  # --gamma 1,1: per channel
    assert (r2[0, -1, 0] + r2[0, -1, 1]).item() == pytest.approx(-10.0 + P)
    assert not single_gamma(_reward(gamma_p=1.0))


def test_single_gamma_refuses_per_channel_value_heads():
    from longcot.rl.config import AlgorithmConfig, RLConfig
    from longcot.rl.recipe import check_settings

    with pytest.raises(ValueError, match="one gamma for all"):
        check_settings(AlgorithmConfig(name="ppo", value_heads="per_channel"), RLConfig(), _reward(gamma_p=None))


def test_former_replace_value_is_refused_with_the_new_names():
    from longcot.rl.config import AlgorithmConfig

    with pytest.raises(ValueError, match="official, truncated, keep"):
        AlgorithmConfig(name="ppo", truncated_eos="replace").validate()


# --- transcription of the official path (e90cf9b): _generate_vllm's last-token rule (micro rollout batch 1),
# then reward/repetition.py RepetitionDensePenalty.reward (only_start False, the scripts' default) on output_ids
def ref_dense_rewards(outputs, eos_token_id, ngram_size, penalty):
    rewards = []
    for out in outputs:
        output_ids = list(out)
        output_len = len(output_ids)
        if output_ids[output_len - 1] != eos_token_id:
            output_ids[min(output_len, len(output_ids) - 1)] = eos_token_id
        gen = output_ids[:output_len]  # gen_lengths = action_mask.sum() = output_len here
        repeated, seen = [], set()
        for start_idx, ng in enumerate(zip(*[gen[i:] for i in range(ngram_size)])):
            if ng in seen:
                repeated.append(start_idx)
            seen.add(ng)
        cur = [0.0] * output_len
        for start_idx in repeated:
            for i in range(start_idx, start_idx + ngram_size):
                cur[i] = penalty
        rewards.append(cur)
    return rewards


@pytest.mark.parametrize("seed", range(4))
def test_dense_penalty_equals_the_official_path_on_random_loops(seed):
    import random

    rng = random.Random(seed)
    comps, outs = [], []
    for _ in range(12):
        unit = [rng.randint(4, 9) for _ in range(rng.randint(1, 4))]
        body = (unit * 20)[: rng.randint(3, 30)]
        kind = rng.choice(["length", "eos", "stop-id"])
        ids = body if kind == "length" else body + [EOS if kind == "eos" else STOP]
        comps.append(Completion("t", tuple(ids), "length" if kind == "length" else "stop", 4))
        outs.append(ids)
    cfg = _reward(ngram=3)
    got = score_responses(cfg, comps, lambda texts: [False] * len(texts), eos_id=EOS, max_len=64,
                          truncated_eos="official", decode=lambda ids: "t").channels["repetition"]
    want = ref_dense_rewards(outs, EOS, 3, P)
    assert [list(map(float, g)) for g in got] == [pytest.approx(w) for w in want]
