"""HF generation backend on the real tiny transformers model (CPU)."""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
from pathlib import Path

import pytest
import torch

from longcot.generation.config import GenerationConfig
from longcot.models.config import ModelConfig
from longcot.generation import (
    BACKENDS,
    SamplingParams,
    apply_overrides,
    build_generator,
    prompt_seed,
    register_backend,
)
from longcot.generation.hf import HFGenerator, PerRowSampler, encode_prompt, nucleus
from longcot.models.loading import load_model_and_tokenizer


pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = [
    [{"role": "user", "content": "What is 1 + 1?"}],
    [
        {"role": "system", "content": "Please reason step by step."},
        {"role": "user", "content": "Compute \\frac{3}{4} + \\sqrt{16} and put the answer in \\boxed{}."},
    ],
    [{"role": "user", "content": "Wait, let me recheck: x^2 - 4x + 4 = 0. However, what is x?"}],
]
SEEDS = [11, 22, 33]


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory) -> ModelConfig:
    root = tmp_path_factory.mktemp("longcot-cache")
    old = os.environ.get("LONGCOT_CACHE")
    os.environ["LONGCOT_CACHE"] = str(root)
    yield ModelConfig(name="tiny", path="tiny")
    if old is None:
        os.environ.pop("LONGCOT_CACHE", None)
    else:
        os.environ["LONGCOT_CACHE"] = old


@pytest.fixture(scope="module")
def model_tok(tiny_cfg):
    return load_model_and_tokenizer(tiny_cfg, device="cpu")


@pytest.fixture(scope="module")
def gen(model_tok) -> HFGenerator:
    model, tok = model_tok
    return HFGenerator(model, tok, batch_size=4)


def _with_eos_bias(model, eos_id: int, bias: float):
    """A copy of ``model`` whose LM head adds ``bias`` to the EOS logit."""
    biased = copy.deepcopy(model)
    old = biased.lm_head
    head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(old.weight)
        head.bias.zero_()
        head.bias[eos_id] = bias
    biased.lm_head = head
    return biased


def _ids(result):
    return [[c.token_ids for c in row] for row in result]


P = SamplingParams(temperature=0.7, top_p=0.95, max_new_tokens=12, n=3, seed=5)


def test_shape_and_metadata(gen, model_tok):
    _, tok = model_tok
    out = gen.generate(PROMPTS, P, seeds=SEEDS, progress=False)
    assert len(out) == len(PROMPTS)
    for prompt, row in zip(PROMPTS, out):
        assert [c.sample_index for c in row] == [0, 1, 2]
        for c in row:
            assert c.prompt_tokens == len(encode_prompt(tok, prompt))
            assert 1 <= c.num_tokens <= P.max_new_tokens
            assert c.text == tok.decode(list(c.token_ids), skip_special_tokens=True)
    # the samples of one prompt are not all the same
    assert len({c.token_ids for c in out[1]}) > 1


def test_default_seeds_and_validation(gen):
    a = gen.generate(PROMPTS[:2], P, progress=False)
    b = gen.generate(PROMPTS[:2], P, seeds=[prompt_seed(P.seed, "0"), prompt_seed(P.seed, "1")], progress=False)
    assert _ids(a) == _ids(b)
    with pytest.raises(ValueError, match="seeds"):
        gen.generate(PROMPTS, P, seeds=[1], progress=False)


def test_reproducible_and_seed_sensitive(gen):
    a = gen.generate(PROMPTS, P, seeds=SEEDS, progress=False)
    b = gen.generate(PROMPTS, P, seeds=SEEDS, progress=False)
    assert a == b
    c = gen.generate(PROMPTS, P, seeds=[s + 1 for s in SEEDS], progress=False)
    assert _ids(a) != _ids(c)


def test_batch_invariance(model_tok):
    """Sample i of a prompt is the same alone (no padding at all) or batched with other prompts."""
    model, tok = model_tok
    p = dataclasses.replace(P, max_new_tokens=16, n=2)
    batched = {
        bs: HFGenerator(model, tok, batch_size=bs).generate(PROMPTS, p, seeds=SEEDS, progress=False)
        for bs in (2, 3, 64)
    }
    single = HFGenerator(model, tok, batch_size=1)
    alone = [single.generate([pr], p, seeds=[s], progress=False)[0] for pr, s in zip(PROMPTS, SEEDS)]
    for bs, out in batched.items():
        assert _ids(out) == [[c.token_ids for c in row] for row in alone], bs
    # prompt order in the call does not matter either
    rev = single.generate(PROMPTS[::-1], p, seeds=SEEDS[::-1], progress=False)
    assert _ids(rev[::-1]) == _ids(batched[64])


def test_prefix_property(gen):
    four = gen.generate(PROMPTS, dataclasses.replace(P, n=4), seeds=SEEDS, progress=False)
    two = gen.generate(PROMPTS, dataclasses.replace(P, n=2), seeds=SEEDS, progress=False)
    later = gen.generate(PROMPTS, dataclasses.replace(P, n=2), seeds=SEEDS, first_sample=2, progress=False)
    for r4, r2, rl in zip(four, two, later):
        assert r2 == r4[:2]
        assert rl == r4[2:]
        assert [c.sample_index for c in rl] == [2, 3]


