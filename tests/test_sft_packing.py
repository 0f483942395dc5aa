"""Packing is exact: a packed row gives each sample the logits and loss it gets alone (sdpa and eager),
and only because the KV cache is off -- with use_cache on, samples attend across boundaries."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from longcot.models.config import ModelConfig
from longcot.data.toy import toy_problems
import longcot.training.attention  # noqa: F401  (registers sdpa_varlen)
from longcot.models.loading import load_model_and_tokenizer
from longcot.sft.data import IGNORE, SFTExample, tokenize_example
from longcot.sft.packing import (
    first_fit_decreasing,
    pack,
    pack_step,
    per_sample_loss_sums,
    shard_micro_batches,
    token_loss_sum,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = OmegaConf.structured(ModelConfig(name="tiny", path="tiny"))


def _examples(tokenizer, n=4):
    probs = toy_problems(n, seed=3)
    # Different response lengths so the samples have different sizes.
    return [tokenize_example(tokenizer, SFTExample(({"role": "user", "content": p.problem},),
                                                   "Step. " * (3 + 7 * i) + f"The answer is $\\boxed{{{p.answer}}}$."))
            for i, p in enumerate(probs)]


@pytest.fixture(scope="module", params=["sdpa", "eager", "sdpa_varlen"])
def model_tok(request):
    model, tok = load_model_and_tokenizer(TINY, device="cpu", dtype="float32", attn_implementation=request.param)
    return model, tok, request.param


def test_first_fit_decreasing_exact():
    bins = first_fit_decreasing([5, 9, 3, 7, 2, 4], 10)
    # sorted 9,7,5,4,3,2: 9 -> A, 7 -> B, 5 -> C, 4 -> C (A has 1 left), 3 -> B, 2 fits nowhere -> D
    assert bins == [[1], [3, 2], [0, 5], [4]]


def test_ffd_fills_every_bin_and_respects_budget():
    lengths = [5, 9, 3, 7, 2, 4, 8, 1]
    bins = first_fit_decreasing(lengths, 10)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 10 for b in bins)
    with pytest.raises(ValueError, match="max_tokens_per_micro_batch"):
        first_fit_decreasing([11], 10)


def test_targets_are_response_only_and_shifted(model_tok):
    _, tok, _ = model_tok
    ex = SFTExample(({"role": "user", "content": "Compute $1 + 2$."},), "It is $\\boxed{3}$.")
    t = tokenize_example(tok, ex)
    targets = [x for x in t.targets if x != IGNORE]
    # exactly the completion tokens, in order: the response, the end-of-turn EOS and the template's newline
    assert tok.decode(targets) == "It is $\\boxed{3}$.<|eos|>\n"
    assert t.targets[t.prompt_tokens - 1] == t.input_ids[t.prompt_tokens]  # last prompt position predicts the 1st response token
    assert t.targets[-1] == IGNORE
    assert list(t.input_ids[: t.prompt_tokens]) == tok(tok.apply_chat_template(
        list(ex.messages), tokenize=False, add_generation_prompt=True), add_special_tokens=False)["input_ids"]


def test_packed_equals_alone(model_tok):
    model, tok, attn = model_tok
    samples = _examples(tok)
    batch = pack(samples)
    assert len(set(batch.seq_lens)) == len(samples)
    with torch.no_grad():
        packed = model(**batch.model_inputs(attn)).logits
        alone = [model(input_ids=torch.tensor([s.input_ids]), use_cache=False).logits for s in samples]
    start = 0
    for s, logits in zip(samples, alone):
        n = len(s)
        torch.testing.assert_close(packed[:, start:start + n], logits, atol=1e-5, rtol=1e-5)
        start += n
    # per-sample loss sums equal the losses of each sample alone
    per = per_sample_loss_sums(packed, batch)
    ref = [float(token_loss_sum(lg, torch.tensor([s.targets]))) for s, lg in zip(samples, alone)]
    assert per == pytest.approx(ref, rel=1e-5, abs=1e-5)
    assert float(token_loss_sum(packed, batch.targets)) == pytest.approx(sum(ref), rel=1e-5)
    # no target at the last position of any sample: the next sample's first token is never predicted
    ends = torch.tensor(batch.seq_lens).cumsum(0) - 1
    assert (batch.targets[0, ends] == IGNORE).all()


def test_use_cache_on_leaks_across_samples(model_tok):
    """The reason model_inputs passes use_cache=False: the config default (True) silently breaks packing."""
    model, tok, attn = model_tok
    if attn == "sdpa_varlen":
        pytest.skip("sdpa_varlen takes sample boundaries from cu_seq_lens, not from the mask")
    assert model.config.use_cache is True  # the silent default this guards against
    samples = _examples(tok, 2)
    batch = pack(samples)
    inputs = {**batch.model_inputs()}
    del inputs["use_cache"]  # left to the config default
    with torch.no_grad():
        leaked = model(**inputs).logits
        clean = model(**batch.model_inputs()).logits
        second_alone = model(input_ids=torch.tensor([samples[1].input_ids]), use_cache=False).logits
    n0 = len(samples[0])
    torch.testing.assert_close(leaked[:, :n0], clean[:, :n0], atol=1e-5, rtol=1e-5)  # the first sample is unaffected
    assert (leaked[:, n0:] - second_alone).abs().max() > 1e-3  # the second attends to the first
    torch.testing.assert_close(clean[:, n0:], second_alone, atol=1e-5, rtol=1e-5)


def test_pack_step_and_sharding(model_tok):
    _, tok, _ = model_tok
    samples = _examples(tok, 4)
    budget = max(len(s) for s in samples) + 5
    batches = pack_step(samples, budget)
    assert all(b.num_tokens <= budget for b in batches)
    assert sum(b.num_targets for b in batches) == sum(s.num_targets for s in samples)
    shards = [shard_micro_batches(batches, r, 3) for r in range(3)]
    assert len({len(s) for s in shards}) == 1  # same number of micro-batches on every rank
    real = [b for s in shards for b in s if b is not None]
    assert sorted(id(b) for b in real) == sorted(id(b) for b in batches)


def test_varlen_packed_gradients_equal_each_sample_alone():
    """sdpa_varlen's split of the packed row is exact in the backward too: the packed loss's gradients
    are the sum of each sample's own gradients (a wrong split, e.g. samples shifted by a token or a
    gradient routed to the wrong sample, breaks this)."""
    model, tok = load_model_and_tokenizer(TINY, device="cpu", dtype="float32", attn_implementation="sdpa_varlen")
    samples = _examples(tok)
    batch = pack(samples)
    model.zero_grad()
    token_loss_sum(model(**batch.model_inputs("sdpa_varlen")).logits, batch.targets).backward()
    packed = {n: p.grad.clone() for n, p in model.named_parameters()}
    alone = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for s in samples:
        model.zero_grad()
        token_loss_sum(model(input_ids=torch.tensor([s.input_ids]), use_cache=False).logits,
                       torch.tensor([s.targets])).backward()
        for n, p in model.named_parameters():
            alone[n] += p.grad
    for n in packed:
        torch.testing.assert_close(packed[n], alone[n], atol=2e-5, rtol=1e-4, msg=n)


def test_varlen_packed_row_never_builds_the_row_mask():
    """The T x T mask of a packed row is deferred and, on the cu_seq_lens path, never built."""
    from longcot.training.attention import DeferredMask

    model, tok = load_model_and_tokenizer(TINY, device="cpu", dtype="float32", attn_implementation="sdpa_varlen")
    seen = []
    hook = model.model.layers[0].self_attn.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(kwargs.get("attention_mask")), with_kwargs=True)
    try:
        with torch.no_grad():
            model(**pack(_examples(tok)).model_inputs("sdpa_varlen"))
    finally:
        hook.remove()
    assert len(seen) == 1 and isinstance(seen[0], DeferredMask)
    assert not seen[0]._built


def test_varlen_rejects_boundaries_that_do_not_span_the_row():
    model, tok = load_model_and_tokenizer(TINY, device="cpu", dtype="float32", attn_implementation="sdpa_varlen")
    inputs = pack(_examples(tok, 2)).model_inputs("sdpa_varlen")
    inputs["cu_seq_lens_q"] = inputs["cu_seq_lens_k"] = inputs["cu_seq_lens_q"][:-1]
    with torch.no_grad(), pytest.raises(ValueError, match="cu_seq_lens_q spans"):
        model(**inputs)


def test_varlen_without_boundaries_is_plain_sdpa_in_generation():
    """Generation (no cu_seq_lens; prefill and decoding with the 2-D mask HFGenerator passes, so masks
    are built at once) takes sdpa's path: the same tokens and scores as attn_implementation='sdpa',
    single prompt and padded batch. The deferred mask's own fallback (a one-row forward without a mask)
    is what the each-sample-alone forwards of the tests above run."""
    from longcot.generation.base import SamplingParams
    from longcot.generation.hf import HFGenerator

    prompts = [[{"role": "user", "content": p.problem}] for p in toy_problems(3, seed=5)]
    params = SamplingParams(n=2, temperature=1.0, top_p=0.9, max_new_tokens=12, seed=1)
    out = {}
    for attn in ("sdpa", "sdpa_varlen"):
        model, tok = load_model_and_tokenizer(TINY, device="cpu", dtype="float32", attn_implementation=attn)
        for size in (1, 6):
            gen = HFGenerator(model, tok, batch_size=size, return_logprobs=True)
            out[attn, size] = [(c.token_ids, c.logprobs) for row in gen.generate(prompts, params, progress=False)
                               for c in row]
    assert out["sdpa", 1] == out["sdpa_varlen", 1]
    assert out["sdpa", 6] == out["sdpa_varlen", 6]
