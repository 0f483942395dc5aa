"""Two processes (torchrun, gloo, CPU, torch DDP) train RL like one: each rank samples its block of
the step's prompts, the advantage whitening and every logged mean are global, DDP sums the gradients.
With one optimizer step per rollout the 2-rank run's final weights (actor and PPO critic) and its
logged metrics equal a single-process run's up to float summation order. Exercises the rank-aware
checkpoints (every step) and the metrics gathered from both ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.launch import clean_env, run_ok, torchrun

pytestmark = pytest.mark.slow

SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from longcot.models.config import ModelConfig
from longcot.data.toy import toy_problems
from longcot.rl.config import AlgorithmConfig, RLConfig
from longcot.rl.recipe import train
out, model_path, backend, zero, offload, train_batch, epochs, names, chunk = sys.argv[1:10]
REWARD = {"name": "cos_rep", "kind": "cosine", "margin": 2,
          "repetition": {"variant": "dense", "ngram_size": 1, "penalty": -0.05, "gamma": 0.99}}
common = dict(rollout_batch_size=4, samples_per_prompt=2, train_batch_size=int(train_batch), micro_train_batch_size=2,
              max_new_tokens=16, warmup_ratio=0.0, episodes=2, epochs=int(epochs), learning_rate=1e-3)
algos = {
    "ppo": AlgorithmConfig(name="ppo", advantage="gae", critic_learning_rate=1e-3, **common),
    "reinforce_pp": AlgorithmConfig(name="reinforce_pp", advantage="reinforce", critic_learning_rate=None, **common),
    "grpo": AlgorithmConfig(name="grpo", advantage="group", kl_estimator="k3", kl_in="loss",
                            whiten_advantages=False, critic_learning_rate=None, value_clip=None, **common),
}
for name in names.split(","):
    train(f"{out}/{name}", model=ModelConfig(name="m", path=model_path), problems=toy_problems(8, 0),
          algorithm=algos[name], reward=REWARD,
          rl=RLConfig(max_steps=2, save_every=1, backend=backend, zero_stage=int(zero), adam_offload=offload == "1",
                      logits_chunk_tokens=int(chunk) or None, repetition_metric_ngram=1),
          progress=False)
"""


def _records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


LR, STEPS = 1e-3, 2


