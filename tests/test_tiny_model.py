"""The locally built tiny model: offline build, determinism, tokenizer, chat template, loading."""

from __future__ import annotations

import filecmp
import os
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from longcot.models.config import ModelConfig
from longcot.models import loading, tiny


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A private LONGCOT_CACHE for this module (restored afterwards)."""
    root = tmp_path_factory.mktemp("longcot-cache")
    old = os.environ.get("LONGCOT_CACHE")
    os.environ["LONGCOT_CACHE"] = str(root)
    yield root
    if old is None:
        os.environ.pop("LONGCOT_CACHE", None)
    else:
        os.environ["LONGCOT_CACHE"] = old


@pytest.fixture(scope="module")
def tiny_cfg() -> ModelConfig:
    return ModelConfig(name="tiny", path="tiny")


@pytest.fixture(scope="module")
def tiny_dir(cache, tiny_cfg) -> Path:
    return tiny.ensure_tiny(tiny_cfg)


@pytest.fixture(scope="module")
def loaded(tiny_dir, tiny_cfg):
    return loading.load_model_and_tokenizer(tiny_cfg, device="cpu")


def test_builds_offline_into_cache(cache, tiny_dir, tiny_cfg):
    assert tiny_dir.parent == cache / "models"
    assert tiny_dir.name.startswith("tiny-")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json"):
        assert (tiny_dir / name).is_file(), name
    # no temp dirs left behind
    assert [p.name for p in tiny_dir.parent.iterdir() if p.name.startswith(".")] == []
    assert loading.resolve_model_path(tiny_cfg) == str(tiny_dir)
    # cache hit: same dir, nothing rebuilt
    mtime = (tiny_dir / "model.safetensors").stat().st_mtime_ns
    assert tiny.ensure_tiny(tiny_cfg) == tiny_dir
    assert (tiny_dir / "model.safetensors").stat().st_mtime_ns == mtime


def test_cached_model_files_are_readable_like_any_new_file(tiny_dir):
    """save_pretrained writes model.safetensors 0600; the shared cache gets every file at 0666 & ~umask."""
    mask = os.umask(0)
    os.umask(mask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tiny_dir.iterdir()}
    assert modes["model.safetensors"] == modes["config.json"] == 0o666 & ~mask, modes


def test_param_count(loaded):
    model, tokenizer = loaded
    n = sum(p.numel() for p in model.parameters())
    # Schema defaults (hidden 128, 3 layers, vocab 1024, untied head, MLP 4x): about 1M parameters.
    assert 900_000 <= n <= 1_200_000, n
    assert model.config.vocab_size == len(tokenizer) == 1024
    assert type(model).__name__ == "LlamaForCausalLM"


def test_build_is_deterministic(tmp_path):
    a = tiny.build_tiny(tmp_path / "a")
    b = tiny.build_tiny(tmp_path / "b")
    names = sorted(os.listdir(a))
    assert names == sorted(os.listdir(b))
    for name in names:
        assert filecmp.cmp(a / name, b / name, shallow=False), name
    from safetensors.torch import load_file

    sa, sb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_seed_and_shape_change_the_model(tmp_path, cache):
    base = ModelConfig(name="tiny", path="tiny")
    other = ModelConfig(name="tiny", path="tiny", tiny_seed=1)
    assert tiny.tiny_model_dir(base) != tiny.tiny_model_dir(other)
    assert tiny.tiny_model_dir(base) != tiny.tiny_model_dir(ModelConfig(name="t", path="tiny", tiny_layers=2))
    from safetensors.torch import load_file

    wa = load_file(tiny.build_tiny(tmp_path / "s0", base) / "model.safetensors")
    wb = load_file(tiny.build_tiny(tmp_path / "s1", other) / "model.safetensors")
    assert not torch.equal(wa["model.embed_tokens.weight"], wb["model.embed_tokens.weight"])


def test_concurrent_builders_do_not_collide(tmp_path, monkeypatch):
    monkeypatch.setenv("LONGCOT_CACHE", str(tmp_path))
    cfg = ModelConfig(name="tiny", path="tiny", tiny_seed=7)
    with ThreadPoolExecutor(2) as pool:
        dirs = list(pool.map(lambda _: tiny.ensure_tiny(cfg), range(2)))
    assert dirs[0] == dirs[1]
    assert (dirs[0] / "config.json").is_file()
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [dirs[0].name]
    model, _ = loading.load_model_and_tokenizer(cfg, device="cpu")
    assert model.config.vocab_size == 1024


def test_chat_template(loaded):
    _, tok = loaded
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 1+1?"}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<|bos|><|system|>\nBe brief.<|eos|>\n<|user|>\nWhat is 1+1?<|eos|>\n<|assistant|>\n"
    no_gen = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    assert no_gen == text[: -len("<|assistant|>\n")]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    # role markers and bos/eos are single special tokens
    for special in ("<|bos|>", "<|system|>", "<|user|>", "<|assistant|>", "<|eos|>"):
        assert tok.convert_tokens_to_ids(special) in ids
    assert tok.decode(ids, skip_special_tokens=True) == "\nBe brief.\n\nWhat is 1+1?\n\n"


def test_special_tokens(loaded):
    _, tok = loaded
    assert (tok.pad_token, tok.bos_token, tok.eos_token) == ("<|pad|>", "<|bos|>", "<|eos|>")
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert tok.padding_side == "left"


@pytest.mark.parametrize(
    "text",
    [
        "Wait, let me recheck: \\frac{12}{34} + 7 = 0.35. So the answer is $\\boxed{42}$.",
        "Alternatively, x^{2} - 4x + 4 = 0, however  spaces\tand\nnewlines  matter.",
        "Step 3: \\sqrt{16} \\times \\pi \\approx 12.566 ; unicode ✓ é 日本",
        "",
    ],
)
def test_tokenizer_round_trip(loaded, text):
    _, tok = loaded
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    if text:
        assert len(ids) < len(text.encode())  # BPE merges actually compress math text


def test_digits_are_split(loaded):
    _, tok = loaded
    assert len(tok("12345", add_special_tokens=False)["input_ids"]) == 5


def test_load_model_and_tokenizer(loaded, tiny_cfg):
    model, tok = loaded
    assert not model.training
    assert next(model.parameters()).dtype == torch.float32
    assert next(model.parameters()).device.type == "cpu"
    ids = tok(["Let me compute 1 + 2", "x"], return_tensors="pt", padding=True)
    assert ids["attention_mask"][1, 0] == 0  # left padding
    with torch.inference_mode():
        logits = model(**ids).logits
    assert logits.shape[:2] == ids["input_ids"].shape and logits.shape[-1] == 1024
    assert torch.isfinite(logits[:, -1]).all()


def test_dtype_override(tiny_dir, tiny_cfg):
    model, _ = loading.load_model_and_tokenizer(tiny_cfg, device="cpu", dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        loading.resolve_dtype("float8", "cpu")


def test_rope_theta_scale_and_max_model_len(tiny_dir):
    base_theta = tiny.ROPE_THETA
    cfg = ModelConfig(name="tiny", path="tiny", rope_theta_scale=10.0, max_model_len=512)
    model, _ = loading.load_model_and_tokenizer(cfg, device="cpu")
    assert model.config.rope_parameters["rope_theta"] == pytest.approx(10 * base_theta)
    assert loading.rope_theta_of(model.config) == pytest.approx(10 * base_theta)
    assert model.config.max_position_embeddings == 512
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    expected = 1.0 / (10 * base_theta) ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    torch.testing.assert_close(model.model.rotary_emb.inv_freq.float(), expected)
    # the cached checkpoint itself is untouched
    plain = loading.load_config(ModelConfig(name="tiny", path="tiny"))
    assert plain.rope_parameters["rope_theta"] == pytest.approx(base_theta)


def test_scale_rope_theta_variants():
    flat = types.SimpleNamespace(rope_parameters={"rope_type": "default", "rope_theta": 1e4})
    assert loading.scale_rope_theta(flat, 4.0).rope_parameters["rope_theta"] == 4e4
    per_layer = types.SimpleNamespace(
        rope_parameters={"full_attention": {"rope_theta": 1e6}, "sliding_attention": {"rope_theta": 1e4}}
    )
    loading.scale_rope_theta(per_layer, 2.0)
    assert loading.rope_theta_of(per_layer) == {"full_attention": 2e6, "sliding_attention": 2e4}
    legacy = types.SimpleNamespace(rope_theta=1e4)
    assert loading.scale_rope_theta(legacy, 10.0).rope_theta == 1e5
    with pytest.raises(ValueError, match="no rope_theta"):
        loading.scale_rope_theta(types.SimpleNamespace(), 2.0)
    untouched = types.SimpleNamespace()
    assert loading.scale_rope_theta(untouched, 1.0) is untouched


def test_pad_token_falls_back_to_eos(loaded, tmp_path):
    _, tok = loaded
    import copy

    t = copy.deepcopy(tok)
    t.pad_token = None
    t.save_pretrained(tmp_path)
    got = loading.load_tokenizer(ModelConfig(name="x", path=str(tmp_path)))
    assert got.pad_token == got.eos_token == "<|eos|>"
    assert got.padding_side == "left"


def test_resolve_paths(tmp_path):
    # hub ids (cache first, fail fast without a hub) are covered in tests/test_model_loading.py
    assert loading.resolve_model_path(ModelConfig(name="l", path=str(tmp_path))) == str(tmp_path)
    assert loading.resolve_device("cpu") == "cpu"
    assert loading.resolve_device("auto") in ("cpu", "cuda")


def test_missing_local_model_path_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model.path='/ckpt/none': no such local directory"):
        loading.resolve_model_path(ModelConfig(name="x", path="/ckpt/none"))
