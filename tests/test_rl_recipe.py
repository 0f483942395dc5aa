"""The RL loop on CPU with the tiny model and the toy task: outputs and metrics, every algorithm on the
one loop, SIGKILL + relaunch == uninterrupted (in subprocesses), and statistical improvement of the
mean reward for PPO and GRPO from a toy-SFT warm start over several seeds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from longcot.models.config import ModelConfig
from longcot.data.toy import toy_problems
from longcot.rl.config import AlgorithmConfig, RLConfig
from longcot.rl.recipe import FINAL, PLOT, TIMING_KEYS, check_settings, is_finished, plan_steps, step_problems, train

REPO = Path(__file__).resolve().parents[1]

# Two channels with different gammas (cosine + dense repetition with 2-grams so it fires on the tiny model).
REWARD_2CH = {"name": "cos_rep", "kind": "cosine", "margin": 2,
              "repetition": {"variant": "dense", "ngram_size": 2, "penalty": -0.05, "gamma": 0.99}}
SMALL = dict(rollout_batch_size=2, samples_per_prompt=2, train_batch_size=2, micro_train_batch_size=1,
             max_new_tokens=8, warmup_ratio=0.0, episodes=10)


def _algo(name: str, **kw) -> AlgorithmConfig:
    presets = {
        "ppo": dict(advantage="gae", learning_rate=1e-3, critic_learning_rate=1e-3),
        "grpo": dict(advantage="group", kl_estimator="k3", kl_in="loss", whiten_advantages=False,
                     learning_rate=1e-3, critic_learning_rate=None, value_clip=None),
        "dr_grpo": dict(advantage="dr_group", kl_estimator="k3", kl_in="loss", whiten_advantages=False,
                        loss_aggregation="seq_mean_token_sum_norm", learning_rate=1e-3, critic_learning_rate=None),
        "reinforce_pp": dict(advantage="reinforce", learning_rate=1e-3, critic_learning_rate=None),
    }
    merged = {**SMALL, **presets[name], **kw}
    return AlgorithmConfig(name=name, **merged)


def test_plan_and_data_position():
    a = _algo("ppo", rollout_batch_size=3, episodes=2)
    assert plan_steps(10, a, RLConfig()) == (3, 6)
    assert plan_steps(10, a, RLConfig(max_steps=4)) == (3, 4)
    with pytest.raises(ValueError, match="rollout_batch_size=3"):
        plan_steps(2, a, RLConfig())
    probs = toy_problems(10, 0)
    ep0 = [p.id for s in range(3) for p in step_problems(probs, s, 3, 3, seed=0)]
    ep1 = [p.id for s in range(3, 6) for p in step_problems(probs, s, 3, 3, seed=0)]
    assert len(set(ep0)) == 9 and len(set(ep1)) == 9 and ep0 != ep1  # each episode its own shuffle
    assert step_problems(probs, 4, 3, 3, seed=0) == step_problems(probs, 4, 3, 3, seed=0)


def test_config_validation_names_the_key():
    with pytest.raises(ValueError, match="algorithm.advantage"):
        _algo("ppo", advantage="vtrace").validate()
    with pytest.raises(ValueError, match="critic_learning_rate"):
        _algo("ppo", critic_learning_rate=None).validate()
    with pytest.raises(ValueError, match="samples_per_prompt"):
        _algo("grpo", samples_per_prompt=1).validate()
    with pytest.raises(ValueError, match="micro_train_batch_size"):
        _algo("ppo", train_batch_size=3, micro_train_batch_size=2).validate()
    with pytest.raises(ValueError, match="rl.rollout_backend"):
        RLConfig(rollout_backend="sglang").validate()


def test_multi_gamma_with_lambda_below_one_fails_before_loading(tmp_path):
    with pytest.raises(ValueError, match="algorithm.lam=1"):
        train(tmp_path, model=ModelConfig(name="tiny", path="tiny"), problems=toy_problems(4, 0),
              algorithm=_algo("ppo", lam=0.95), reward=REWARD_2CH, rl=RLConfig(), progress=False)


def test_engine_and_head_settings_are_checked_with_the_key():
    for bad, key in ((dict(backend="jax"), "rl.backend"), (dict(zero_stage=4), "rl.zero_stage"),
                     (dict(precision="fp8"), "rl.precision"), (dict(attn_implementation="xformers"), "rl.attn_implementation"),
                     (dict(logits_chunk_tokens=0), "rl.logits_chunk_tokens"), (dict(device="tpu"), "rl.device")):
        with pytest.raises(ValueError, match=key):
            RLConfig(**bad).validate()
    with pytest.raises(ValueError, match="algorithm.value_heads"):
        _algo("ppo", value_heads="many").validate()
    with pytest.raises(ValueError, match="value_heads=per_channel: only PPO"):
        check_settings(_algo("grpo", value_heads="per_channel"), RLConfig(), REWARD_2CH)
    with pytest.raises(ValueError, match="must divide the 4 responses"):
        _algo("ppo", train_batch_size=3, micro_train_batch_size=1).validate()
    from longcot.training.engine import Engine, EngineConfig

    with pytest.raises(ValueError, match="adam_offload=true needs the deepspeed backend"):
        Engine(torch.nn.Linear(2, 2), EngineConfig(backend="torch", adam_offload=True), device="cpu")


def test_per_channel_value_heads_run_ppo_with_lambda_below_one(tmp_path, one_torch_thread):
    """Two channels with gammas 1 and 0.99: one value head needs lambda = 1 (official); one head per
    channel runs each channel's GAE(gamma_c, 0.95) and trains a two-output critic."""
    from safetensors.torch import load_file

    with pytest.raises(ValueError, match="value_heads=per_channel"):
        check_settings(_algo("ppo", lam=0.95), RLConfig(), REWARD_2CH)
    algo = _algo("ppo", lam=0.95, value_heads="per_channel")
    res = train(tmp_path, model=ModelConfig(name="tiny", path="tiny"), problems=toy_problems(4, 0), algorithm=algo,
                reward=REWARD_2CH, rl=RLConfig(max_steps=2, save_every=1), progress=False)
    assert [r["step"] for r in res.records] == [1, 2]
    assert all(r["value_loss"] > 0 and r["critic_grad_norm"] > 0 for r in res.records)
    heads = load_file(str(tmp_path / "checkpoints" / "step-00000002" / "critic" / "model.safetensors"))["value_head.weight"]
    first = load_file(str(tmp_path / "checkpoints" / "step-00000001" / "critic" / "model.safetensors"))["value_head.weight"]
    assert heads.shape[0] == 2 and not torch.equal(heads, first)  # both heads trained


