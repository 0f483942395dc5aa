"""Chunked log-probs / entropy (``chunk_tokens``): the same numbers and the same gradients as the
unchunked path on real (tiny) transformers models, no ``R x vocab`` tensor kept for backward, DDP
(world size 1, gloo) accepts it, and models that cannot be chunked fall back with one warning."""

from __future__ import annotations

import logging

import pytest
import torch

from longcot.rl import experience
from longcot.rl.experience import _batched, action_logprobs, batched_logprobs, build_rollout

EOS, PAD = 2, 0
# left-padded prompts of 4 widths, right-padded responses of 4 lengths (R = 11), one truncated
PROMPTS = [[1, 5, 6, 7], [1, 8], [1, 9, 9], [1]]
OUTPUTS = [[11, 12, 13, 14, 15, 16, EOS], [17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27], [28, EOS], [29, 30, 31, 32, EOS]]
TRUNCATED = [False, True, False, False]
R = 11
CHUNKS = [1, 3, 4, R, R + 5]  # 4 does not divide 11


def rollout():
    return build_rollout(PROMPTS, OUTPUTS, TRUNCATED, eos_id=EOS, pad_id=PAD)


@pytest.fixture(scope="module")
def tiny(one_torch_thread):
    from longcot.models.config import ModelConfig
    from longcot.models.loading import load_model_and_tokenizer

    model, _tok = load_model_and_tokenizer(ModelConfig(name="tiny", path="tiny"), device="cpu")
    return model


def llama(tied: bool, vocab: int = 97, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied,
                      pad_token_id=PAD, bos_token_id=1, eos_token_id=EOS)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).float()
    with torch.no_grad():  # logits of a few units, so that entropies and log-probs vary
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.3)
    return model


def test_chunked_equals_unchunked(tiny):
    ro = rollout()
    assert ro.width == R
    with torch.no_grad():
        ref_lp, ref_ent = action_logprobs(tiny, ro, with_entropy=True)
        ref_batched = batched_logprobs(tiny, ro, batch_size=3)
    assert ref_lp.shape == ref_ent.shape == (4, R)
    for k in CHUNKS:
        with torch.no_grad():
            lp, ent = action_logprobs(tiny, ro, with_entropy=True, chunk_tokens=k)
            lp_only, none = action_logprobs(tiny, ro, chunk_tokens=k)
        assert none is None
        assert torch.allclose(lp, ref_lp, atol=1e-5, rtol=0), k
        assert torch.allclose(ent, ref_ent, atol=1e-5, rtol=0), k
        assert torch.equal(lp_only, lp)
        assert torch.all(lp[ro.action_mask == 0] == 0)
        assert torch.allclose(batched_logprobs(tiny, ro, batch_size=3, chunk_tokens=k), ref_batched, atol=1e-5, rtol=0)
        # with grad enabled (the checkpointed chunks): the same numbers
        lp_g, ent_g = action_logprobs(tiny, ro, with_entropy=True, chunk_tokens=k)
        assert lp_g.requires_grad and ent_g.requires_grad
        assert torch.allclose(lp_g.detach(), ref_lp, atol=1e-5, rtol=0) and torch.allclose(ent_g.detach(), ref_ent, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="chunk_tokens"):
        action_logprobs(tiny, ro, chunk_tokens=0)


def _loss(logp, ent, mask):
    g = torch.Generator().manual_seed(7)
    w1, w2 = torch.randn(logp.shape, generator=g), torch.randn(ent.shape, generator=g)
    return (logp * w1).sum() + (ent * w2 * mask).sum()


def _close(got, ref):
    """Equal up to float32 rounding, relative to the tensor's scale."""
    return (got - ref).abs().max() <= 1e-5 * ref.abs().max()


def _grads(model, ro, chunk_tokens, forward=None):
    model.zero_grad(set_to_none=True)
    logp, ent = action_logprobs(model, ro, with_entropy=True, forward=forward, chunk_tokens=chunk_tokens)
    _loss(logp, ent, ro.action_mask).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("tied", [False, True])
def test_chunked_gradients_equal_unchunked(tied, one_torch_thread):
    model = llama(tied)
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tied
    ro = rollout()
    ref = _grads(model, ro, None)
    assert all(g.abs().sum() > 0 for g in ref.values())
    for k in (1, 4, R + 5):
        got = _grads(model, ro, k)
        assert got.keys() == ref.keys()
        for n in ref:
            assert _close(got[n], ref[n]), (k, n, (got[n] - ref[n]).abs().max())


