"""RL step time on CPU, tiny model: this repo's GRPO loop vs TRL's GRPOTrainer, same work, one run.

Same prompts (toy task), same batch (``--prompts`` x ``--group`` completions per step, one optimizer
step per rollout), same sampling (t = 1.0, top-p 1.0, up to ``--max-new`` tokens), same reward (the
rule grader on the toy answers), same KL (k3 to a frozen reference, coefficient 0.01, in the loss),
same loss aggregation (per-sequence token mean = TRL ``loss_type="grpo"``), one thread each. Reports
the median over steps 2..N of the step time and its split generate / reward / rest (log-probs +
update), and the ratio ours / TRL (goal <= 1.0).

TRL is the ``bench`` extra; keep it out of the main venv (it pulls accelerate), e.g.::

    python3 -m venv .venv-rl
    echo "$PWD/.venv/lib/python3.11/site-packages" > .venv-rl/lib/python3.11/site-packages/main-venv.pth
    .venv-rl/bin/pip install 'trl>=0.20'
    .venv-rl/bin/python tests/perf/bench_rl.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from longcot.config.schema import ModelConfig  # noqa: E402
from longcot.data.prompts import chat_prompt  # noqa: E402
from longcot.data.toy import toy_problems  # noqa: E402
from longcot.grading.by_kind import grade_batch  # noqa: E402


def ours(problems, args) -> dict[str, float]:
    from longcot.rl.config import AlgorithmConfig, RLConfig
    from longcot.rl.recipe import train

    n = args.prompts * args.group
    algo = AlgorithmConfig(
        name="grpo", advantage="group", kl_estimator="k3", kl_in="loss", kl_coef=0.01, whiten_advantages=False,
        learning_rate=1e-6, critic_learning_rate=None, value_clip=None, rollout_batch_size=args.prompts,
        samples_per_prompt=args.group, train_batch_size=n, micro_train_batch_size=n, max_new_tokens=args.max_new,
        temperature=1.0, top_p=1.0, warmup_ratio=0.0, episodes=1000,
    )
    with tempfile.TemporaryDirectory() as tmp:
        res = train(Path(tmp) / "run", model=ModelConfig(name="tiny", path="tiny"), problems=problems, algorithm=algo,
                    reward={"name": "classic", "kind": "classic", "margin": 0},
                    rl=RLConfig(max_steps=args.steps, save_every=10**6, generate_batch_size=n, forward_batch_size=n),
                    progress=False)
    recs = res.records[1:]
    med = lambda k: statistics.median(r[k] for r in recs)  # noqa: E731
    step = med("step_time_s")
    gen, rew = med("time_generate_s"), med("time_reward_s")
    lengths = statistics.mean(r["response_length_mean"] for r in recs)
    return {"step": step, "generate": gen, "reward": rew, "rest": step - gen - rew, "mean_len": lengths}


def trl(problems, args) -> dict[str, float]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from longcot.models.loading import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(ModelConfig(name="tiny", path="tiny"), device="cpu")
    model.train()
    ds = Dataset.from_list([{"prompt": chat_prompt(p), "answer": p.answer, "kind": p.kind, "pid": p.id}
                            for p in problems])
    by_id = {p.id: p for p in problems}

    def reward(completions, pid, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [float(v) for v in grade_batch([by_id[i] for i in pid], texts)]

    n = args.prompts * args.group
    with tempfile.TemporaryDirectory() as tmp:
        cfg = GRPOConfig(
            output_dir=tmp, use_cpu=True, report_to=[], logging_steps=1, save_strategy="no", disable_tqdm=True,
            per_device_train_batch_size=n, gradient_accumulation_steps=1, steps_per_generation=1,
            num_generations=args.group, max_completion_length=args.max_new, temperature=1.0, top_p=1.0,
            learning_rate=1e-6, beta=0.01, num_iterations=1, loss_type="grpo", max_steps=args.steps,
            bf16=False, seed=0, dataloader_num_workers=0,
        )
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=cfg, train_dataset=ds, processing_class=tok)
        times: dict[str, list[float]] = {"generate": [], "reward": [], "step": []}

        def timed(name, fn):
            def wrapper(*a, **kw):
                t0 = time.perf_counter()
                out = fn(*a, **kw)
                times[name].append(time.perf_counter() - t0)
                return out
            return wrapper

        trainer._generate = timed("generate", trainer._generate)
        trainer._calculate_rewards = timed("reward", trainer._calculate_rewards)

        class StepTimer(TrainerCallback):
            def on_step_begin(self, *a, **kw):
                self.t0 = time.perf_counter()

            def on_step_end(self, *a, **kw):
                times["step"].append(time.perf_counter() - self.t0)

        trainer.add_callback(StepTimer())
        trainer.train()
        lens = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
    med = {k: statistics.median(v[1:]) for k, v in times.items()}
    return {"step": med["step"], "generate": med["generate"], "reward": med["reward"],
            "rest": med["step"] - med["generate"] - med["reward"], "mean_len": statistics.mean(lens[1:]) if lens else 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--max-new", type=int, default=32)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    problems = toy_problems(args.prompts * (args.steps + 1), 0)
    grade_batch(problems[:1], ["\\boxed{0}"])  # start the grader pool outside the timed steps
    print(f"tiny model, CPU, {args.threads} thread(s): {args.prompts} prompts x {args.group} = "
          f"{args.prompts * args.group} completions/step, <= {args.max_new} new tokens, {args.steps} steps (median of 2..N)")
    a = ours(problems, args)
    b = trl(problems, args)
    print(f"{'':10s} {'step s':>8s} {'generate':>9s} {'reward':>8s} {'rest':>8s} {'mean len':>9s}")
    for name, r in (("longcot", a), ("TRL", b)):
        print(f"{name:10s} {r['step']:8.3f} {r['generate']:9.3f} {r['reward']:8.3f} {r['rest']:8.3f} {r['mean_len']:9.1f}")
    print(f"ratio longcot / TRL step time: {a['step'] / b['step']:.2f}x (goal <= 1.0)")
    print(f"ratio longcot / TRL generate: {a['generate'] / b['generate']:.2f}x, rest: {a['rest'] / b['rest']:.2f}x")


if __name__ == "__main__":
    main()
