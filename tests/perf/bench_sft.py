"""SFT throughput on CPU, in one run: longcot's packed SFT vs a naive padded loop vs TRL's SFTTrainer.

Not a test (not collected). Same tiny model, same toy data (the synthetic teacher's long and short
responses: lengths vary ~3x), same optimizer and lr, one epoch, float32, one torch thread:

* packed: ``longcot.sft.recipe.train`` (first-fit-decreasing buckets of ``--micro-tokens`` tokens,
  one flattened row per micro-batch, ``--batch`` sequences per optimizer step);
* naive: the same engine and steps, micro-batches of ``--naive-micro`` sequences right-padded to
  the longest (attention_mask), the classic padded loop;
* trl: ``trl.SFTTrainer`` with ``packing=True`` (BFD, padding-free), ``max_length=--micro-tokens``,
  one packed row per micro-batch, gradient accumulation to ~the same tokens per step,
  ``completion_only_loss=True``, transformers' ``sdpa`` (its CPU default);
* trl+varlen: the same with ``attn_implementation="sdpa_varlen"`` (longcot's per-sample attention;
  TRL's padding-free collator passes ``cu_seq_lens_q``), which isolates the rest of the loop.

The packed arm uses ``sft.attn_implementation=auto`` = ``sdpa_varlen`` on CPU; ``packed+sdpa`` is the
same loop with transformers' ``sdpa`` (a dense block-diagonal mask over the packed row).

tokens/s counts real (non-pad) tokens over training-loop wall time; each arm runs ``--repeats`` times
alternately and the best time is kept (the box is shared). Needs ``trl`` (``pip install -e '.[bench]'``;
it pulls accelerate, so keep it in a side venv such as .venv-ds); without it the TRL arm is skipped.

    python tests/perf/bench_sft.py [--examples 256] [--batch 32] [--micro-tokens 2048] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from omegaconf import OmegaConf  # noqa: E402

from longcot.config.schema import ModelConfig  # noqa: E402
from longcot.models.loading import load_model_and_tokenizer  # noqa: E402
from longcot.sft.config import SFTConfig  # noqa: E402
from longcot.sft.data import IGNORE, toy_examples, tokenize_examples  # noqa: E402
from longcot.sft.recipe import step_plan, train  # noqa: E402
from longcot.training.engine import Engine, EngineConfig  # noqa: E402
import longcot.training.attention  # noqa: E402,F401  (registers sdpa_varlen)

TINY = OmegaConf.structured(ModelConfig(name="tiny", path="tiny"))
LR = 1e-4


def data(n: int):
    half = n // 2
    return toy_examples(half, 0, style="long") + toy_examples(n - half, 1, style="short")


def run_packed(examples, args, attn: str = "auto") -> dict:
    cfg = SFTConfig(global_batch_sequences=args.batch, max_length=args.micro_tokens,
                    max_tokens_per_micro_batch=args.micro_tokens, learning_rate=LR, epochs=1, warmup_ratio=0.0,
                    save_every_steps=0, attn_implementation=attn)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        train(examples, TINY, cfg, d, progress=False)
        wall = time.perf_counter() - t0
        recs = [__import__("json").loads(x) for x in open(os.path.join(d, "metrics.jsonl"))]
    loop = sum(r["step_time_s"] for r in recs)
    tokens = sum(r["tokens"] for r in recs)
    return {"tokens": tokens, "loop_s": loop, "wall_s": wall, "padding_fraction": 0.0,
            "tokens_per_s": tokens / loop, "final_loss": recs[-1]["loss"]}


def run_naive(examples, args) -> dict:
    model, tok = load_model_and_tokenizer(TINY, device="cpu", dtype="float32")
    ds, _ = tokenize_examples(tok, examples, max_length=args.micro_tokens)
    plan = step_plan(len(ds), args.batch, 1, 0)
    engine = Engine(model, EngineConfig(learning_rate=LR, total_steps=len(plan), warmup_ratio=0.0, backend="torch"))
    real = padded = 0
    t0 = time.perf_counter()
    for _, idx in plan:
        samples = [ds[i] for i in idx]
        n_targets = sum(s.num_targets for s in samples)
        chunks = [samples[i:i + args.naive_micro] for i in range(0, len(samples), args.naive_micro)]
        for j, chunk in enumerate(chunks):
            width = max(len(s) for s in chunk)
            ids = torch.full((len(chunk), width), tok.pad_token_id)
            tgt = torch.full((len(chunk), width), IGNORE)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, s in enumerate(chunk):
                ids[r, :len(s)] = torch.tensor(s.input_ids)
                tgt[r, :len(s)] = torch.tensor(s.targets)
                mask[r, :len(s)] = 1
            real += int(mask.sum())
            padded += ids.numel()
            with engine.micro_batch(last=j == len(chunks) - 1):
                logits = engine(input_ids=ids, attention_mask=mask, use_cache=False).logits
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                                                         ignore_index=IGNORE, reduction="sum") / n_targets
                engine.backward(loss)
        engine.step()
    loop = time.perf_counter() - t0
    return {"tokens": real, "loop_s": loop, "padding_fraction": 1 - real / padded, "tokens_per_s": real / loop}


def run_trl(examples, args, attn: str = "sdpa") -> dict | None:
    try:
        import trl
        from datasets import Dataset
    except ImportError:
        return None
    from transformers import AutoModelForCausalLM

    from longcot.models.loading import load_tokenizer, resolve_model_path

    tok = load_tokenizer(TINY, padding_side="right")
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(TINY), dtype=torch.float32,
                                                 attn_implementation=attn)
    rows = [{"prompt": list(e.messages), "completion": [{"role": "assistant", "content": e.response}]} for e in examples]
    with tempfile.TemporaryDirectory() as d:
        # ~ the packed arm's tokens per step: batch x mean length / micro-tokens rows per step
        ours, _ = tokenize_examples(tok, examples, max_length=args.micro_tokens)
        rows_per_step = max(1, round(args.batch * statistics.mean(len(s) for s in ours) / args.micro_tokens))
        cfg = trl.SFTConfig(output_dir=d, packing=True, max_length=args.micro_tokens, per_device_train_batch_size=1,
                            gradient_accumulation_steps=rows_per_step, learning_rate=LR, lr_scheduler_type="cosine",
                            warmup_steps=0, num_train_epochs=1, completion_only_loss=True, report_to=[],
                            save_strategy="no", logging_steps=1, use_cpu=True, bf16=False, fp16=False,
                            dataloader_num_workers=0, seed=0, disable_tqdm=True, adam_beta2=0.95, weight_decay=0.0,
                            max_grad_norm=1.0)
        trainer = trl.SFTTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(rows), processing_class=tok)
        tokens = sum(len(x) for x in trainer.train_dataset["input_ids"])
        t0 = time.perf_counter()
        out = trainer.train()
        loop = time.perf_counter() - t0
    return {"tokens": tokens, "loop_s": loop, "padding_fraction": 0.0, "tokens_per_s": tokens / loop,
            "train_runtime": out.metrics.get("train_runtime"), "final_loss": out.training_loss,
            "trl": trl.__version__, "rows_per_step": rows_per_step}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--micro-tokens", type=int, default=2048)
    ap.add_argument("--naive-micro", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    os.environ.setdefault("LONGCOT_CACHE", os.path.expanduser("~/.cache/longcot"))
    torch.set_num_threads(args.threads)
    examples = data(args.examples)
    results: dict[str, list[dict]] = {"packed": [], "packed+sdpa": [], "naive": [], "trl": [], "trl+varlen": []}
    for _ in range(args.repeats):
        results["packed"].append(run_packed(examples, args))
        results["packed+sdpa"].append(run_packed(examples, args, attn="sdpa"))
        results["naive"].append(run_naive(examples, args))
        r = run_trl(examples, args)
        if r is not None:
            results["trl"].append(r)
            results["trl+varlen"].append(run_trl(examples, args, attn="sdpa_varlen"))
    best = {k: max(v, key=lambda r: r["tokens_per_s"]) for k, v in results.items() if v}
    print(f"\n{args.examples} examples, {args.batch} seq/step, micro-batch {args.micro_tokens} tokens, "
          f"{args.threads} thread(s), best of {args.repeats}")
    print(f"{'arm':11s} {'tokens':>8s} {'loop s':>8s} {'tokens/s':>10s} {'padding':>8s}")
    for k, r in best.items():
        print(f"{k:11s} {r['tokens']:8d} {r['loop_s']:8.2f} {r['tokens_per_s']:10.0f} {r['padding_fraction']:8.3f}")
    print(f"packed / naive = {best['packed']['tokens_per_s'] / best['naive']['tokens_per_s']:.2f}x")
    print(f"sdpa_varlen / dense block-mask sdpa (same packed loop) = "
          f"{best['packed']['tokens_per_s'] / best['packed+sdpa']['tokens_per_s']:.2f}x")
    if "trl" in best:
        print(f"packed / TRL SFTTrainer (trl {best['trl']['trl']}, packing=True) = "
              f"{best['packed']['tokens_per_s'] / best['trl']['tokens_per_s']:.2f}x")
        print(f"packed / TRL SFTTrainer with longcot's sdpa_varlen attention = "
              f"{best['packed']['tokens_per_s'] / best['trl+varlen']['tokens_per_s']:.2f}x")
    else:
        print("TRL not installed: pip install -e '.[bench]' (in a side venv) for the TRL arm")
    print("all runs:", {k: [round(r["tokens_per_s"]) for r in v] for k, v in results.items()})


if __name__ == "__main__":
    main()