def test_chunked_under_autocast_matches(one_torch_thread):
    """The training engine's bf16 autocast wraps only the body's forward; the chunks run the head
    under the autocast state the head saw there, so the numbers are those of the unchunked path."""
    model = llama(tied=False)
    ro = rollout()

    def engine(**inputs):
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            return model(**inputs)

    with torch.no_grad():
        ref_lp, ref_ent = action_logprobs(model, ro, with_entropy=True, forward=engine)
        fp32_lp, _ = action_logprobs(model, ro, with_entropy=True)
        lp, ent = action_logprobs(model, ro, with_entropy=True, forward=engine, chunk_tokens=4)
    assert (ref_lp - fp32_lp).abs().max() > 1e-3  # autocast matters here...
    assert torch.allclose(lp, ref_lp, atol=1e-5, rtol=0) and torch.allclose(ent, ref_ent, atol=1e-5, rtol=0)  # ...and is kept


def test_no_full_logits_saved_for_backward(one_torch_thread):
    """Unchunked, autograd keeps a (B, R, V) logits tensor; chunked, nothing with more than a chunk's logits."""
    vocab, k = 997, 3
    model = llama(tied=False, vocab=vocab)
    ro = rollout()

    def biggest_vocab_tensor(chunk_tokens):
        sizes = [0]

        def pack(t):
            if t.ndim == 3 and t.shape[-1] == vocab:  # (B, positions, V) logits, not the head's weight
                sizes.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            logp, ent = action_logprobs(model, ro, with_entropy=True, chunk_tokens=chunk_tokens)
        _loss(logp, ent, ro.action_mask).backward()
        return max(sizes)

    assert biggest_vocab_tensor(None) >= 4 * R * vocab
    assert biggest_vocab_tensor(k) <= 4 * 1 * vocab  # only the head's own last-position logits


def test_ddp_world_size_one(tmp_path, one_torch_thread):
    """Through DDP (the LM head is used outside its forward): two steps run (an unused or twice-ready
    parameter would raise on the second) and the gradients equal the unchunked ones."""
    import torch.distributed as dist

    if dist.is_initialized():
        pytest.skip("a process group is already initialised")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = llama(tied=False)
        ro = rollout()
        ref = _grads(model, ro, None)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        for _ in range(2):
            got = _grads(model, ro, 4, forward=ddp)
        for n in ref:
            assert _close(got[n], ref[n]), n
    finally:
        dist.destroy_process_group()


class NoHead(torch.nn.Module):
    """A causal LM without ``get_output_embeddings`` (its forward takes ``logits_to_keep``)."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=False, logits_to_keep=0):
        return self.lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                       use_cache=use_cache, logits_to_keep=logits_to_keep)


def _fallback_warnings(model, caplog):
    experience._WARNED.clear()
    ro = rollout()
    with torch.no_grad():
        ref = action_logprobs(model, ro, with_entropy=True)
        with caplog.at_level(logging.WARNING, logger="longcot.rl.experience"):
            caplog.clear()
            for _ in range(3):
                got = action_logprobs(model, ro, with_entropy=True, chunk_tokens=4)
                assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    msgs = [r.getMessage() for r in caplog.records if r.name == "longcot.rl.experience"]
    assert len(msgs) == 1 and "rl.logits_chunk_tokens=4" in msgs[0], msgs
    return msgs[0]


def test_fallback_without_output_embeddings_warns_once(caplog, one_torch_thread):
    assert "no output embedding" in _fallback_warnings(NoHead(llama(tied=False)), caplog)


def test_fallback_zero3_partitioned_head_warns_once(caplog, one_torch_thread):
    model = llama(tied=False)
    model.lm_head.weight.ds_id = 0  # the attribute DeepSpeed ZeRO-3 gives a partitioned parameter
    assert "ZeRO-3" in _fallback_warnings(model, caplog)


def test_fallback_post_processed_logits_warns_once(caplog, one_torch_thread):
    """Granite divides its logits by ``logits_scaling`` after the head: head(h) != logits."""
    from transformers import GraniteConfig, GraniteForCausalLM

    cfg = GraniteConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                        num_attention_heads=4, num_key_value_heads=4, logits_scaling=4.0,
                        pad_token_id=PAD, bos_token_id=1, eos_token_id=EOS)
    torch.manual_seed(0)
    model = GraniteForCausalLM(cfg).float()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.3)
    assert "post-processed" in _fallback_warnings(model, caplog)


def test_batched_per_channel_values():
    """``_batched`` takes the output's trailing shape from the first result: (B, R) and (B, R, C)."""
    ro = rollout()

    def channels(sub):  # a per-action function of each row's own tokens: position-independent of batching
        x = sub.response_ids.float() * sub.action_mask
        return torch.stack([x, 2 * x, -x], dim=-1)

    full = channels(ro)
    for bs in (1, 3, 4):
        out = _batched(channels, ro, bs)
        assert out.shape == (4, R, 3) and out.dtype == torch.float32
        assert torch.equal(out, full)
        assert torch.equal(_batched(lambda s: channels(s)[..., 0], ro, bs), full[..., 0])
