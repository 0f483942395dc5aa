"""How fast the tiny model learns the CPU twin's long (search) and short (direct) CoT, in optimizer steps.

A probe, not a study: a plain loop (AdamW, cosine, padded batches, loss on the response only) on
rejection-sampled teacher samples of the twin's training pool, greedy accuracy on 60 held-out problems
of the same split every ``--eval-every`` steps. It measures what the twin studies need before their
SFT budgets mean anything (README "The CPU twin"). Long and short get the same number of steps.

    python tests/perf/twin_learnability.py --style long --steps 3000 --seed 0
"""

from __future__ import annotations

import argparse
import math
import random
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from longcot.data import twin
from longcot.data.toy import toy_problems
from longcot.generation import search_teacher as st
from longcot.grading import extract_answer
from longcot.models.tiny import ensure_tiny

TEMPLATE = "{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--style", choices=("long", "short"), required=True)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--examples", type=int, default=24000)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    d = ensure_tiny(None, seed=a.seed)
    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForCausalLM.from_pretrained(d)

    def prompt(text: str) -> str:
        return tok.apply_chat_template([{"role": "user", "content": TEMPLATE.format(problem=text)}], tokenize=False,
                                       add_generation_prompt=True)

    rng = random.Random(a.seed)
    examples = []
    for p in twin.draw(a.examples * 2, a.seed, "train", a.seed):  # rejection sampling: correct samples only
        text = st.write_long(p, rng, 0.1) if a.style == "long" else st.write_short(p, rng, 0.1)
        if extract_answer(text) == str(p.answer()):
            examples.append((tok(prompt(p.text()), add_special_tokens=False).input_ids,
                             tok(text, add_special_tokens=False).input_ids + [tok.eos_token_id]))
        if len(examples) == a.examples:
            break
    held = toy_problems(60, a.seed, level="search", split="eval", split_seed=a.seed)
    print(f"style={a.style} seed={a.seed}: {len(examples)} examples, {sum(len(p) + len(c) for p, c in examples)} tokens",
          flush=True)

    def evaluate() -> float:
        model.eval()
        tok.padding_side = "left"
        enc = tok([prompt(p.problem) for p in held], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=200 if a.style == "long" else 12, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        texts = tok.batch_decode(out[:, enc.input_ids.shape[1]:], skip_special_tokens=True)
        model.train()
        return sum(extract_answer(t) == p.answer for t, p in zip(texts, held)) / len(held)

    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95))
    model.train()
    t0 = time.perf_counter()
    seen = 0
    for step in range(a.steps):
        for g in opt.param_groups:
            g["lr"] = a.lr * min(1.0, (step + 1) / 20) * 0.5 * (1 + math.cos(math.pi * step / a.steps))
        batch = [examples[(step * a.batch + j) % len(examples)] for j in range(a.batch)]
        width = max(len(p) + len(c) for p, c in batch)
        ids = torch.full((a.batch, width), tok.pad_token_id)
        labels = torch.full((a.batch, width), -100)
        for i, (p, c) in enumerate(batch):
            ids[i, : len(p) + len(c)] = torch.tensor(p + c)
            labels[i, len(p): len(p) + len(c)] = torch.tensor(c)
        seen += int((labels != -100).sum())
        logits = model(input_ids=ids, use_cache=False).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                                 ignore_index=-100)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        if (step + 1) % a.eval_every == 0:
            print(f"step {step + 1}: loss {loss.item():.3f}, held-out accuracy {evaluate():.3f}, "
                  f"{seen} response tokens trained, {time.perf_counter() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