def _assert_adam_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Equal weights up to Adam's amplification of summation-order noise: an element whose gradient
    sums to ~0 can take a step of up to lr either way (Adam's step is ~lr * sign(g)), so a few elements
    may differ by up to 2 * lr per step; everything else agrees to 2e-5. (Gradient *scale* errors are
    invisible to Adam: the grad-norm metrics catch those.)"""
    total = far = 0
    for k in a:
        d = (a[k] - b[k]).abs()
        assert float(d.max()) <= 2 * LR * STEPS + 1e-6, k
        far += int((d > 2e-5).sum())
        total += d.numel()
    assert far <= 1e-3 * total, f"{far} of {total} weights differ by more than 2e-5"


ALGOS = ("ppo", "reinforce_pp", "grpo")


def script_args(out: Path, model: Path, backend: str = "torch", zero: int = 2, offload: bool = False,
                train_batch: int = 8, epochs: int = 1, algos: tuple[str, ...] = ALGOS, chunk: int = 0) -> list[str]:
    return [str(out), str(model), backend, str(zero), "1" if offload else "0", str(train_batch), str(epochs),
            ",".join(algos), str(chunk)]


def warm_model(tmp_path: Path) -> Path:
    """A toy-SFT warm start: responses end at different lengths and earn different rewards (none is right),
    so ranks decode different numbers of tokens and group advantages are not all zero."""
    from longcot.data.toy import toy_problems
    from tests.test_rl_recipe import warm_start

    return warm_start(tmp_path / "sft", toy_problems(8, 0))


# per-response metrics compared between 1 and 2 ranks, each nonzero on some step of the warm start (a
# metric that is 0 on both compares nothing). Left out for that reason: accuracy, truncation_ratio,
# length_gap/mixed_groups and reflection/wait, all 0 here (no rollout of this warm start is right, none hits
# the limit, none says "wait"); they are computed from the same texts as those compared.
PER_RESPONSE = ("reward", "response_length_mean", "response_length_max", "repetition/rate_1gram",
                "repetition/token_share_1gram")


def test_two_ranks_train_like_one(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = clean_env()
    model = warm_model(tmp_path)
    run_ok([sys.executable, str(script), *script_args(tmp_path / "one", model)], env)
    # the 2-rank run also computes log-probs in chunks of 5 positions through DDP (exact: same numbers)
    run_ok([*torchrun(), str(script), *script_args(tmp_path / "two", model, chunk=5)], env)
    recs = _records(tmp_path / "one" / "ppo") + _records(tmp_path / "one" / "grpo")
    # responses of unequal lengths (ranks decode different numbers of tokens), and a real GRPO signal
    assert all(r["response_length_max"] > r["response_length_mean"] for r in recs)
    assert all(r["actor_grad_norm"] > 0 for r in recs)
    assert [k for k in PER_RESPONSE if not any(r[k] for r in recs)] == []
    for name in ALGOS:
        one, two = tmp_path / "one" / name, tmp_path / "two" / name
        _assert_adam_close(_weights(one / "final" / "actor"), _weights(two / "final" / "actor"))
        a = _weights(one / "final" / "actor")
        ra, rb = _records(one), _records(two)
        assert [r["step"] for r in rb] == [1, 2]
        for x, y in zip(ra, rb):
            # the same rollouts (per-sample seeds): per-response metrics are identical
            for key in PER_RESPONSE:
                assert y[key] == pytest.approx(x[key], rel=1e-9, abs=1e-12), (name, key)
            # step 1 from the same weights: tight; step 2 after Adam's few noise-sized element flips
            rel = 1e-4 if x["step"] == 1 else 2e-3
            for key in ("kl", "entropy", "actor_grad_norm", "clip_frac"):
                assert y[key] == pytest.approx(x[key], rel=rel, abs=1e-6), (name, key)
            # whitened advantages have mean ~0: these are float noise around 0 (|x| ~ 1e-5)
            for key in ("policy_loss", "advantage_mean"):
                assert y[key] == pytest.approx(x[key], abs=1e-4), (name, key)
        # training moved the weights (the equality above is not trivially of two untouched models)
        step1 = _weights(one / "checkpoints" / "step-00000001" / "actor")
        changed = sum(not torch.equal(step1[k], a[k]) for k in a)
        assert changed > 0
        assert (two / "checkpoints" / "step-00000002" / "rng" / "rank-1.pt").is_file()
    ppo_one, ppo_two = tmp_path / "one" / "ppo", tmp_path / "two" / "ppo"
    for x, y in zip(_records(ppo_one), _records(ppo_two)):
        rel = 1e-4 if x["step"] == 1 else 2e-3
        for key in ("value_loss", "value_mean", "return_mean", "critic_grad_norm"):
            assert y[key] == pytest.approx(x[key], rel=rel, abs=1e-6), key
    _assert_adam_close(_weights(ppo_one / "checkpoints" / "step-00000002" / "critic"),
                       _weights(ppo_two / "checkpoints" / "step-00000002" / "critic"))


def test_cli_under_torchrun_writes_one_finished_run(tmp_path: Path) -> None:
    """``torchrun -m longcot stage=rl ...``: rank 0 holds the lock and writes summary/DONE, the table is
    printed once, and a relaunch finds the run finished."""
    env = clean_env()
    args = ["-m", "longcot", "stage=rl", "model=tiny", "data=toy", "reward=cosine", "algorithm=grpo",
            "algorithm.rollout_batch_size=4", "algorithm.samples_per_prompt=2", "algorithm.train_batch_size=8",
            "algorithm.micro_train_batch_size=2", "algorithm.max_new_tokens=8", "rl.max_steps=2", "rl.backend=torch",
            f"output_root={tmp_path}"]
    cmd = [*torchrun(), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert proc.stdout.count("longcot rl (") == 1
    (run,) = (tmp_path / "rl" / "tiny").iterdir()
    assert (run / "DONE").is_file() and (run / "summary.json").is_file()
    assert [r["step"] for r in _records(run)] == [1, 2]
    again = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "finished RL run found" in again.stdout + again.stderr


RESUME_SCRIPT = SCRIPT.replace("max_steps=2,", "max_steps=4, keep_checkpoints=2,")


def test_two_rank_sigkill_and_relaunch_equals_uninterrupted(tmp_path: Path) -> None:
    sigkill_and_relaunch(tmp_path, "torch", 2)


def _processes_mentioning(text: str) -> list[int]:
    """Pids of the live processes whose command line contains ``text`` (Linux /proc)."""
    pids = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit() or int(proc_dir.name) == os.getpid():
            continue
        try:
            cmdline = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc_dir / "stat").read_text().split(") ")[-1][:1]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            pids.append(int(proc_dir.name))
    return pids


def _kill_processes_mentioning(text: str, sig: int) -> None:
    """Signal every process of ``text``'s job and wait until none is left (a worker that kept training
    would race with the relaunch)."""
    import time

    for pid in _processes_mentioning(text):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    deadline = time.time() + 30
    while _processes_mentioning(text) and time.time() < deadline:
        time.sleep(0.05)
    assert not _processes_mentioning(text), "workers of the killed job are still running"


def sigkill_and_relaunch(tmp_path: Path, backend: str, zero: int) -> None:
    """SIGKILL of the whole torchrun job after its step-2 checkpoint, relaunch with the same command:
    both ranks resume (weights, optimizers, per-rank RNG, data position) and the run ends with the
    uninterrupted run's metrics and weights."""
    import signal
    import time

    script = tmp_path / "train.py"
    script.write_text(RESUME_SCRIPT)
    env = clean_env()

    def launch(out: Path) -> list[str]:
        return [*torchrun(), str(script), *script_args(out, Path("tiny"), backend, zero, algos=("ppo",))]

    full, killed = tmp_path / "full", tmp_path / "killed"
    run_ok(launch(full), env)
    full, killed = full / "ppo", killed / "ppo"
    proc = subprocess.Popen(launch(killed.parent), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    marker = killed / "checkpoints" / "step-00000002" / "state.json"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    # torchrun starts each worker in its own session: SIGKILL the agent and every worker of this job
    _kill_processes_mentioning(str(killed.parent), signal.SIGKILL)
    proc.wait()
    assert marker.exists(), "the run never reached its step-2 checkpoint"
    assert not (killed / "final" / "state.json").exists(), "the run finished before it could be killed"
    run_ok(launch(killed.parent), env)

    a, b = _records(full), _records(killed)
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    for x, y in zip(a, b):
        for k, v in x.items():
            if not k.startswith("time_") and k not in ("step_time_s", "weight_push_s"):
                assert y[k] == pytest.approx(v, rel=1e-5, abs=1e-6), (x["step"], k)
    wa, wb = _weights(full / "final" / "actor"), _weights(killed / "final" / "actor")
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], atol=1e-6, rtol=0)


def test_every_rank_of_a_torchrun_job_builds_a_complete_tiny_model(tmp_path: Path) -> None:
    """transformers 5 writes a model only on rank 0 of an initialised process group; the tiny model's
    builder must write on every rank (each rank of a fresh job may build the cache; the first rename wins)."""
    script = tmp_path / "build.py"
    script.write_text(
        "import sys, torch.distributed as dist\n"
        "dist.init_process_group('gloo')\n"
        "from longcot.models.tiny import build_tiny\n"
        "build_tiny(f'{sys.argv[1]}/rank-{dist.get_rank()}')\n"
    )
    env = clean_env()
    run_ok([*torchrun(), str(script), str(tmp_path)], env)
    files = [sorted(p.name for p in (tmp_path / f"rank-{r}").iterdir()) for r in (0, 1)]
    assert files[0] == files[1] and "model.safetensors" in files[1] and "config.json" in files[1]
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "rank-0" / name).read_bytes() == (tmp_path / "rank-1" / name).read_bytes()
