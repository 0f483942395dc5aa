"""A run's model identity comes from what is on disk: new weights change it, a copy keeps it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from pathlib import Path

import pytest

from longcot.models.config import ModelConfig
from longcot.models import fingerprint
from longcot.models.fingerprint import directory_fingerprint, model_identity


def _save_llama(path: Path, seed: int, hidden: int = 16) -> None:
    """A real (random-init) Llama checkpoint: config, generation config, safetensors weights."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=64, hidden_size=hidden, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(path)


@pytest.fixture()
def checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "ckpt"
    _save_llama(path, seed=0)
    return path


def _cfg(path: str, **kw) -> ModelConfig:
    return ModelConfig(name=kw.pop("name", "mine"), path=path, **kw)


def test_new_weights_change_identity_and_a_copy_keeps_it(checkpoint: Path, tmp_path: Path) -> None:
    before = model_identity(_cfg(str(checkpoint)))
    assert before["model"]["local"]["scheme"] == "v1-full"
    copy = tmp_path / "elsewhere" / "copied"
    shutil.copytree(checkpoint, copy)
    for f in copy.iterdir():
        os.utime(f, (1, 1))  # other timestamps: content, not metadata
    assert model_identity(_cfg(str(copy))) == before
    _save_llama(checkpoint, seed=1)  # overwrite in place: same shapes, same file names and sizes
    assert sorted(p.stat().st_size for p in checkpoint.iterdir()) == sorted(p.stat().st_size for p in copy.iterdir())
    after = model_identity(_cfg(str(checkpoint)))
    assert after != before and after["model"]["local"]["content_sha256"] != before["model"]["local"]["content_sha256"]


def test_full_fingerprint_is_hand_computable(checkpoint: Path) -> None:
    """Small directory: sha256 of {relative path: {size, sha256}} as sorted compact JSON."""
    entries = {}
    for p in sorted(checkpoint.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            entries[p.relative_to(checkpoint).as_posix()] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    blob = json.dumps(entries, sort_keys=True, separators=(",", ":")).encode()
    fp = directory_fingerprint(checkpoint)
    assert fp["content_sha256"] == hashlib.sha256(blob).hexdigest()
    assert fp["files"] == len(entries) and set(entries) >= {"config.json", "model.safetensors"}


def test_hidden_bookkeeping_is_ignored_but_any_file_counts(checkpoint: Path) -> None:
    before = directory_fingerprint(checkpoint)["content_sha256"]
    (checkpoint / ".cache" / "huggingface").mkdir(parents=True)
    (checkpoint / ".cache" / "huggingface" / "download.lock").write_text("x")
    (checkpoint / ".DS_Store").write_text("x")
    assert directory_fingerprint(checkpoint)["content_sha256"] == before
    (checkpoint / "tokenizer_config.json").write_text("{}")
    assert directory_fingerprint(checkpoint)["content_sha256"] != before
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "tokenizer_config.json").unlink()
    config["rope_theta"] = 12345.0
    (checkpoint / "config.json").write_text(json.dumps(config))
    assert directory_fingerprint(checkpoint)["content_sha256"] != before


def test_sampled_fingerprint_of_a_large_directory(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the full-hash size: size + safetensors header + sampled blocks. A changed header or a
    changed sampled block changes it; a same-size edit between sample points does not (the
    documented blind spot)."""
    monkeypatch.setattr(fingerprint, "FULL_HASH_BYTES", 1024)  # the checkpoint is ~20 kB
    monkeypatch.setattr(fingerprint, "SAMPLE_BYTES", 64)
    monkeypatch.setattr(fingerprint, "SAMPLE_BLOCKS", 4)
    weights = checkpoint / "model.safetensors"
    data = bytearray(weights.read_bytes())
    (header_len,) = struct.unpack("<Q", data[:8])
    start = 8 + header_len
    fp = directory_fingerprint(checkpoint)
    assert fp["scheme"] == "v1-sampled"
    entry = fingerprint.file_fingerprint(weights)
    assert entry["header_sha256"] == hashlib.sha256(bytes(data[8:start])).hexdigest()
    assert entry["size"] == len(data)

    def with_byte(offset: int) -> str:
        edited = bytearray(data)
        edited[offset] ^= 0xFF
        weights.write_bytes(edited)
        return directory_fingerprint(checkpoint)["content_sha256"]

    span = len(data) - start - 64
    second_block = start + span // 3
    assert with_byte(start) != fp["content_sha256"]  # first data block
    assert with_byte(second_block + 10) != fp["content_sha256"]
    assert with_byte(len(data) - 1) != fp["content_sha256"]  # last block
    assert with_byte(start + span // 6) == fp["content_sha256"]  # between sample points: not seen
    assert with_byte(10) != fp["content_sha256"]  # inside the header
    weights.write_bytes(data)
    assert directory_fingerprint(checkpoint)["content_sha256"] == fp["content_sha256"]


def test_settings_in_and_out_of_the_identity(checkpoint: Path) -> None:
    base = model_identity(_cfg(str(checkpoint)))
    assert "allow_large_on_cpu" not in json.dumps(base) and "role" not in base and "path" not in base
    assert model_identity(_cfg(str(checkpoint), allow_large_on_cpu=True)) == base
    assert model_identity(_cfg(str(checkpoint), role="teacher")) == base
    assert model_identity(_cfg(str(checkpoint), revision="v2")) == base  # a local dir has no revision
    for change in ({"name": "other"}, {"dtype": "bfloat16"}, {"rope_theta_scale": 10.0}, {"max_model_len": 32}):
        assert model_identity(_cfg(str(checkpoint), **change)) != base, change
    tokenizer_dir = checkpoint.parent / "tok"
    tokenizer_dir.mkdir()
    (tokenizer_dir / "tokenizer_config.json").write_text("{}")
    with_tokenizer = model_identity(_cfg(str(checkpoint), tokenizer=str(tokenizer_dir)))
    assert with_tokenizer["tokenizer"]["local"]["files"] == 1 and with_tokenizer["model"] == base["model"]


def test_hub_id_keeps_its_revision() -> None:
    ident = model_identity(_cfg("Qwen/Qwen2.5-Math-7B"))
    assert ident["model"] == {"hub_id": "Qwen/Qwen2.5-Math-7B", "revision": "main"}
    pinned = model_identity(_cfg("Qwen/Qwen2.5-Math-7B", revision="a1b2c3"))
    assert pinned["model"] == {"hub_id": "Qwen/Qwen2.5-Math-7B", "revision": "a1b2c3"}
    with pytest.raises(FileNotFoundError, match=r"model.path='/no/such/ckpt': no such local directory"):
        model_identity(_cfg("/no/such/ckpt"))


def test_tiny_model_is_identified_by_its_built_directory() -> None:
    from longcot.models.tiny import ensure_tiny

    cfg = ModelConfig(name="tiny", path="tiny")
    ident = model_identity(cfg)
    assert ident["model"]["local"] == directory_fingerprint(ensure_tiny(cfg))
    assert ident["tiny"] == {"seed": 0, "hidden_size": 128, "layers": 3, "heads": 4, "vocab_size": 1024, "max_position": 2048}
    assert model_identity(ModelConfig(name="tiny", path="tiny")) == ident  # deterministic


def test_composed_config_node_gives_the_same_identity(checkpoint: Path) -> None:
    """The stages pass `cfg.model` (a DictConfig): same identity as the dataclass."""
    from omegaconf import OmegaConf

    cfg = _cfg(str(checkpoint), dtype="bfloat16")
    assert model_identity(OmegaConf.structured(cfg)) == model_identity(cfg)