def test_temperature_zero_is_greedy(gen, model_tok):
    model, tok = model_tok
    p = SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=10, n=3)
    out = gen.generate(PROMPTS, p, seeds=SEEDS, progress=False)
    for prompt, row in zip(PROMPTS, out):
        assert len({c.token_ids for c in row}) == 1
        # matches transformers' own greedy decoding of the unpadded prompt
        ids = torch.tensor([encode_prompt(tok, prompt)])
        with torch.inference_mode():
            ref = model.generate(
                ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=10,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
            )[0, ids.shape[1]:].tolist()
        if tok.eos_token_id in ref:
            ref = ref[: ref.index(tok.eos_token_id) + 1]
        assert list(row[0].token_ids) == ref


def test_tiny_top_p_is_greedy(gen):
    greedy = gen.generate(PROMPTS, SamplingParams(temperature=0.0, max_new_tokens=10, n=1), seeds=SEEDS,
                          progress=False)
    nucleus = gen.generate(PROMPTS, SamplingParams(temperature=1.0, top_p=1e-6, max_new_tokens=10, n=3),
                           seeds=SEEDS, progress=False)
    for g, row in zip(greedy, nucleus):
        assert all(c.token_ids == g[0].token_ids for c in row)


def test_length_finish(model_tok):
    model, tok = model_tok
    no_eos = _with_eos_bias(model, tok.eos_token_id, -1e4)
    g = HFGenerator(no_eos, tok, batch_size=4)
    out = g.generate(PROMPTS, dataclasses.replace(P, max_new_tokens=7), seeds=SEEDS, progress=False)
    for row in out:
        for c in row:
            assert c.finish_reason == "length" and c.truncated
            assert c.num_tokens == 7
            assert tok.eos_token_id not in c.token_ids


def test_stop_finish_certain_eos(model_tok):
    model, tok = model_tok
    g = HFGenerator(_with_eos_bias(model, tok.eos_token_id, 1e4), tok, batch_size=4)
    out = g.generate(PROMPTS, P, seeds=SEEDS, progress=False)
    for row in out:
        for c in row:
            assert c.finish_reason == "stop" and not c.truncated
            assert c.token_ids == (tok.eos_token_id,)  # EOS is kept and counted
            assert c.num_tokens == 1 and c.text == ""


def test_mixed_stop_and_length(model_tok):
    """Rows that stop early are padded by generate; results must still be batch invariant."""
    model, tok = model_tok
    biased = _with_eos_bias(model, tok.eos_token_id, 4.0)  # p(eos) ~ 5% per step
    p = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=24, n=6, seed=3)
    out = HFGenerator(biased, tok, batch_size=64).generate(PROMPTS, p, seeds=SEEDS, progress=False)
    reasons = {c.finish_reason for row in out for c in row}
    assert reasons == {"stop", "length"}
    for row in out:
        for c in row:
            if c.finish_reason == "stop":
                assert c.token_ids[-1] == tok.eos_token_id
                assert tok.eos_token_id not in c.token_ids[:-1]
                assert c.num_tokens <= 24
            else:
                assert c.num_tokens == 24 and tok.eos_token_id not in c.token_ids
    small = HFGenerator(biased, tok, batch_size=5).generate(PROMPTS, p, seeds=SEEDS, progress=False)
    assert small == out


def test_max_new_tokens_clamped_to_context(tiny_cfg, caplog):
    cfg = dataclasses.replace(tiny_cfg, max_model_len=64)
    model, tok = load_model_and_tokenizer(cfg, device="cpu")
    assert model.config.max_position_embeddings == 64
    g = HFGenerator(_with_eos_bias(model, tok.eos_token_id, -1e4), tok, batch_size=8)
    lens = [len(encode_prompt(tok, pr)) for pr in PROMPTS]
    assert max(lens) < 64
    with caplog.at_level(logging.WARNING, logger="longcot.generation.hf"):
        out = g.generate(PROMPTS, SamplingParams(max_new_tokens=1000, n=1), seeds=SEEDS, progress=False)
    for n, row in zip(lens, out):
        assert row[0].finish_reason == "length" and row[0].num_tokens == 64 - n
    assert sum("clamping" in r.getMessage() for r in caplog.records) == 1
    # a prompt that fills the whole context gets an empty truncated completion, not a crash
    long_prompt = [{"role": "user", "content": "1 " * 80}]
    [[c]] = g.generate([long_prompt], SamplingParams(max_new_tokens=5), seeds=[0], progress=False)
    assert c.finish_reason == "length" and c.token_ids == () and c.prompt_tokens >= 64


