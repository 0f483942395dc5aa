"""The GPU paths in one prepared check (one H200, <= 8 min; run by tests/perf/run_gpu_checks.sh).

Each check is independent (a failure is recorded with its error and the next one runs) and the
JSON (``$OUT/gpu_checks.json``, else ``--json``) is rewritten after each, so a run killed by its time
limit still leaves the finished checks. ``--budget-s`` skips checks that would start after it.

* ``sft``: bf16 SFT steps (torch backend: fp32 master weights, bf16 autocast, AdamW) of the project's
  tiny-shaped random-init model at ``--size`` (``0.5b``: 512M parameters, see bench_rl_gpu.SIZES) on
  synthetic sequences of uniform random length in [seq/8, seq] (1/8 prompt, the rest trained),
  ``--sft-batch`` sequences per optimizer step. Two arms over the same samples:
  *packed*: ``longcot.sft.packing.pack_step`` (first-fit-decreasing rows of ``--micro-tokens``,
  varlen attention: flash_attention_2 when importable, else sdpa_varlen) through
  ``longcot.sft.recipe.train_step``; *padded*: rows in data order, right-padded to the longest of their
  micro-batch (``attention_mask``, sdpa), micro-batches of at most ``--micro-tokens`` padded tokens.
  Where DeepSpeed is importable, a third arm *packed_zero2* runs the packed steps under DeepSpeed
  ZeRO-2 in a one-process group (torch AdamW as the client optimizer: no op build).
  Reported per arm (median of the timed steps after ``--warmup`` steps): real tokens/s, step time,
  padding fraction, peak CUDA memory, and MFU = (6 N + 12 L d c) x tokens/s / peak bf16 FLOP/s, with
  N the parameters (embedding lookup excluded), L layers, d hidden, c the mean causal context per
  trained token (the attention term; counted on real tokens only, so padding is waste).
* ``rl``: one RL run with HF rollouts (tests/perf/bench_rl_gpu.py ``--backends hf``): rollout
  tokens/s and step time (its JSON: ``$OUT/bench_rl_gpu.json``; the summary is copied here).
* ``logprobs``: the actor's log-probs + entropy forward and backward at ``--response`` response
  tokens (16K) with a Qwen2.5-sized vocabulary (151936), unchunked vs ``rl.logits_chunk_tokens``
  (``--chunk``): peak CUDA memory above the model's and seconds per call
  (:func:`longcot.rl.experience.action_logprobs`), and the largest log-prob difference.
* ``eval``: one eval chunk (``--eval-problems`` problems, ``eval.chunk_problems`` of the same size) of
  MATH-500 with the tiny model on CUDA through the real CLI (``stage=eval generation=hf``): wall time,
  samples/s, the summary (accuracy ~0 for a random model: this checks the path, not the model).
  Needs MATH-500 (``$LONGCOT_SHARED_DATA/math500/test.jsonl``; run_gpu_checks.sh ``prepare`` copies it).

CPU smoke test of every check (seconds to minutes; the numbers mean nothing there)::

    OMP_NUM_THREADS=1 python tests/perf/gpu_checks.py --device cpu --quick
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "perf"))

# dense bf16 peak FLOP/s (no sparsity) by GPU name substring, for MFU
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "L4": 121e12}


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


def _reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_flops(device, override_tflops: float) -> tuple[float | None, str]:
    import torch

    if override_tflops:
        return override_tflops * 1e12, "--peak-tflops"
    if device.type != "cuda":
        return None, "cpu"
    name = torch.cuda.get_device_name(device)
    for key, flops in PEAK_BF16.items():
        if key in name:
            return flops, name
    return None, name


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- sft
def synthetic_samples(n: int, seq: int, vocab: int, seed: int) -> list:
    """``n`` TokenizedExamples of uniform random length in [seq/8, seq]: 1/8 prompt, the rest trained."""
    from longcot.sft.data import IGNORE, TokenizedExample

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = rng.randint(max(2, seq // 8), seq)
        ids = [rng.randrange(3, vocab) for _ in range(length)]
        prompt = max(1, length // 8)
        targets = [IGNORE] * (prompt - 1) + ids[prompt:] + [IGNORE]
        out.append(TokenizedExample(tuple(ids), tuple(targets), prompt))
    return out


def padded_step(engine, samples, micro_tokens: int, pad_id: int) -> tuple[float, int, int]:
    """One optimizer step, classic padded batching: rows in data order, each micro-batch right-padded to
    its longest row, at most ``micro_tokens`` padded tokens. Returns (loss, real tokens, padded tokens)."""
    import torch

    from longcot.sft.data import IGNORE

    total_targets = sum(s.num_targets for s in samples)
    micro, cur = [], []
    for s in samples:
        if cur and (len(cur) + 1) * max(len(s), max(len(x) for x in cur)) > micro_tokens:
            micro.append(cur)
            cur = []
        cur.append(s)
    micro.append(cur)
    real = padded = 0
    loss_sum = 0.0
    for j, rows in enumerate(micro):
        width = max(len(s) for s in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        tgt = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, s in enumerate(rows):
            ids[r, :len(s)] = torch.tensor(s.input_ids)
            tgt[r, :len(s)] = torch.tensor(s.targets)
            mask[r, :len(s)] = 1
        real += int(mask.sum())
        padded += ids.numel()
        ids, tgt, mask = ids.to(engine.device), tgt.to(engine.device), mask.to(engine.device)
        with engine.micro_batch(last=j == len(micro) - 1):
            logits = engine(input_ids=ids, attention_mask=mask, use_cache=False).logits
            s = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                                                  ignore_index=IGNORE, reduction="sum")
            engine.backward(s / max(total_targets, 1))
        loss_sum += float(s.detach())
    engine.step()
    return loss_sum / max(total_targets, 1), real, padded


def check_sft(args, device) -> dict[str, Any]:
    import torch

    import longcot.training.attention  # noqa: F401  (registers sdpa_varlen)
    from bench_rl_gpu import SIZES, _count_params
    from longcot.models.config import ModelConfig
    from longcot.models.tiny import ensure_tiny
    from longcot.models.loading import load_model_and_tokenizer
    from longcot.sft.packing import pack_step
    from longcot.sft.recipe import train_step
    from longcot.training.attention import resolve_attn
    from longcot.training.engine import Engine, EngineConfig

    cfg = ModelConfig(name=f"tiny-{args.size}", path="tiny", tiny_max_position=max(2048, args.seq), **SIZES[args.size])
    t0 = time.perf_counter()
    path = ensure_tiny(cfg)
    conf = json.loads((path / "config.json").read_text())
    info = {"size": args.size, "params": _count_params(path), "build_or_cache_s": round(time.perf_counter() - t0, 1),
            "hidden": conf["hidden_size"], "layers": conf["num_hidden_layers"], "heads": conf["num_attention_heads"],
            "vocab": conf["vocab_size"], "max_position": conf["max_position_embeddings"]}
    steps = args.warmup + args.steps
    samples = [synthetic_samples(args.sft_batch, args.seq, info["vocab"], seed=s) for s in range(steps)]
    trained_tokens = [sum(len(x) for x in step) for step in samples]
    ctx = sum(len(x) * (len(x) + 1) / 2 for step in samples for x in step) / sum(trained_tokens)
    n_params = info["params"] - info["vocab"] * info["hidden"]  # the embedding lookup does no matmul
    flops_per_token = 6 * n_params + 12 * info["layers"] * info["hidden"] * ctx
    peak, gpu = peak_flops(device, args.peak_tflops)
    precision = "bf16" if device.type == "cuda" else "float32"
    out: dict[str, Any] = {"model": info, "seq_max": args.seq, "sequences_per_step": args.sft_batch,
                           "micro_tokens": args.micro_tokens, "precision": precision, "mean_causal_context": round(ctx, 1),
                           "flops_per_token": flops_per_token, "peak_flops": peak, "peak_flops_source": gpu, "arms": {}}

    def arm(name: str, attn: str, run_step: Callable, backend: str = "torch") -> None:
        _reset_peak(device)
        model, tok = load_model_and_tokenizer(cfg, device=str(device), dtype="float32", attn_implementation=attn)
        engine = Engine(model, EngineConfig(learning_rate=1e-5, total_steps=steps, warmup_ratio=0.0, backend=backend,
                                            zero_stage=2, precision=precision), device=device)
        times, losses, real_all, padded_all = [], [], 0, 0
        for i, step in enumerate(samples):
            _sync(device)
            t0 = time.perf_counter()
            loss, real, padded = run_step(engine, step, tok)
            _sync(device)
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
                real_all += real
                padded_all += padded
            losses.append(round(loss, 5))
        step_s = statistics.median(times)
        tps = real_all / len(times) / step_s
        out["arms"][name] = {"attn": attn, "backend": backend, "step_s": round(step_s, 4), "tokens_per_s": round(tps, 1),
                             "padding_fraction": round(1 - real_all / padded_all, 4) if padded_all else 0.0,
                             "mfu": round(flops_per_token * tps / peak, 4) if peak else None,
                             "peak_mem_mb": _peak_mb(device), "losses": losses}
        print(f"sft {name}: {out['arms'][name]}", flush=True)
        del engine, model
        gc.collect()

    varlen = resolve_attn("auto", device, fallback="sdpa_varlen")

    def packed(engine, step, tok):
        batches = pack_step(step, args.micro_tokens)
        loss, _ = train_step(engine, batches, attn_implementation=varlen)
        n = sum(b.num_tokens for b in batches)
        return loss, n, n

    def padded(engine, step, tok):
        return padded_step(engine, step, args.micro_tokens, tok.pad_token_id if tok.pad_token_id is not None else 0)

    arm("packed", varlen, packed)
    arm("padded", "sdpa", padded)
    if importlib.util.find_spec("deepspeed") is None:
        out["arms"]["packed_zero2"] = {"skipped": "deepspeed is not importable"}
    else:  # DeepSpeed ZeRO-2 in a one-process group (torch's AdamW as its client optimizer: no op build)
        group = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
        saved = {k: os.environ.get(k) for k in group}
        os.environ.update(group)
        try:
            arm("packed_zero2", varlen, packed, backend="deepspeed")
        except Exception as exc:  # recorded; the torch arms stand
            out["arms"]["packed_zero2"] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        finally:
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
    p, q = out["arms"]["packed"], out["arms"]["padded"]
    out["packed_over_padded_tokens_per_s"] = round(p["tokens_per_s"] / q["tokens_per_s"], 3)
    # the same samples and weights: the arms' first-step losses agree up to kernel / bf16 differences
    out["first_loss_rel_diff"] = round(abs(p["losses"][0] - q["losses"][0]) / max(abs(q["losses"][0]), 1e-9), 5)
    return out


# --------------------------------------------------------------------------- rl
def check_rl(args, device, json_dir: Path) -> dict[str, Any]:
    path = json_dir / "bench_rl_gpu.json"
    cmd = [sys.executable, "-u", str(REPO / "tests" / "perf" / "bench_rl_gpu.py"), "--device", device.type, "--size", args.size,
           "--backends", "hf", "--algos", "grpo", "--prompts", str(args.rl_prompts), "--group", str(args.rl_group),
           "--max-new", str(args.rl_max_new), "--steps", str(args.rl_steps), "--json", str(path)]
    env = {k: v for k, v in os.environ.items() if k != "OUT"}  # its JSON goes to --json
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.rl_timeout_s)
    if proc.returncode != 0 or not path.is_file():
        raise RuntimeError(f"bench_rl_gpu.py exit {proc.returncode}: {(proc.stdout + proc.stderr)[-2000:]}")
    bench = json.loads(path.read_text())
    runs = bench.get("runs", [])
    return {"json": str(path), "model": bench.get("model"), "runs": runs}


# --------------------------------------------------------------------------- logprobs
def check_logprobs(args, device) -> dict[str, Any]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from longcot.rl.experience import action_logprobs, build_rollout

    torch.manual_seed(0)
    total = args.prompt + args.response
    cfg = LlamaConfig(vocab_size=args.vocab, hidden_size=args.lp_hidden, intermediate_size=4 * args.lp_hidden,
                      num_hidden_layers=args.lp_layers, num_attention_heads=args.lp_hidden // 64,
                      num_key_value_heads=max(1, args.lp_hidden // 64 // 7) if args.lp_hidden >= 448 else args.lp_hidden // 64,
                      max_position_embeddings=total, tie_word_embeddings=False)
    model = LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa").float().to(device).train()
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(3, args.vocab, (args.prompt,), generator=g).tolist()
    response = torch.randint(3, args.vocab, (args.response,), generator=g).tolist()
    ro = build_rollout([prompt], [response], [False], eos_id=2, pad_id=0)
    ro = ro.to(device)
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    out: dict[str, Any] = {"vocab": args.vocab, "hidden": args.lp_hidden, "layers": args.lp_layers, "prompt": args.prompt,
                           "response": args.response, "chunk_tokens": args.chunk,
                           "params": sum(p.numel() for p in model.parameters()), "runs": {}}
    results = {}
    for name, chunk in (("chunked", args.chunk), ("unchunked", None)):
        model.zero_grad(set_to_none=True)
        gc.collect()
        _reset_peak(device)
        base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
        times = []
        try:
            for _ in range(args.lp_repeats):
                model.zero_grad(set_to_none=False)  # the peak includes the grads (the same in both runs)
                _sync(device)
                t0 = time.perf_counter()
                with autocast:
                    logp, ent = action_logprobs(model, ro, with_entropy=True, chunk_tokens=chunk)
                loss = -(logp.sum() + 0.01 * (ent * ro.action_mask).sum())
                loss.backward()
                _sync(device)
                times.append(time.perf_counter() - t0)
                results[name] = logp.detach().float().cpu()
                del logp, ent, loss
            peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20 if device.type == "cuda" else None
            out["runs"][name] = {"s_per_call": round(statistics.median(times), 4),
                                 "peak_mem_above_model_mb": round(peak, 1) if peak is not None else None}
        except torch.cuda.OutOfMemoryError as exc:  # the point of chunking: record it, go on
            out["runs"][name] = {"error": f"OutOfMemoryError: {str(exc).splitlines()[0]}"}
        print(f"logprobs {name}: {out['runs'][name]}", flush=True)
    if len(results) == 2:
        out["max_abs_logprob_diff"] = float((results["chunked"] - results["unchunked"]).abs().max())
        a, b = out["runs"]["chunked"], out["runs"]["unchunked"]
        if a.get("peak_mem_above_model_mb") and b.get("peak_mem_above_model_mb"):
            out["unchunked_over_chunked_peak"] = round(b["peak_mem_above_model_mb"] / a["peak_mem_above_model_mb"], 2)
    return out


# --------------------------------------------------------------------------- eval
def check_eval(args, device, work: Path) -> dict[str, Any]:
    from longcot.data import shared_data_dir

    data = shared_data_dir() / "math500" / "test.jsonl"
    if not data.is_file():
        return {"skipped": f"no MATH-500 file at {data} (set LONGCOT_SHARED_DATA; run_gpu_checks.sh prepare copies it)"}
    n = args.eval_problems
    cmd = [sys.executable, "-m", "longcot", "stage=eval", "model=tiny", "benchmark=math500", "scale=full", "logger=none",
           f"benchmark.limit={n}", f"eval.chunk_problems={n}", "benchmark.num_samples=1", "benchmark.temperature=0.0",
           f"benchmark.max_new_tokens={args.eval_max_new}", "generation=hf", f"generation.device={device.type}",
           f"generation.batch_size={n}", "eval.grader_workers=2", f"output_root={work / 'eval'}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.eval_timeout_s, cwd=REPO)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"eval exit {proc.returncode}: {(proc.stdout + proc.stderr)[-2000:]}")
    summaries = sorted((work / "eval").rglob("summary.json"))
    if not summaries:
        raise RuntimeError("eval finished without a summary.json")
    summary = json.loads(summaries[-1].read_text())
    chunks = list((summaries[-1].parent / "chunks").glob("*")) if (summaries[-1].parent / "chunks").is_dir() else []
    return {"problems": n, "max_new_tokens": args.eval_max_new, "wall_s": round(wall, 1),
            "samples_per_s": round(n / wall, 3), "chunks": len(chunks), "run_dir": str(summaries[-1].parent),
            "summary": {k: v for k, v in summary.items() if not isinstance(v, (list, dict)) or k in ("timing", "time")}}


# --------------------------------------------------------------------------- driver
def versions(device) -> dict[str, Any]:
    import torch
    import transformers

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "transformers": transformers.__version__, "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["gpu_mem_gb"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
    for mod in ("flash_attn", "accelerate", "deepspeed", "vllm"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # absent (or broken): recorded as such
            info[mod] = None
    return info


QUICK = {"size": "tiny", "seq": 256, "sft_batch": 8, "micro_tokens": 1024, "steps": 2, "warmup": 1,
         "rl_prompts": 2, "rl_group": 2, "rl_max_new": 8, "rl_steps": 2, "vocab": 4096, "lp_hidden": 128,
         "lp_layers": 1, "prompt": 16, "response": 512, "chunk": 128, "lp_repeats": 1, "eval_problems": 2,
         "eval_max_new": 8}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--checks", default="sft,logprobs,rl,eval", help="comma list of sft, logprobs, rl, eval (in order)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes everywhere (CPU smoke test of every check)")
    ap.add_argument("--budget-s", type=float, default=0, help="skip checks starting after this many seconds (0: none)")
    ap.add_argument("--json", default=None, help="output JSON (default: $OUT/gpu_checks.json or a temp dir)")
    ap.add_argument("--peak-tflops", type=float, default=0, help="peak bf16 TFLOP/s for MFU (default: by GPU name)")
    ap.add_argument("--size", default="0.5b", help="sft / rl model shape (bench_rl_gpu.SIZES)")
    ap.add_argument("--seq", type=int, default=4096, help="sft: longest sequence")
    ap.add_argument("--sft-batch", type=int, default=32, help="sft: sequences per optimizer step")
    ap.add_argument("--micro-tokens", type=int, default=16384, help="sft: tokens per micro-batch (packed row / padded batch)")
    ap.add_argument("--steps", type=int, default=3, help="sft: timed steps per arm")
    ap.add_argument("--warmup", type=int, default=1, help="sft: untimed steps first")
    ap.add_argument("--rl-prompts", type=int, default=8)
    ap.add_argument("--rl-group", type=int, default=8)
    ap.add_argument("--rl-max-new", type=int, default=256)
    ap.add_argument("--rl-steps", type=int, default=3)
    ap.add_argument("--rl-timeout-s", type=int, default=240)
    ap.add_argument("--vocab", type=int, default=151936, help="logprobs: vocabulary (Qwen2.5's)")
    ap.add_argument("--lp-hidden", type=int, default=896, help="logprobs: hidden size (Qwen2.5-0.5B's)")
    ap.add_argument("--lp-layers", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=256)
    ap.add_argument("--response", type=int, default=16384)
    ap.add_argument("--chunk", type=int, default=1024, help="logprobs: chunk_tokens of the chunked run")
    ap.add_argument("--lp-repeats", type=int, default=2)
    ap.add_argument("--eval-problems", type=int, default=64)
    ap.add_argument("--eval-max-new", type=int, default=512)
    ap.add_argument("--eval-timeout-s", type=int, default=180)
    args = ap.parse_args()
    if args.quick:
        given = {a.lstrip("-").split("=")[0].replace("-", "_") for a in sys.argv[1:] if a.startswith("--")}
        for k, v in QUICK.items():
            if k not in given:
                setattr(args, k, v)

    import torch

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    if os.environ.get("OUT") and not args.json:
        json_path = Path(os.environ["OUT"]) / "gpu_checks.json"
    elif args.json:
        json_path = Path(args.json)
    else:
        json_path = Path(tempfile.mkdtemp(prefix="gpu_checks-")) / "gpu_checks.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu_checks-work-"))
    t_start = time.perf_counter()
    result: dict[str, Any] = {"env": versions(device), "args": vars(args), "checks": {}, "json": str(json_path)}

    def save() -> None:
        result["wall_s"] = round(time.perf_counter() - t_start, 1)
        tmp = json_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=1, default=str) + "\n")
        tmp.replace(json_path)

    save()
    checks = {"sft": lambda: check_sft(args, device), "logprobs": lambda: check_logprobs(args, device),
              "rl": lambda: check_rl(args, device, json_path.parent), "eval": lambda: check_eval(args, device, work)}
    for name in [c.strip() for c in args.checks.split(",") if c.strip()]:
        if name not in checks:
            raise SystemExit(f"--checks: unknown check {name!r}; valid: {', '.join(checks)}")
        elapsed = time.perf_counter() - t_start
        if args.budget_s and elapsed > args.budget_s:
            result["checks"][name] = {"skipped": f"budget: {elapsed:.0f} s > --budget-s {args.budget_s:.0f}"}
            save()
            continue
        print(f"[gpu_checks +{elapsed:.0f}s] {name}", flush=True)
        t0 = time.perf_counter()
        try:
            out = checks[name]()
            out["check_s"] = round(time.perf_counter() - t0, 1)
            result["checks"][name] = out
        except Exception as exc:  # recorded; the next check runs
            result["checks"][name] = {"error": f"{type(exc).__name__}: {exc}"[:3000], "traceback": traceback.format_exc()[-3000:],
                                      "check_s": round(time.perf_counter() - t0, 1)}
            print(f"{name} FAILED: {type(exc).__name__}: {exc}", flush=True)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        save()
    failed = [k for k, v in result["checks"].items() if "error" in v]
    print(f"gpu checks done in {time.perf_counter() - t_start:.0f} s; json: {json_path}; failed: {failed or 'none'}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
