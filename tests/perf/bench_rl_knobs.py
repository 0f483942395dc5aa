"""Step-time overhead of each 2025 length-control knob on the RL loop, as a ratio to plain GRPO.

CPU, one thread, the tiny model on the toy task: ``--prompts`` x ``--group`` responses per step (one
optimizer step per rollout), up to ``--max-new`` tokens, ``--steps`` steps per configuration; the
median step time over steps 2..N, the smaller of ``--passes`` interleaved passes over the
configurations. ``--clock cpu`` (default) times with the process's CPU time instead of the wall
clock (the loop's ``time.perf_counter`` is pointed at ``time.process_time``), so other processes on a
shared machine do not count; ``--clock wall`` for an idle machine. Every configuration uses the same reward (cosine + a unigram dense
repetition penalty, so groups have a spread of rewards for dynamic sampling) except where the knob is a
reward (the overlong channel). Dynamic sampling's extra rounds are its cost: the table shows the
generated / trained ratio beside it. Read ratios within ~10% of 1 as noise (runs on a shared 2-core machine:
0.88-1.04 and 0.92-1.04 for knobs that add no work; README has one run's table).

    OMP_NUM_THREADS=1 python tests/perf/bench_rl_knobs.py
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

REWARD = {"name": "cos_rep", "kind": "cosine", "margin": 0,
          "repetition": {"variant": "dense", "ngram_size": 1, "penalty": -0.05, "gamma": 0.99}}
KNOBS = {  # name -> (algorithm overrides, reward overrides)
    "grpo (baseline)": ({}, {}),
    "clip-higher 0.2/0.28": ({"clip_ratio_high": 0.28}, {}),
    "token-level loss": ({"loss_aggregation": "token_mean"}, {}),
    "gspo (sequence ratio)": ({"ratio_level": "sequence", "clip_ratio": 3e-4, "clip_ratio_high": 4e-4}, {}),
    "tis (HF log-probs)": ({"rollout_is": True}, {}),
    "overlong filter": ({"overlong_filter": True}, {}),
    "overlong reward": ({}, {"overlong": {"cache": 8}}),
    "dynamic sampling": ({"dynamic_sampling": "reward", "dynamic_sampling_max_rounds": 4}, {}),
    "dapo (all four)": ({"clip_ratio_high": 0.28, "loss_aggregation": "token_mean", "dynamic_sampling": "reward",
                         "dynamic_sampling_max_rounds": 4, "kl_coef": 0.0}, {"overlong": {"cache": 8}}),
}


def run(args, algo_kw: dict, reward_kw: dict) -> dict[str, float]:
    from longcot.rl.config import AlgorithmConfig, RLConfig
    from longcot.rl.recipe import train

    n = args.prompts * args.group
    algo = AlgorithmConfig(**{**dict(
        name="grpo", advantage="group", kl_estimator="k3", kl_in="loss", kl_coef=0.01, whiten_advantages=False,
        learning_rate=1e-6, critic_learning_rate=None, value_clip=None, rollout_batch_size=args.prompts,
        samples_per_prompt=args.group, train_batch_size=n, micro_train_batch_size=args.micro, max_new_tokens=args.max_new,
        temperature=1.0, top_p=1.0, warmup_ratio=0.0, episodes=1000), **algo_kw})
    with tempfile.TemporaryDirectory() as tmp:
        res = train(Path(tmp) / "run", model=ModelConfig(name="tiny", path="tiny"), problems=toy_problems(64, 0),
                    algorithm=algo, reward={**REWARD, **reward_kw},
                    rl=RLConfig(max_steps=args.steps, save_every=10**6, generate_batch_size=n, forward_batch_size=n),
                    progress=False)
    recs = res.records[1:]
    return {"step": statistics.median(r["step_time_s"] for r in recs),
            "generate": statistics.median(r["time_generate_s"] for r in recs),
            "gen_per_trained": sum(r["responses_generated"] for r in recs) / sum(r["responses_trained"] for r in recs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--group", type=int, default=4)
    ap.add_argument("--micro", type=int, default=4)
    ap.add_argument("--max-new", type=int, default=32)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.clock == "cpu":
        import time

        time.perf_counter = time.process_time  # the loop's step timings become this process's CPU seconds
    import logging

    logging.disable(logging.WARNING)
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.passes):
        for name, (algo_kw, reward_kw) in KNOBS.items():
            r = run(args, algo_kw, reward_kw)
            if name not in best or r["step"] < best[name]["step"]:
                best[name] = r
    base = best["grpo (baseline)"]["step"]
    for name, r in best.items():
        print(f"{name:24s} step {r['step']:.3f}s  x{r['step'] / base:.2f}  (generate {r['generate']:.3f}s, "
              f"generated/trained {r['gen_per_trained']:.2f})", flush=True)
    print(f"\n{args.prompts} prompts x {args.group} samples, {args.max_new} new tokens, median of steps 2..{args.steps}, "
          f"best of {args.passes} passes, {args.clock} time, "
          "tiny model, 1 CPU thread; ratio = step time / plain GRPO's")


if __name__ == "__main__":
    main()