@pytest.mark.parametrize("name", ["ppo", "grpo", "dr_grpo", "reinforce_pp"])
def test_every_algorithm_runs_on_the_one_loop(name, tmp_path, one_torch_thread):
    res = train(tmp_path / name, model=ModelConfig(name="tiny", path="tiny"), problems=toy_problems(4, 0),
                algorithm=_algo(name), reward=REWARD_2CH, rl=RLConfig(max_steps=2, save_every=1), progress=False)
    recs = res.records
    assert [r["step"] for r in recs] == [1, 2]
    keys = {"reward", "reward/correctness", "reward/repetition", "accuracy", "response_length_mean",
            "response_length_max", "truncation_ratio", "kl", "entropy", "policy_loss", "clip_frac",
            "reflection/wait", "reflection/however", "length_gap/mixed_groups", *TIMING_KEYS}
    assert keys <= set(recs[0]), keys - set(recs[0])
    assert ("value_loss" in recs[0]) == (name == "ppo")
    assert ("kl_loss" in recs[0]) == (name in ("grpo", "dr_grpo"))
    if name == "ppo":
        assert recs[1]["kl"] != 0.0  # advantages = returns - values: the actor moved after one update
    # the random-init tiny model rambles to the limit: truncated, so the cosine exceed reward -10
    assert recs[0]["truncation_ratio"] == 1.0 and recs[0]["reward/correctness"] == -10.0
    # nothing right, so no group has a right and a wrong sample: no within-group length gap to log
    assert recs[0]["length_gap/mixed_groups"] == 0.0 and "length_gap/right_minus_wrong" not in recs[0]
    assert recs[0]["reward/repetition"] <= 0.0
    if name != "ppo" and recs[0]["reward/repetition"] == 0.0:
        # every sample has the same return (and KL 0 at step 1): zero advantage after group
        # normalisation or whitening, so nothing to learn yet
        assert recs[0]["advantage_mean"] == 0.0 and recs[1]["kl"] == 0.0
    assert (res.final_model / "config.json").is_file() and (res.final_model / "tokenizer_config.json").is_file()
    assert (tmp_path / name / PLOT).is_file() and is_finished(tmp_path / name)
    assert not (tmp_path / name / "DONE").exists()  # DONE is the stage's, written after its summary
    again = train(tmp_path / name, model=ModelConfig(name="tiny", path="tiny"), problems=toy_problems(4, 0),
                  algorithm=_algo(name), reward=REWARD_2CH, rl=RLConfig(max_steps=2, save_every=1), progress=False)
    assert again.records == recs and again.resumed_from is None


