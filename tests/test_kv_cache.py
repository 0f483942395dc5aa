"""The growing KV cache (longcot/generation/kv_cache.py) gives generation the same samples and
log-probs as transformers' DynamicCache, bit for bit, and falls back where it does not apply."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from transformers import MistralConfig, MistralForCausalLM
from transformers.cache_utils import DynamicLayer

from longcot.data.toy import toy_problems
from longcot.generation.base import SamplingParams
from longcot.generation.hf import HFGenerator
from longcot.generation.kv_cache import GrowingCache, GrowingLayer, growing_cache_for
from longcot.models.config import ModelConfig
from longcot.models.loading import load_model_and_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = OmegaConf.structured(ModelConfig(name="tiny", path="tiny"))


@pytest.fixture(scope="module")
def model_tok():
    return load_model_and_tokenizer(TINY, device="cpu", dtype="float32")


def _completions(gen, prompts, params):
    return [(c.token_ids, c.logprobs, c.finish_reason) for row in gen.generate(prompts, params, progress=False)
            for c in row]


@pytest.mark.parametrize("top_p", [1.0, 0.9])
def test_same_samples_and_logprobs_as_dynamic_cache(model_tok, top_p):
    """A left-padded batch of prompts of different lengths, 90 tokens sampled into a buffer sized for
    them, some rows stopping at EOS: every token and every log-prob float is DynamicCache's."""
    model, tok = model_tok
    prompts = [[{"role": "user", "content": p.problem + " Show your work." * i}]
               for i, p in enumerate(toy_problems(5, seed=11))]
    params = SamplingParams(n=3, temperature=1.0, top_p=top_p, max_new_tokens=90, seed=4)
    runs = {kv: _completions(HFGenerator(model, tok, batch_size=8, return_logprobs=True, kv_cache=kv), prompts, params)
            for kv in ("dynamic", "growing")}
    assert runs["growing"] == runs["dynamic"]
    lengths = [len(t) for t, _, _ in runs["growing"]]
    assert max(lengths) == 90 and len(set(lengths)) > 1  # rows stop at different steps


def _states(batch, heads, n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, heads, n, 8, generator=g), torch.randn(batch, heads, n, 8, generator=g)


@pytest.mark.parametrize("capacity", [0, 50, 400])
def test_layer_matches_dynamic_layer_through_crop_and_batch_selection(capacity):
    """Prefill, decode 100 steps, crop, keep two rows, decode again: the growing layer returns
    DynamicLayer's keys and values at every step (crop leaves a shorter view of the buffer; batch
    selection replaces the tensors and the next update rebuilds the buffer from them). Capacity 0: the buffer starts at 64 positions and doubles; 50:
    preallocated, outgrown; 400: never outgrown."""
    ours, ref = GrowingLayer(capacity), DynamicLayer()

    def both(update, *args):
        a, b = getattr(ours, update)(*args), getattr(ref, update)(*args)
        if update == "update":
            for x, y in zip(a, b):
                assert torch.equal(x, y)
        assert ours.get_seq_length() == ref.get_seq_length()

    both("update", *_states(3, 2, 40, 0))
    for step in range(100):
        both("update", *_states(3, 2, 1, step + 1))
    both("crop", -25)
    both("update", *_states(3, 2, 1, 200))
    both("batch_select_indices", torch.tensor([2, 0]))
    for step in range(5):
        both("update", *_states(2, 2, 1, 300 + step))
    assert ours.get_seq_length() == 40 + 100 - 25 + 1 + 5


def test_cache_only_on_cpu_for_full_attention_models(model_tok):
    model, _ = model_tok
    cache = growing_cache_for(model, 300)
    assert isinstance(cache, GrowingCache) and len(cache.layers) == model.config.num_hidden_layers
    assert all(layer.capacity == 300 for layer in cache.layers)
    sliding = MistralForCausalLM(MistralConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64,
                                               num_attention_heads=2, num_key_value_heads=2, vocab_size=64,
                                               sliding_window=16))
    assert growing_cache_for(sliding) is None
    with torch.device("meta"):  # any device but the CPU keeps transformers' cache
        off_cpu = MistralForCausalLM(MistralConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64,
                                                   num_attention_heads=2, num_key_value_heads=2, vocab_size=64,
                                                   sliding_window=None))
    assert growing_cache_for(off_cpu) is None


def test_unknown_kv_cache_is_one_clear_error(model_tok):
    model, tok = model_tok
    with pytest.raises(ValueError, match="kv_cache='static'; valid: growing, dynamic"):
        HFGenerator(model, tok, kv_cache="static")
