"""RL loop throughput on one GPU (H200), ~0.5B random-init model: rollout tokens/s and step time, HF vs vLLM.

Runs :func:`longcot.rl.recipe.train` for ``--steps`` steps (the first is warm-up: CUDA context, kernel
autotuning, allocator growth) on toy prompts (:func:`longcot.data.toy.toy_problems`) for each
algorithm in ``--algos`` (GRPO, optionally PPO) and each rollout backend in ``--backends`` (``hf``: the
in-memory actor through ``HFGenerator``; ``vllm``: a colocated ``VLLMGenerator`` whose weights are
re-pushed after every update), ``rl.device=auto`` and ``rl.precision=bf16`` on CUDA (float32 on CPU).
From each run's per-step records (``metrics.jsonl``) it reports the median over steps 2..N of:

* rollout tokens/s = prompts x group x ``response_length_mean`` / ``time_generate_s``;
* step time and its split: generate / reward / experience (log-probs, values, advantages) / update
  (optimizer steps) / weight push (vLLM only) / rest;
* the vLLM / HF rollout throughput ratio, per algorithm, measured in the same process;
* ``torch.cuda.max_memory_allocated`` of each run (this process only: a vLLM engine core running in
  its own process is not counted), the GPU name, torch / transformers / vLLM versions.

The model is the project's tiny model (:func:`longcot.models.tiny.ensure_tiny`: locally trained
byte-level BPE tokenizer, random-init Llama, vocab = the tokenizer's size, so sampled ids decode)
built at a larger shape, locally (no downloads): ``--size 0.5b`` is hidden 1152, 24 layers, 18 heads
(head size 64), MLP 4 x hidden, vocab 1024 = 512.0M parameters (built in ~20 s on a CPU). A random-init model almost never
samples EOS, so nearly every response runs to ``--max-new`` tokens (reported as the mean length).

Results go to ``$OUT/bench_rl_gpu.json`` when ``$OUT`` is set (the device machine returns files
under ``$OUT``), else to ``--json`` or a temp dir; the JSON is rewritten after every run, so a run
killed by its time limit still leaves the finished rows. A run that fails (vLLM not importable, out
of memory, ...) is recorded with its error and the others go on; ``--budget-s`` skips the runs that
would start after that many seconds.

On the device machine (bare, no network, the image's python3 with torch + transformers; see
tests/perf/run_bench_rl_gpu.sh, which installs what it can and runs this with a time budget)::

    bash tests/perf/run_bench_rl_gpu.sh prepare    # here, once, where pip works: the missing pure-Python deps -> .whl/
    bash tests/perf/run_bench_rl_gpu.sh            # there (run tool: carry [".whl"], timeout_s 540)
                                                   # = python tests/perf/bench_rl_gpu.py --backends hf,vllm --algos grpo,ppo

Where vLLM is not importable (the bare device image has none, and no network to install it), the
vllm rows are recorded as skipped and the HF rows are still measured.

CPU smoke test (tiny model, a minute or two on 1 thread)::

    OMP_NUM_THREADS=1 python tests/perf/bench_rl_gpu.py --device cpu --size tiny --backends hf \\
        --prompts 2 --group 4 --max-new 16 --steps 3
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

# Model shapes (ModelConfig tiny_* overrides). MLP = 4 x hidden, untied embeddings, vocab 1024.
SIZES: dict[str, dict[str, int]] = {
    "tiny": {},  # ModelConfig's defaults: hidden 128, 3 layers, 4 heads (head size 32): 1.05M params
    "small": {"tiny_hidden_size": 512, "tiny_layers": 8, "tiny_heads": 8},  # 34.6M, head size 64
    "0.5b": {"tiny_hidden_size": 1152, "tiny_layers": 24, "tiny_heads": 18},  # 512.0M, head size 64
}


def _versions() -> dict[str, Any]:
    import torch
    import transformers

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "transformers": transformers.__version__, "cuda_available": torch.cuda.is_available()}
    try:
        import vllm

        info["vllm"] = vllm.__version__
    except Exception as exc:  # noqa: BLE001 - not installed, or a broken install
        info["vllm"] = f"not importable ({type(exc).__name__}: {str(exc)[:120]})"
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return info


def _count_params(model_dir: Path) -> int:
    """Parameters from the safetensors headers (no weights loaded)."""
    total = 0
    for f in sorted(model_dir.glob("*.safetensors")):
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        for key, meta in header.items():
            if key != "__metadata__":
                count = 1
                for d in meta["shape"]:
                    count *= int(d)
                total += count
    return total


def build_model(size: str):
    """The ModelConfig of the tiny model at ``size``, built (or found in the cache) now; and its stats."""
    from longcot.models.config import ModelConfig
    from longcot.models.tiny import ensure_tiny

    cfg = ModelConfig(name=f"tiny-{size}", path="tiny", **SIZES[size])
    t0 = time.perf_counter()
    path = ensure_tiny(cfg)
    build_s = time.perf_counter() - t0
    conf = json.loads((path / "config.json").read_text())
    from transformers import AutoTokenizer

    vocab_tok = len(AutoTokenizer.from_pretrained(path))
    info = {"size": size, "path": str(path), "params": _count_params(path), "build_or_cache_s": round(build_s, 1),
            "hidden": conf["hidden_size"], "layers": conf["num_hidden_layers"], "heads": conf["num_attention_heads"],
            "head_size": conf["hidden_size"] // conf["num_attention_heads"], "intermediate": conf["intermediate_size"],
            "vocab": conf["vocab_size"], "tokenizer_len": vocab_tok}
    if info["vocab"] != vocab_tok:
        raise RuntimeError(f"model vocab {info['vocab']} != tokenizer size {vocab_tok}: sampled ids would not decode")
    return cfg, info


def algorithm(name: str, args):
    from longcot.rl.config import AlgorithmConfig

    n = args.prompts * args.group
    common = dict(rollout_batch_size=args.prompts, samples_per_prompt=args.group, train_batch_size=n,
                  micro_train_batch_size=min(args.micro, n) if n % min(args.micro, n) == 0 else n,
                  max_new_tokens=args.max_new, temperature=1.0, top_p=1.0, warmup_ratio=0.0, episodes=1000)
    if name == "grpo":  # GRPO: group advantages, k3 KL in the loss (as conf/algorithm/grpo)
        return AlgorithmConfig(name="grpo", advantage="group", kl_estimator="k3", kl_in="loss", kl_coef=0.01,
                               learning_rate=1e-6, critic_learning_rate=None, value_clip=None, **common)
    if name == "ppo":  # the paper's PPO: critic + GAE, k1 KL in the reward
        return AlgorithmConfig(name="ppo", advantage="gae", learning_rate=5e-7, critic_learning_rate=9e-6, **common)
    raise ValueError(f"unknown algorithm {name!r}; valid: grpo, ppo")


def one_run(model_cfg, problems, algo_name: str, backend: str, args, work: Path) -> dict[str, Any]:
    import torch

    from longcot.generation.config import GenerationConfig
    from longcot.models.config import ModelConfig
    from longcot.rl.config import RLConfig
    from longcot.rl.recipe import train

    on_cuda = args.device != "cpu" and torch.cuda.is_available()
    n = args.prompts * args.group
    engines: list[Any] = []

    def factory(weights_dir):
        from longcot.generation.vllm import VLLMGenerator

        gen_cfg = GenerationConfig(backend="vllm", device="cuda" if on_cuda else "cpu",
                                   gpu_memory_utilization=args.gpu_mem, enforce_eager=args.enforce_eager)
        t0 = time.perf_counter()
        gen = VLLMGenerator(ModelConfig(name="rl-actor", path=str(weights_dir), max_model_len=args.max_model_len),
                            gen_cfg)
        engines.append((gen, time.perf_counter() - t0))
        return gen

    rl = RLConfig(max_steps=args.steps, save_every=10**6, rollout_backend=backend, device=args.device,
                  precision="bf16" if on_cuda else "float32", generate_batch_size=n,
                  forward_batch_size=min(args.forward_batch, n), seed=0)
    if on_cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    run_dir = work / f"{algo_name}-{backend}"
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    try:
        res = train(run_dir, model=model_cfg, problems=problems, algorithm=algorithm(algo_name, args),
                    reward={"name": "classic", "kind": "classic", "margin": 0}, rl=rl, vllm_factory=factory,
                    progress=False)
        wall = time.perf_counter() - t0
        records = res.records
    finally:
        for gen, _ in engines:  # best effort: free the engine's memory before the next run
            try:
                core = getattr(getattr(gen.llm, "llm_engine", None), "engine_core", None)
                if core is not None and hasattr(core, "shutdown"):
                    core.shutdown()
            except Exception:  # noqa: BLE001
                pass
        shutil.rmtree(run_dir, ignore_errors=True)
    timed = records[1:] if len(records) > 1 else records  # step 1 is warm-up
    med = lambda k: statistics.median(float(r.get(k, 0.0)) for r in timed)  # noqa: E731
    tok_s = [n * float(r["response_length_mean"]) / float(r["time_generate_s"]) for r in timed]
    out: dict[str, Any] = {
        "algo": algo_name, "backend": backend, "steps": len(records), "timed_steps": len(timed),
        "responses_per_step": n, "mean_len": statistics.mean(float(r["response_length_mean"]) for r in timed),
        "truncation_ratio": statistics.mean(float(r["truncation_ratio"]) for r in timed),
        "rollout_tok_s": statistics.median(tok_s), "step_s": med("step_time_s"), "generate_s": med("time_generate_s"),
        "reward_s": med("time_reward_s"), "experience_s": med("time_experience_s"), "update_s": med("time_update_s"), "weight_push_s": med("weight_push_s"),
        "first_step_s": float(records[0]["step_time_s"]), "run_wall_s": wall,
        "per_step": [{k: r.get(k) for k in ("step", "step_time_s", "time_generate_s", "time_reward_s",
                                            "time_experience_s", "time_update_s", "weight_push_s", "response_length_mean")}
                     for r in records],
    }
    out["rest_s"] = (out["step_s"] - out["generate_s"] - out["reward_s"] - out["experience_s"] - out["update_s"]
                     - out["weight_push_s"])
    if engines:
        out["engine_start_s"] = engines[0][1]
    if on_cuda:
        out["max_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def print_table(result: dict[str, Any]) -> None:
    env, model = result["env"], result["model"]
    a = result["args"]
    print()
    print(f"device: {env.get('gpu', 'cpu')} | torch {env['torch']} | transformers {env['transformers']} | "
          f"vllm {env['vllm']}")
    print(f"model: {model['params'] / 1e6:.1f}M params (hidden {model['hidden']}, {model['layers']} layers, "
          f"{model['heads']} heads of {model['head_size']}, MLP {model['intermediate']}, vocab {model['vocab']}) "
          f"| {a['prompts']} prompts x {a['group']} = {a['prompts'] * a['group']} responses/step, "
          f"<= {a['max_new']} new tokens, {a['steps']} steps (median of 2..N)")
    head = (f"{'algo':5s} {'backend':7s} {'tok/s':>9s} {'step s':>7s} {'gen':>7s} {'reward':>7s} {'exper':>7s} {'update':>7s} "
            f"{'push':>6s} {'rest':>6s} {'len':>6s} {'1st s':>7s} {'mem GiB':>8s}")
    print(head)
    print("-" * len(head))
    for r in result["runs"]:
        if "error" in r:
            status = "SKIPPED" if r["error"].startswith("skipped") else "FAILED"
            print(f"{r['algo']:5s} {r['backend']:7s} {status}: {r['error'].splitlines()[-1][:100]}")
            continue
        mem = f"{r['max_mem_gib']:8.1f}" if "max_mem_gib" in r else f"{'-':>8s}"
        print(f"{r['algo']:5s} {r['backend']:7s} {r['rollout_tok_s']:9.0f} {r['step_s']:7.2f} {r['generate_s']:7.2f} "
              f"{r['reward_s']:7.2f} {r['experience_s']:7.2f} {r['update_s']:7.2f} {r['weight_push_s']:6.2f} {r['rest_s']:6.2f} "
              f"{r['mean_len']:6.1f} {r['first_step_s']:7.2f} {mem}")
    for algo, ratio in result.get("vllm_over_hf_rollout", {}).items():
        print(f"{algo}: vLLM / HF rollout tokens/s = {ratio:.2f}x")
    print(f"total wall {result['wall_s']:.0f} s; json: {result['json']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--size", default="0.5b", choices=tuple(SIZES))
    ap.add_argument("--backends", default="hf,vllm", help="comma list of hf, vllm (hf runs first)")
    ap.add_argument("--algos", default="grpo", help="comma list of grpo, ppo")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--max-new", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3, help="RL steps per run; the first is warm-up (>= 2)")
    ap.add_argument("--micro", type=int, default=16, help="micro train batch (responses)")
    ap.add_argument("--forward-batch", type=int, default=32, help="responses per no-grad forward")
    ap.add_argument("--gpu-mem", type=float, default=0.3, help="vLLM gpu_memory_utilization (shares the GPU)")
    ap.add_argument("--enforce-eager", action="store_true", help="vLLM without CUDA graphs / compile")
    ap.add_argument("--max-model-len", type=int, default=1024, help="vLLM context (prompt + max_new)")
    ap.add_argument("--budget-s", type=float, default=0, help="skip runs starting after this many seconds (0: none)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave)")
    ap.add_argument("--json", default=None, help="output JSON (default: $OUT/bench_rl_gpu.json or a temp dir)")
    args = ap.parse_args()
    if args.steps < 2:
        ap.error("--steps must be >= 2 (step 1 is warm-up)")
    t_start = time.perf_counter()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: CUDA is not available")
    backends = [b for b in ("hf", "vllm") if b in args.backends.split(",")]
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    if args.max_model_len < args.max_new + 128:
        args.max_model_len = args.max_new + 128

    if os.environ.get("OUT"):
        json_path = Path(os.environ["OUT"]) / "bench_rl_gpu.json"
    elif args.json:
        json_path = Path(args.json)
    else:
        json_path = Path(tempfile.mkdtemp(prefix="bench_rl_gpu-")) / "bench_rl_gpu.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench_rl_gpu-runs-"))

    env = _versions()
    print("env:", json.dumps(env), flush=True)
    model_cfg, model = build_model(args.size)
    print(f"model: {model['params']:,} parameters, vocab {model['vocab']} (= tokenizer), built/cached in "
          f"{model['build_or_cache_s']} s at {model['path']}", flush=True)

    from longcot.data.toy import toy_problems
    from longcot.grading.by_kind import grade_batch

    problems = toy_problems(args.prompts * (args.steps + 1), 0)
    grade_batch(problems[:1], ["\\boxed{0}"])  # start the grader pool outside the timed steps

    result: dict[str, Any] = {"env": env, "model": model, "args": vars(args), "runs": [], "json": str(json_path)}

    def save() -> None:
        result["wall_s"] = time.perf_counter() - t_start
        ok = {(r["algo"], r["backend"]): r for r in result["runs"] if "error" not in r}
        result["vllm_over_hf_rollout"] = {a: ok[(a, "vllm")]["rollout_tok_s"] / ok[(a, "hf")]["rollout_tok_s"]
                                          for a in algos if (a, "hf") in ok and (a, "vllm") in ok}
        json_path.write_text(json.dumps(result, indent=1) + "\n")

    for backend in backends:
        for algo_name in algos:
            elapsed = time.perf_counter() - t_start
            if args.budget_s and elapsed > args.budget_s:
                print(f"[skip] {algo_name}/{backend}: {elapsed:.0f} s > --budget-s {args.budget_s:.0f}", flush=True)
                result["runs"].append({"algo": algo_name, "backend": backend, "error": "skipped: time budget"})
                save()
                continue
            if backend == "vllm" and not str(env["vllm"])[:1].isdigit():
                print(f"[skip] {algo_name}/vllm: vllm {env['vllm']}", flush=True)
                result["runs"].append({"algo": algo_name, "backend": backend, "error": f"skipped: vllm {env['vllm']}"})
                save()
                continue
            print(f"[run] {algo_name}/{backend} ...", flush=True)
            try:
                row = one_run(model_cfg, problems, algo_name, backend, args, work)
                print(f"[done] {algo_name}/{backend}: {row['rollout_tok_s']:.0f} tok/s, step {row['step_s']:.2f} s, "
                      f"wall {row['run_wall_s']:.0f} s", flush=True)
            except Exception:  # noqa: BLE001 - record it, go on with the next run
                err = traceback.format_exc()
                print(f"[fail] {algo_name}/{backend}:\n{err[-2000:]}", flush=True)
                row = {"algo": algo_name, "backend": backend, "error": err[-4000:]}
            result["runs"].append(row)
            gc.collect()
            save()
    save()
    shutil.rmtree(work, ignore_errors=True)
    print_table(result)


if __name__ == "__main__":
    main()