def test_repetition_rate_is_logged_with_its_n_and_agrees_with_the_penalty_channel(tmp_path, one_torch_thread):
    """§4.5, Fig. 10: ``repetition/rate_<N>gram`` and ``repetition/token_share_<N>gram`` are measured with
    ``rl.repetition_metric_ngram``. At the penalty's own N they agree with the dense penalty channel, an
    independent path: every random-init rollout runs to the 48-token limit, so the mean penalty per
    response is P x 48 x the mean share of repeated tokens. The default N (40) finds nothing in 8 tokens."""
    unigram = {**REWARD_2CH, "repetition": {**REWARD_2CH["repetition"], "ngram_size": 1}}
    res = train(tmp_path / "n1", model=ModelConfig(name="tiny", path="tiny"), problems=toy_problems(4, 0),
                algorithm=_algo("grpo", max_new_tokens=48), reward=unigram,
                rl=RLConfig(max_steps=1, save_every=1, repetition_metric_ngram=1), progress=False)
    rec = res.records[0]
    assert rec["truncation_ratio"] == 1.0 and rec["response_length_mean"] == 48
    share, rate = rec["repetition/token_share_1gram"], rec["repetition/rate_1gram"]
    assert rec["reward/repetition"] == pytest.approx(-0.05 * 48 * share)
    assert 0.0 < share <= rate <= 1.0  # a random-init model repeats a token; a share is at most the rate
    assert "repetition/rate_40gram" not in rec
    default = train(tmp_path / "n40", model=ModelConfig(name="tiny", path="tiny"), problems=toy_problems(4, 0),
                    algorithm=_algo("grpo"), reward=REWARD_2CH, rl=RLConfig(max_steps=1, save_every=1), progress=False)
    assert default.records[0]["repetition/rate_40gram"] == default.records[0]["repetition/token_share_40gram"] == 0.0
    with pytest.raises(ValueError, match="rl.repetition_metric_ngram must be >= 1"):
        RLConfig(repetition_metric_ngram=0).validate()


# ------------------------------------------------------------------ SIGKILL + relaunch
RUNNER = """
import sys, torch
torch.set_num_threads(1)
from pathlib import Path
from longcot.models.config import ModelConfig
from longcot.data.toy import toy_problems
from longcot.rl.config import AlgorithmConfig, RLConfig
from longcot.rl.recipe import train
algo = AlgorithmConfig(**{algo!r})
res = train(Path(sys.argv[1]), model=ModelConfig(name="tiny", path="tiny"), problems=toy_problems(3, 0),
            algorithm=algo, reward={reward!r}, rl=RLConfig(max_steps=4, save_every=1, keep_checkpoints=2),
            progress=False)
print("resumed_from", res.resumed_from)
"""


