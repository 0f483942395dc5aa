"""§4.1 on a toy: does the cosine reward keep response lengths bounded where the classic reward does not?

A deliberately truncation-prone setting on CPU: the tiny model is warm-started on toy answers that
are either short (``\\boxed{x}``, right 2 times in 5) or long (``Wait, let me recheck ...`` repeated
1-4 times before the answer, right 4 times in 5), so longer responses are more often correct, and the
longest ones do not fit in ``--max-new`` tokens. PPO (the paper's settings, scaled-down batch, higher
lr for the tiny model) then runs with the classic reward (1 / 0, exceed 0) and with the cosine reward
(the paper's §4.2 values: correct 2 -> 1, wrong -10 -> 0, exceed -10), same seeds. Prints the mean
length and truncation ratio of the first and last steps per seed.

    .venv/bin/python tests/perf/rl_length_cosine_vs_classic.py --seeds 0 1 --steps 12
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from longcot.config.schema import ModelConfig  # noqa: E402
from longcot.data.toy import toy_problems  # noqa: E402
from longcot.rl.config import AlgorithmConfig, RLConfig  # noqa: E402
from longcot.rl.recipe import train  # noqa: E402
from tests.test_rl_recipe import warm_start  # noqa: E402

FILLER = "Wait, let me recheck the product. "


def long_and_short(problem) -> list[str]:
    a = int(problem.answer)
    short = [f"\\boxed{{{x}}}" for x in (a, a, a + 1, a + 10, a - 1)]
    long = [FILLER * k + f"\\boxed{{{x}}}" for k, x in ((1, a), (2, a), (3, a), (4, a), (2, a + 1))]
    return short + long


REWARDS = {
    "classic": {"name": "classic", "kind": "classic", "margin": 0, "classic": {"correct": 1.0, "wrong": 0.0, "exceed": 0.0}},
    "cosine": {"name": "cosine", "kind": "cosine", "margin": 0},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--max-new", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    problems = toy_problems(4, 0)
    with tempfile.TemporaryDirectory() as tmp:
        sft = warm_start(Path(tmp) / "sft", problems, steps=80, responses=long_and_short)
        algo = AlgorithmConfig(name="ppo", advantage="gae", learning_rate=args.lr, critic_learning_rate=1e-3,
                               rollout_batch_size=4, samples_per_prompt=8, train_batch_size=8,
                               micro_train_batch_size=8, epochs=2, max_new_tokens=args.max_new, warmup_ratio=0.0,
                               min_lr_ratio=1.0, episodes=1000)
        print(f"PPO, {args.steps} steps, max_new_tokens={args.max_new}; first 3 / last 3 steps per run")
        print(f"{'reward':8s} {'seed':>4s} {'len first':>9s} {'len last':>8s} {'trunc first':>11s} {'trunc last':>10s} "
              f"{'acc first':>9s} {'acc last':>8s}")
        for name, reward in REWARDS.items():
            for seed in args.seeds:
                res = train(Path(tmp) / f"{name}-{seed}", model=ModelConfig(name="sft", path=str(sft)),
                            problems=problems, algorithm=algo, reward=reward,
                            rl=RLConfig(max_steps=args.steps, save_every=10**6, seed=seed), progress=False)
                r = res.records
                m = lambda key, rows: statistics.mean(x[key] for x in rows)  # noqa: E731
                print(f"{name:8s} {seed:4d} {m('response_length_mean', r[:3]):9.1f} {m('response_length_mean', r[-3:]):8.1f} "
                      f"{m('truncation_ratio', r[:3]):11.2f} {m('truncation_ratio', r[-3:]):10.2f} "
                      f"{m('accuracy', r[:3]):9.2f} {m('accuracy', r[-3:]):8.2f}")


if __name__ == "__main__":
    main()