def test_count_tokens(gen, model_tok):
    _, tok = model_tok
    texts = ["", "Wait, let me recheck \\boxed{12}.", "Alternatively 3/4"]
    counts = gen.count_tokens(texts)
    assert counts[0] == 0
    assert counts == [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert gen.count_tokens([]) == []
    # a completion's num_tokens is its generated id count (incl. EOS), which counts the same as its
    # text re-tokenized only up to BPE re-segmentation; what must hold is len(token_ids) == num_tokens
    out = gen.generate(PROMPTS[:1], P, seeds=SEEDS[:1], progress=False)
    assert all(c.num_tokens == len(c.token_ids) for c in out[0])


def test_per_row_sampler_rows_are_independent():
    torch.manual_seed(0)
    scores = torch.randn(4, 50)
    seeds = [101, 202, 303, 404]
    batched = []
    s_all = PerRowSampler(seeds, temperature=0.8, top_p=0.9)
    s_one = [PerRowSampler([s], temperature=0.8, top_p=0.9) for s in seeds]
    for _ in range(20):
        batched.append(s_all.choose(scores).tolist())
        singles = [s.choose(scores[r : r + 1]).item() for r, s in enumerate(s_one)]
        assert batched[-1] == singles
    processed = s_all(None, scores)
    assert torch.isfinite(processed).sum(dim=-1).tolist() == [1, 1, 1, 1]


def test_per_row_sampler_top_p_support_and_frequencies():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    sampler = PerRowSampler([7], temperature=1.0, top_p=0.7)
    draws = [sampler.choose(logits).item() for _ in range(4000)]
    assert set(draws) == {0, 1}  # nucleus {0, 1} reaches 0.8 >= 0.7
    assert abs(draws.count(0) / len(draws) - 0.5 / 0.8) < 0.03
    full = PerRowSampler([8], temperature=1.0, top_p=1.0)
    draws = [full.choose(logits).item() for _ in range(4000)]
    assert abs(draws.count(3) / len(draws) - 0.05) < 0.015


def test_build_generator_dispatch(tiny_cfg):
    g = build_generator(tiny_cfg, GenerationConfig(backend="hf", device="cpu", batch_size=2))
    assert isinstance(g, HFGenerator) and g.batch_size == 2
    with pytest.raises(ValueError, match="hf.*vllm"):
        build_generator(tiny_cfg, GenerationConfig(backend="nope"))
    assert "synthetic" in BACKENDS
    register_backend("echo-test", lambda m, c: "built")
    try:
        assert build_generator(tiny_cfg, GenerationConfig(backend="echo-test")) == "built"
    finally:
        BACKENDS.pop("echo-test")


def test_apply_overrides():
    base = SamplingParams(temperature=0.7, top_p=0.95, max_new_tokens=100, n=4, seed=3)
    assert apply_overrides(base, GenerationConfig()) is base
    got = apply_overrides(base, GenerationConfig(max_new_tokens=8, temperature=0.0, n=1))
    assert got == SamplingParams(temperature=0.0, top_p=0.95, max_new_tokens=8, n=1, seed=3)


def test_importing_generation_does_not_import_vllm():
    import subprocess
    import sys

    code = "import sys, longcot.generation, longcot.generation.vllm; assert 'vllm' not in sys.modules"
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root,
                   env={**os.environ, "PYTHONPATH": str(root)})


def _nucleus_by_stable_sort(probs, top_p):
    """The definition, as a full stable sort (the sampler's former code, and vLLM's / HF's top-p
    rule: a token stays while the mass before it is below top_p; the first always stays)."""
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    keep_sorted = (sorted_probs.cumsum(dim=-1) - sorted_probs) < top_p
    keep_sorted[:, 0] = True
    return torch.zeros_like(keep_sorted).scatter_(-1, order, keep_sorted)


def test_nucleus_hand_values_with_ties_at_the_cut():
    probs = torch.tensor([[0.2, 0.3, 0.2, 0.2, 0.1]], dtype=torch.float64)
    # order 1 (0.3), then the 0.2s by index 0, 2, 3: the mass before index 2 is 0.5
    assert nucleus(probs, 0.45).tolist() == [[True, True, False, False, False]]
    assert nucleus(probs, 0.55).tolist() == [[True, True, True, False, False]]
    assert nucleus(probs, 0.01).tolist() == [[False, True, False, False, False]]


def test_nucleus_is_the_stable_sort_set():
    """Peaked rows (cut inside the top 64), flat rows (the whole-vocabulary path), quantised logits
    (ties everywhere, also at the cut), -inf logits and top_p near 1: the same set, every row."""
    g = torch.Generator().manual_seed(0)
    for trial in range(600):
        vocab = int(torch.randint(2, 1100, (1,), generator=g))
        logits = torch.randn(5, vocab, generator=g, dtype=torch.float64) * float(torch.rand(1, generator=g)) * 20
        if trial % 3 == 0:
            logits = (logits * 2).round() / 2
        if trial % 5 == 0:
            logits[:, : vocab // 2] = float("-inf")
        probs = torch.log_softmax(logits, dim=-1).exp()
        top_p = 0.999999 if trial % 7 == 0 else float(torch.rand(1, generator=g))
        assert torch.equal(nucleus(probs, top_p), _nucleus_by_stable_sort(probs, top_p)), (trial, vocab, top_p)
