"""vLLM backend. The engine tests need the gpu extra and a CUDA GPU and skip cleanly otherwise."""

from __future__ import annotations

import dataclasses
import importlib.util
import os

import pytest

from longcot.config.schema import GenerationConfig, ModelConfig
from longcot.generation import SamplingParams, build_generator

HAS_VLLM = importlib.util.find_spec("vllm") is not None

PROMPTS = [
    [{"role": "user", "content": "What is 1 + 1?"}],
    [
        {"role": "system", "content": "Please reason step by step."},
        {"role": "user", "content": "Compute \\frac{3}{4} + \\sqrt{16}."},
    ],
]
SEEDS = [11, 22]
P = SamplingParams(temperature=0.7, top_p=0.95, max_new_tokens=16, n=4, seed=5)


@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed")
def test_missing_vllm_raises_helpful_import_error():
    with pytest.raises(ImportError, match=r"pip install 'longcot\[gpu\]'"):
        build_generator(ModelConfig(name="tiny", path="tiny"), GenerationConfig(backend="vllm"))


@pytest.fixture(scope="module")
def vgen(tmp_path_factory):
    pytest.importorskip("vllm")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("vLLM tests need a CUDA GPU")
    root = tmp_path_factory.mktemp("longcot-cache")
    old = os.environ.get("LONGCOT_CACHE")
    os.environ["LONGCOT_CACHE"] = str(root)
    cfg = ModelConfig(name="tiny", path="tiny", rope_theta_scale=10.0, max_model_len=512)
    gen = build_generator(
        cfg, GenerationConfig(backend="vllm", gpu_memory_utilization=0.2, enforce_eager=True)
    )
    yield gen
    if old is None:
        os.environ.pop("LONGCOT_CACHE", None)
    else:
        os.environ["LONGCOT_CACHE"] = old


@pytest.mark.gpu
@pytest.mark.vllm
def test_vllm_shape_reproducibility_and_prefix(vgen):
    out = vgen.generate(PROMPTS, P, seeds=SEEDS, progress=False)
    assert [len(r) for r in out] == [4, 4]
    assert [c.sample_index for c in out[0]] == [0, 1, 2, 3]
    again = vgen.generate(PROMPTS, P, seeds=SEEDS, progress=False)
    assert [[c.token_ids for c in r] for r in out] == [[c.token_ids for c in r] for r in again]
    later = vgen.generate(PROMPTS, dataclasses.replace(P, n=2), seeds=SEEDS, first_sample=2, progress=False)
    assert [[c.token_ids for c in r] for r in later] == [[c.token_ids for c in r[2:]] for r in out]
    alone = vgen.generate(PROMPTS[1:], P, seeds=SEEDS[1:], progress=False)
    assert [c.token_ids for c in alone[0]] == [c.token_ids for c in out[1]]


@pytest.mark.gpu
@pytest.mark.vllm
def test_vllm_finish_reasons_and_counts(vgen):
    out = vgen.generate(PROMPTS, P, seeds=SEEDS, progress=False)
    eos = set(vgen.eos_ids)
    for row in out:
        for c in row:
            assert c.prompt_tokens > 0
            if c.finish_reason == "length":
                assert c.num_tokens == P.max_new_tokens and not eos & set(c.token_ids)
            else:
                assert c.finish_reason == "stop" and c.token_ids[-1] in eos
            assert c.text == vgen.tokenizer.decode(list(c.token_ids), skip_special_tokens=True)
    greedy = vgen.generate(PROMPTS, SamplingParams(temperature=0.0, max_new_tokens=8, n=3), seeds=SEEDS,
                           progress=False)
    assert all(len({c.token_ids for c in row}) == 1 for row in greedy)
    assert vgen.count_tokens(["", "Wait, let me recheck."])[0] == 0


@pytest.mark.gpu
@pytest.mark.vllm
def test_vllm_context_clamp(vgen):
    out = vgen.generate(PROMPTS[:1], SamplingParams(max_new_tokens=100_000, n=1), seeds=SEEDS[:1], progress=False)
    c = out[0][0]
    assert c.prompt_tokens + c.num_tokens <= 512
