"""Generation throughput of the tiny model on CPU: HF backend vs vLLM backend (not a pytest module).

    . .venv-vllm/bin/activate && python tests/perf/bench_generation.py [--prompts 4] [--n 16] [--tokens 256]

Both backends run the same job through :func:`longcot.generation.build_generator` (``model=tiny``,
t=0.7, top-p 0.95, no EOS stop: the EOS logit is not touched, so a few samples stop early; the
tokens actually generated are counted): ``prompts x n`` sequences of up to ``tokens`` new tokens.
HF runs with ``--hf-batch`` sequences per forward batch and ``--hf-threads`` torch threads; vLLM
runs in its own process (the CPU build binds its OpenMP threads itself). Engine startup is timed
separately and not part of the tokens/s. Prints tokens/s of each and the ratio vLLM / HF.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--n", type=int, default=16, help="samples per prompt")
    ap.add_argument("--tokens", type=int, default=256, help="max new tokens per sample")
    ap.add_argument("--hf-batch", type=int, default=64)
    ap.add_argument("--hf-threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from longcot.generation.config import GenerationConfig
    from longcot.models.config import ModelConfig
    from longcot.generation import SamplingParams, build_generator

    torch.set_num_threads(args.hf_threads)
    cfg = ModelConfig(name="tiny", path="tiny")
    prompts = [[{"role": "user", "content": f"Problem {i}: compute {i} + {i * 7} and show your steps."}]
               for i in range(args.prompts)]
    params = SamplingParams(temperature=0.7, top_p=0.95, max_new_tokens=args.tokens, n=args.n, seed=0)
    print(f"== tiny model, {args.prompts} prompts x {args.n} samples x <= {args.tokens} new tokens, CPU")

    rates = {}
    for backend in ("hf", "vllm"):
        t0 = time.perf_counter()
        gen = build_generator(cfg, GenerationConfig(backend=backend, device="cpu", batch_size=args.hf_batch))
        start = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = gen.generate(prompts, params, progress=False)
        seconds = time.perf_counter() - t0
        tokens = sum(c.num_tokens for row in out for c in row)
        rates[backend] = tokens / seconds
        print(f"{backend:5s} startup {start:6.1f} s | {tokens} tokens in {seconds:6.2f} s = {rates[backend]:8.0f} tokens/s")
        del gen
    print(f"vllm / hf tokens/s: {rates['vllm'] / rates['hf']:.2f}x")


if __name__ == "__main__":  # the vLLM engine runs in a spawned process: this module must be import-safe
    main()