def _runner(tmp_path: Path) -> Path:
    from dataclasses import asdict

    algo = asdict(_algo("ppo", rollout_batch_size=1, samples_per_prompt=3, train_batch_size=3, micro_train_batch_size=1))
    script = tmp_path / "runner.py"
    script.write_text(RUNNER.format(algo=algo, reward=REWARD_2CH))
    return script


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return env


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(path.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def _strip(records):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


@pytest.mark.slow
def test_sigkill_and_relaunch_equals_uninterrupted(tmp_path):
    script = _runner(tmp_path)
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run([sys.executable, str(script), str(full)], check=True, env=_env(), capture_output=True, timeout=600)

    proc = subprocess.Popen([sys.executable, str(script), str(killed)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = killed / "checkpoints" / "step-00000002" / "state.json"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert marker.exists(), "the run never reached its step-2 checkpoint"
    assert not is_finished(killed), "the run finished before it could be killed"
    out = subprocess.run([sys.executable, str(script), str(killed)], check=True, env=_env(),
                         capture_output=True, text=True, timeout=600)
    resumed = int(out.stdout.split("resumed_from")[-1].strip())
    assert resumed >= 2

    a = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in b] == list(range(1, 5))
    for ra, rb in zip(_strip(a), _strip(b)):
        assert ra.keys() == rb.keys()
        for k in ra:
            assert ra[k] == pytest.approx(rb[k], rel=1e-5, abs=1e-6), (ra["step"], k)
    wa, wb = _weights(full / FINAL / "actor"), _weights(killed / FINAL / "actor")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-6), k
    # only the last keep_checkpoints periodic checkpoints remain; critic and optimizer states are in them
    kept = sorted(p.name for p in (killed / "checkpoints").iterdir() if not p.name.startswith("."))
    assert kept == ["step-00000003", "step-00000004"]
    last = killed / "checkpoints" / "step-00000004"
    assert (last / "critic" / "model.safetensors").is_file() and (last / "critic.optim.pt").is_file()
    assert (last / "actor.optim.pt").is_file() and (last / "rng" / "rank-0.pt").is_file()


# ------------------------------------------------------------------ statistical improvement
def boxed_near_misses(problem) -> list[str]:
    """2 of 5 responses correct, 3 near misses."""
    a = int(problem.answer)
    return [f"\\boxed{{{x}}}" for x in (a, a, a + 1, a + 10, a - 1)]


def warm_start(out_dir: Path, problems, *, steps: int = 60, lr: float = 3e-3, seed: int = 0,
               responses=boxed_near_misses) -> Path:
    """A toy SFT checkpoint: plain cross-entropy on ``responses(problem)`` (default: ``\\boxed{}``
    answers, 2 of 5 correct), so sampling is right some of the time (RL from a random-init model gets
    no reward at all)."""
    from longcot.data.prompts import chat_prompt
    from longcot.generation.hf import encode_prompt
    from longcot.models.loading import load_model_and_tokenizer

    torch.manual_seed(seed)
    model, tok = load_model_and_tokenizer(ModelConfig(name="tiny", path="tiny"), device="cpu")
    model.train()
    rows = []
    for p in problems:
        prompt = encode_prompt(tok, chat_prompt(p))
        for text in responses(p):
            rows.append((prompt, tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]))
    width = max(len(x) + len(y) for x, y in rows)
    ids = torch.full((len(rows), width), tok.pad_token_id)
    labels = torch.full_like(ids, -100)
    attn = torch.zeros_like(ids)
    for i, (x, y) in enumerate(rows):
        ids[i, : len(x) + len(y)] = torch.tensor(x + y)
        attn[i, : len(x) + len(y)] = 1
        labels[i, len(x) : len(x) + len(y)] = torch.tensor(y)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in range(steps):
        model(input_ids=ids, attention_mask=attn, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def sampled_accuracy(model_dir: Path, problems, n: int = 64) -> float:
    from longcot.data.prompts import chat_prompt
    from longcot.generation.base import SamplingParams
    from longcot.generation.hf import HFGenerator
    from longcot.grading.by_kind import grade_batch
    from longcot.models.loading import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(ModelConfig(name="x", path=str(model_dir)), device="cpu")
    gen = HFGenerator(model, tok, batch_size=128)
    params = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=16, n=n, seed=123)
    out = gen.generate([chat_prompt(p) for p in problems], params, progress=False)
    verdicts = grade_batch([p for p in problems for _ in range(n)], [c.text for row in out for c in row])
    return sum(verdicts) / len(verdicts)


@pytest.fixture(scope="module")
def toy_sft(tmp_path_factory, one_torch_thread):
    problems = toy_problems(4, 0)
    path = warm_start(tmp_path_factory.mktemp("toy-sft"), problems)
    return path, problems, sampled_accuracy(path, problems)


