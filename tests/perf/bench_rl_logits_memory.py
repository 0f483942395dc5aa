"""Peak memory and time of the actor's log-probs + entropy, forward and backward, unchunked vs chunked
(``rl.logits_chunk_tokens``) at a long response and a large vocabulary (a script, not a test).

    OMP_NUM_THREADS=1 PYTHONPATH=. python tests/perf/bench_rl_logits_memory.py [--vocab 32768] [--response 2048] [--chunk 256]

A random-init Llama (``--hidden``, ``--layers``; untied head) on CPU, batch 1, a ``--prompt``-token
prompt and a ``--response``-token response. Each setting runs in a fresh subprocess: build the model
and the rollout, read the peak RSS (``ru_maxrss``) as the baseline, then ``--repeats`` times
``action_logprobs(with_entropy=True)`` -> a loss on (log-prob, entropy) -> ``backward``; reports
the peak RSS above the baseline and the median seconds per call (forward + backward). For scale:
the unchunked path holds ``R x vocab`` fp32 logits (and their log-softmax, probabilities, ...) for
backward; the chunked path a chunk's worth, recomputed in backward.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(args) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from longcot.rl.experience import action_logprobs, build_rollout

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=2 * args.hidden,
                      num_hidden_layers=args.layers, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=args.prompt + args.response, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).float().train()
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(3, args.vocab, (args.prompt,), generator=g).tolist()
    response = torch.randint(3, args.vocab, (args.response,), generator=g).tolist()
    ro = build_rollout([prompt], [response], [False], eos_id=2, pad_id=0)
    chunk = args.chunk if args.chunk > 0 else None
    base = rss_mb()
    times = []
    for _ in range(args.repeats):
        model.zero_grad(set_to_none=False)  # the peak includes the grads (the same in both settings)
        t0 = time.perf_counter()
        logp, ent = action_logprobs(model, ro, with_entropy=True, chunk_tokens=chunk)
        loss = -(logp.sum() + 0.01 * (ent * ro.action_mask).sum())
        loss.backward()
        times.append(time.perf_counter() - t0)
        del logp, ent, loss
    return {"peak_mb": rss_mb() - base, "s_per_call": statistics.median(times)}


def run(args, chunk: int) -> dict:
    cmd = [sys.executable, __file__, "--child", "--chunk", str(chunk)] + [
        f"--{k}={getattr(args, k)}" for k in ("vocab", "hidden", "layers", "prompt", "response", "repeats")
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--response", type=int, default=2048)
    ap.add_argument("--chunk", type=int, default=256, help="chunk_tokens of the chunked run (0 in --child: unchunked)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        print(json.dumps(child(args)))
        return
    full_logits_mb = args.response * args.vocab * 4 / 2**20
    print(f"vocab {args.vocab}, response {args.response} tokens, hidden {args.hidden}, {args.layers} layers, batch 1, "
          f"CPU, {args.repeats} calls each; one fp32 R x vocab tensor = {full_logits_mb:.0f} MB")
    res = {}
    for name, chunk in (("unchunked", 0), (f"chunk_tokens={args.chunk}", args.chunk)):
        res[name] = r = run(args, chunk)
        print(f"  {name:>18}: peak +{r['peak_mb']:8.1f} MB   {r['s_per_call']:6.2f} s/call (forward + backward)")
    a, b = res.values()
    print(f"  memory ratio unchunked / chunked: {a['peak_mb'] / max(b['peak_mb'], 1e-9):.1f}x; "
          f"time ratio chunked / unchunked: {b['s_per_call'] / a['s_per_call']:.2f}x")


if __name__ == "__main__":
    main()
