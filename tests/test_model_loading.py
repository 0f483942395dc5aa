"""Model loading fails fast and clearly: a hub id that is neither cached nor reachable is one line
in about a second, a cached one loads with no network call, and a model too large for a CPU is
refused (from its config, before any weight is read) unless model.allow_large_on_cpu is set."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from longcot.models.config import ModelConfig
from longcot.models import loading
from longcot.models.loading import (
    ModelNotFound,
    ModelUnavailable,
    check_fits_device,
    count_parameters_from_config,
    load_model_and_tokenizer,
    resolve_model_path,
    resolve_tokenizer_path,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture()
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty private Hugging Face cache; nothing resolved earlier in this process is reused."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(loading, "_RESOLVED", {})
    return cache


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_offline_and_not_cached_is_one_line_at_once(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    start = time.monotonic()
    with pytest.raises(ModelNotFound) as exc:
        resolve_model_path(ModelConfig(name="q", path="Qwen/Qwen2.5-Math-7B", revision="v1"))
    assert time.monotonic() - start < 1.0
    message = _one_line(exc)
    assert message.startswith("model.path='Qwen/Qwen2.5-Math-7B' at revision 'v1': not in the local Hugging Face cache")
    assert "HF_HUB_OFFLINE is set" in message and str(hf_cache) in message
    with pytest.raises(ModelNotFound, match=r"^model.tokenizer='org/tok': not in the local"):
        resolve_tokenizer_path(ModelConfig(name="q", path="tiny", tokenizer="org/tok"))


def test_unreachable_or_unknown_hub_repo_fails_within_the_probe_timeout(hf_cache: Path) -> None:
    """No network here: the one probe fails at once (a black-holed network stops at 2 s). With
    network, the id does not exist: the hub says so. Either way, one line, no minute of retries."""
    cfg = ModelConfig(name="x", path="longcot-tests/no-such-model-7b")
    start = time.monotonic()
    with pytest.raises(ModelNotFound) as exc:
        load_model_and_tokenizer(cfg, device="cpu")
    elapsed = time.monotonic() - start
    message = _one_line(exc)
    assert message.startswith("model.path='longcot-tests/no-such-model-7b': ")
    assert "unreachable" in message or "has no model repository" in message
    assert elapsed < loading.HUB_PROBE_TIMEOUT + 1.5, f"{elapsed:.1f}s"


def test_missing_local_directory_is_named() -> None:
    with pytest.raises(ModelNotFound, match=r"^model.path='/ckpt/none': no such local directory") as exc:
        resolve_model_path(ModelConfig(name="x", path="/ckpt/none"))
    assert isinstance(exc.value, FileNotFoundError) and isinstance(exc.value, ValueError)


def _cache_snapshot(cache: Path, repo: str, source: Path) -> Path:
    """The Hugging Face cache layout: refs/main -> commit, snapshots/<commit>/<files>."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(COMMIT)
    snapshot = folder / "snapshots" / COMMIT
    shutil.copytree(source, snapshot)
    return snapshot


def test_cached_hub_model_loads_from_its_snapshot(hf_cache: Path, one_torch_thread: None) -> None:
    from longcot.models.tiny import ensure_tiny

    snapshot = _cache_snapshot(hf_cache, "longcot-tests/cached-tiny", ensure_tiny(ModelConfig(name="tiny", path="tiny")))
    cfg = ModelConfig(name="c", path="longcot-tests/cached-tiny")
    assert resolve_model_path(cfg) == str(snapshot)
    assert resolve_model_path(ModelConfig(name="c", path=cfg.path, revision=COMMIT)) == str(snapshot)
    model, tokenizer = load_model_and_tokenizer(cfg, device="cpu")
    assert model.config.hidden_size == 128 and tokenizer.padding_side == "left"
    with pytest.raises(ModelNotFound, match=r"^model.path='longcot-tests/cached-tiny' at revision 'v9': "):
        resolve_model_path(ModelConfig(name="c", path=cfg.path, revision="v9"))


def _llama_8b():
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=False,
    )  # fmt: skip


def test_parameter_count_from_config_matches_published_sizes() -> None:
    """Llama-3.1-8B: 8,030,261,248; Qwen2.5-0.5B (tied embeddings): 494,032,768."""
    from transformers import Qwen2Config

    assert count_parameters_from_config(_llama_8b()) == 8_030_261_248
    qwen = Qwen2Config(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True,
    )  # fmt: skip
    assert count_parameters_from_config(qwen) == 494_032_768


def test_large_model_refused_on_cpu_before_reading_weights(tmp_path: Path) -> None:
    ckpt = tmp_path / "llama-8b"
    _llama_8b().save_pretrained(ckpt)  # config.json only: no weights to read
    cfg = ModelConfig(name="llama8b", path=str(ckpt))
    with pytest.raises(ModelUnavailable) as exc:
        load_model_and_tokenizer(cfg, device="cpu")
    message = _one_line(exc)
    assert "8.0B parameters" in message and "model.allow_large_on_cpu=true" in message
    config = loading.load_config(cfg)
    check_fits_device(ModelConfig(name="llama8b", path=str(ckpt), allow_large_on_cpu=True), config, "cpu")
    check_fits_device(cfg, config, "cuda")  # a GPU is not limited here
    with pytest.raises(Exception) as allowed:  # allowed: it goes on, to the missing tokenizer and weights
        load_model_and_tokenizer(ModelConfig(name="llama8b", path=str(ckpt), allow_large_on_cpu=True), device="cpu")
    assert not isinstance(allowed.value, ModelUnavailable)


def test_a_trained_checkpoint_is_not_rope_scaled_twice(tmp_path):
    """A training run loads ``rope_theta_scale`` into its config and its final checkpoint saves that
    config: the stages reading the checkpoint (RL after SFT, eval, the colocated rollout engine) must
    not scale theta again; the critic body gets the actor's overridden config."""
    from omegaconf import OmegaConf

    from longcot.models.config import ModelConfig
    from longcot.models.loading import load_config, load_model_and_tokenizer, resolve_model_path
    from longcot.rl.value_head import Critic
    from longcot.stages.base import Plan, model_at_run

    def theta(config) -> float:
        return float(config.rope_parameters["rope_theta"])

    base = theta(load_config(OmegaConf.structured(ModelConfig(name="tiny", path="tiny"))))
    cfg = OmegaConf.structured(ModelConfig(name="tiny", path="tiny", rope_theta_scale=10.0))
    model, tok = load_model_and_tokenizer(cfg, device="cpu")
    assert theta(model.config) == pytest.approx(10 * base)
    out = tmp_path / "sft" / "final" / "model"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    downstream = model_at_run(cfg, [Plan("sft", OmegaConf.create({}), {}, tmp_path / "sft", ())])
    assert downstream.path == str(out)
    assert theta(load_config(downstream)) == pytest.approx(10 * base)  # not 100x
    path = resolve_model_path(cfg)
    critic = Critic.from_pretrained(path, config=load_config(cfg, path))
    assert theta(critic.body.config) == pytest.approx(10 * base)
