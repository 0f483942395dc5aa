"""Benchmark the reward hot paths against their straightforward loop versions (not a pytest module).

    PYTHONPATH=. python tests/perf/bench_rewards.py [--responses 512] [--length 16384] [--ref-subset N]

1. Dense repetition penalty (Algorithm 1, N=40, P=-0.05): ``dense_repetition_penalty`` vs the loop
   transcription ``dense_repetition_penalty_reference`` on random responses over a 32k vocabulary
   with realistic repetition (copied spans, some short periodic loops, a few fully degenerate
   responses). Outputs must be identical.
2. Cosine reward: ``cosine_scaled_reward_batch`` vs a Python loop of ``cosine_scaled_reward``.
3. End to end: channel rewards + combined discounted returns (gammas 1 and 0.99) for the batch.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from longcot.rewards.channels import ScoredSample, combined_returns, compute_channel_rewards, reward_channels
from longcot.rewards.config import RepetitionConfig, RewardConfig
from longcot.rewards.cosine import cosine_scaled_reward, cosine_scaled_reward_batch
from longcot.rewards import repetition
from longcot.rewards.repetition import dense_repetition_penalty, dense_repetition_penalty_reference


def make_responses(num: int, length: int, vocab: int = 32000, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(num):
        x = rng.integers(0, vocab, length)
        # copied spans (re-stated equations, quoted problem text): 10-40 spans of 20-400 tokens
        for _ in range(rng.integers(10, 40)):
            n = int(rng.integers(20, 400))
            src, dst = rng.integers(0, length - n, 2)
            x[dst : dst + n] = x[src : src + n].copy()
        if i % 8 == 0:  # a degenerate loop: a 30-120 token phrase repeated over the tail
            period = int(rng.integers(30, 120))
            start = int(rng.integers(length // 2, length - period))
            phrase = x[start : start + period].copy()
            x[start:] = np.resize(phrase, length - start)
        if i % 64 == 1:  # fully degenerate: one token over and over
            x[length // 4 :] = x[length // 4]
        out.append(x)
    return out


def bench_dense(responses: list[np.ndarray], ref_subset: int) -> None:
    print(f"== dense repetition penalty: {len(responses)} responses x {responses[0].size} tokens, N=40")
    exact = repetition._repeated_starts_exact
    fallbacks = []

    def counting_exact(x, n):  # the collision fallback; expected never to run
        fallbacks.append(1)
        return exact(x, n)

    repetition._repeated_starts_exact = counting_exact
    try:
        t0 = time.perf_counter()
        fast = [dense_repetition_penalty(x) for x in responses]
        t_fast = time.perf_counter() - t0
    finally:
        repetition._repeated_starts_exact = exact
    covered = np.mean([np.count_nonzero(f) / f.size for f in fast])
    print(f"fast:      {t_fast:8.3f} s total, {t_fast / len(responses) * 1e3:8.3f} ms/response "
          f"(mean penalised fraction {covered:.3f}; hash-collision fallbacks: {len(fallbacks)})")
    sub = responses[:ref_subset]
    t0 = time.perf_counter()
    ref = [dense_repetition_penalty_reference(x) for x in sub]
    t_ref = time.perf_counter() - t0
    for i, (a, b) in enumerate(zip(fast, ref)):
        if not np.array_equal(a, b):
            raise AssertionError(f"response {i}: fast and reference penalties differ")
    per_fast = t_fast / len(responses)
    per_ref = t_ref / len(sub)
    print(f"reference: {t_ref:8.3f} s total, {per_ref * 1e3:8.3f} ms/response over {len(sub)} responses")
    print(f"identical outputs on {len(sub)} responses; speedup {per_ref / per_fast:.1f}x (per response)")


def bench_cosine(num: int) -> None:
    rng = np.random.default_rng(1)
    T = 14336
    correct = rng.random(num) < 0.5
    gen_len = rng.integers(0, T + 1, num)
    truncated = gen_len >= T
    print(f"== cosine reward: {num} samples, T={T}")
    t0 = time.perf_counter()
    fast = cosine_scaled_reward_batch(correct, gen_len, T, truncated)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = [cosine_scaled_reward(bool(c), int(g), T, bool(t)) for c, g, t in zip(correct, gen_len, truncated)]
    t_ref = time.perf_counter() - t0
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-12)
    print(f"batch {t_fast * 1e3:.3f} ms, scalar loop {t_ref * 1e3:.3f} ms, speedup {t_ref / t_fast:.1f}x; equal")


def bench_end_to_end(responses: list[np.ndarray]) -> None:
    cfg = RewardConfig(name="cosine_reppen", kind="cosine", repetition=RepetitionConfig())
    rng = np.random.default_rng(2)
    samples = [ScoredSample(x, bool(rng.random() < 0.5), 16384 + 64) for x in responses]
    print(f"== end to end (cosine + dense penalty, returns with gammas 1 and 0.99): {len(samples)} samples")
    t0 = time.perf_counter()
    rewards = compute_channel_rewards(cfg, samples)
    t1 = time.perf_counter()
    returns = combined_returns(rewards, reward_channels(cfg))
    t2 = time.perf_counter()
    assert len(returns) == len(samples)
    print(f"channel rewards {t1 - t0:.3f} s, combined returns {t2 - t1:.3f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--responses", type=int, default=512)
    ap.add_argument("--length", type=int, default=16384)
    ap.add_argument("--ref-subset", type=int, default=None, help="time the loop on the first N only (default all)")
    ap.add_argument("--cosine-samples", type=int, default=100_000)
    args = ap.parse_args()
    responses = make_responses(args.responses, args.length)
    bench_dense(responses, args.ref_subset or args.responses)
    bench_cosine(args.cosine_samples)
    bench_end_to_end(responses)


if __name__ == "__main__":
    main()