STAT = dict(rollout_batch_size=4, samples_per_prompt=8, train_batch_size=8, micro_train_batch_size=8, epochs=2,
            max_new_tokens=16, warmup_ratio=0.0, min_lr_ratio=1.0, episodes=100)
CLASSIC = {"name": "classic", "kind": "classic", "margin": 2}


def _improvement(name: str, toy_sft, tmp_path: Path, seeds=(0, 1, 2), steps: int = 6) -> list[float]:
    path, problems, before = toy_sft
    assert 0.05 < before < 0.5, before  # the warm start is right sometimes, not always
    gains = []
    for seed in seeds:
        preset = _algo(name, **STAT)
        algo = AlgorithmConfig(**{**preset.__dict__, "learning_rate": 2e-4})
        res = train(tmp_path / f"{name}-{seed}", model=ModelConfig(name="sft", path=str(path)), problems=problems,
                    algorithm=algo, reward=CLASSIC, rl=RLConfig(max_steps=steps, save_every=steps, seed=seed),
                    progress=False)
        gains.append(sampled_accuracy(res.final_model, problems) - before)
    return gains


@pytest.mark.slow
def test_ppo_from_toy_sft_raises_mean_reward(toy_sft, tmp_path):
    """Classic reward = accuracy; 3 seeds x 6 PPO steps from the same warm start."""
    gains = _improvement("ppo", toy_sft, tmp_path)
    print(f"ppo: sampled accuracy before {toy_sft[2]:.3f}, gains {[round(g, 3) for g in gains]}")
    assert min(gains) > 0.1 and sum(gains) / len(gains) > 0.15, gains


@pytest.mark.slow
def test_grpo_from_toy_sft_raises_mean_reward(toy_sft, tmp_path):
    gains = _improvement("grpo", toy_sft, tmp_path)
    print(f"grpo: sampled accuracy before {toy_sft[2]:.3f}, gains {[round(g, 3) for g in gains]}")
    assert min(gains) > 0.1 and sum(gains) / len(gains) > 0.15, gains


def test_bf16_reference_computes_like_the_actor(tmp_path, one_torch_thread):
    """rl.precision=bf16 on the torch backend autocasts the float32 actor; the frozen reference is
    the same weights under the same autocast, so the KL is exactly 0 before the first update (a bf16
    copy of the weights would give a spurious KL penalty)."""
    res = train(tmp_path, model=ModelConfig(name="tiny", path="tiny"), problems=toy_problems(4, 0),
                algorithm=_algo("reinforce_pp", max_new_tokens=4), reward=REWARD_2CH,
                rl=RLConfig(max_steps=1, precision="bf16", backend="torch"), progress=False)
    assert res.records[0]["kl"] == 0.0


def test_plan_notes_and_identity_of_engine_settings(tmp_path):
    from longcot.stages import rl as rl_stage
    from longcot.training.distributed import DistEnv, local_device
    from tests.test_stage_protocol import _cfg

    def plan(*overrides):
        return rl_stage.plan(_cfg(tmp_path, "stage=rl", "data=toy", "algorithm.rollout_batch_size=2",
                                  "algorithm.train_batch_size=16", *overrides))

    grpo = plan("algorithm=grpo", "algorithm.lam=0.9")
    assert any("algorithm.lam=0.9: not used by advantage=group" in n for n in grpo.notes)
    assert not any("not used" in n for n in plan("algorithm=grpo").notes)
    colocated = plan("rl.rollout_backend=vllm", "rl.device=cuda")
    assert any("rl.vllm_gpu_memory_utilization=0.3" in n for n in colocated.notes)
    # without DeepSpeed the ZeRO stage changes nothing: same run; with DeepSpeed it is another run
    assert plan("rl.backend=torch", "rl.zero_stage=3").run_id == plan("rl.backend=torch").run_id
    assert plan("rl.backend=deepspeed", "rl.zero_stage=3").run_id != plan("rl.backend=deepspeed").run_id
    with pytest.raises(ValueError, match="every rank on one GPU"):
        local_device("cuda:1", DistEnv(rank=0, world_size=2, local_rank=0, launcher="torchrun"))
