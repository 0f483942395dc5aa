"""Reward configs: every conf/reward/*.yaml loads into RewardConfig and yields its documented channels."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from longcot.rewards.channels import RewardChannel, reward_channels
from longcot.rewards.config import RepetitionConfig, RewardConfig, VerifierConfig, to_reward_config

CONF = Path(__file__).resolve().parents[1] / "conf"
REWARD_DIR = CONF / "reward"

C1 = RewardChannel("correctness", "sparse", 1.0)
DENSE = RewardChannel("repetition", "dense", 0.99)
DOCUMENTED = {
    "classic": [C1],
    "classic_direct": [C1],  # Table 4's direct RL: +1 / -0.5 / -1 no answer
    "cosine": [C1],
    "cosine_reppen": [C1, DENSE],
    "cosine_A": [C1, DENSE],
    "cosine_B": [C1, DENSE],
    "cosine_C": [C1, DENSE],
    "cosine_seqrep": [C1, RewardChannel("repetition", "sparse", 1.0)],
    "model_verifier": [C1],
    "dapo": [C1, RewardChannel("overlong", "sparse", 1.0)],
}
COSINE_VALUES = {  # (r0_correct, rL_correct, r0_wrong, rL_wrong, exceed)
    "cosine": (2.0, 1.0, -10.0, 0.0, -10.0),
    "cosine_reppen": (2.0, 1.0, -10.0, 0.0, -10.0),
    "cosine_A": (0.0, 10.0, 0.0, 0.0, -10.0),
    "cosine_B": (6.0, 5.0, -10.0, 0.0, -10.0),
    "cosine_C": (10.0, 9.0, -10.0, 0.0, -10.0),
}


def _load(name, *overrides):
    node = OmegaConf.merge(OmegaConf.structured(RewardConfig), OmegaConf.load(REWARD_DIR / f"{name}.yaml"), *overrides)
    return node


def test_every_yaml_is_documented():
    assert sorted(p.stem for p in REWARD_DIR.glob("*.yaml")) == sorted(DOCUMENTED)


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_yaml_loads_and_yields_documented_channels(name):
    node = _load(name)
    cfg = to_reward_config(node)
    assert isinstance(cfg, RewardConfig)
    assert cfg.name == name
    assert cfg.margin == 16
    assert reward_channels(node) == DOCUMENTED[name]
    assert reward_channels(cfg) == DOCUMENTED[name]


@pytest.mark.parametrize("name", sorted(COSINE_VALUES))
def test_cosine_values(name):
    cfg = to_reward_config(_load(name))
    c = cfg.cosine
    assert cfg.kind == "cosine"
    assert (c.r0_correct, c.rL_correct, c.r0_wrong, c.rL_wrong, c.exceed) == COSINE_VALUES[name]


def test_paper_default_repetition():
    rep = to_reward_config(_load("cosine_reppen")).repetition
    assert (rep.variant, rep.ngram_size, rep.penalty, rep.gamma) == ("dense", 40, -0.05, 0.99)


def test_classic_values():
    cfg = to_reward_config(_load("classic"))
    assert (cfg.kind, cfg.correctness) == ("classic", "rule")
    assert (cfg.classic.correct, cfg.classic.wrong, cfg.classic.exceed) == (1.0, 0.0, 0.0)
    assert cfg.repetition is None


def test_model_verifier():
    cfg = to_reward_config(_load("model_verifier"))
    assert (cfg.kind, cfg.correctness) == ("classic", "model")
    assert cfg.verifier == VerifierConfig(model="qwen2.5-7b-instruct", max_new_tokens=1024, last_lines=20, temperature=0.0,
                                          prompt="official")  # the official judge (reward/judge.py)
    model_yaml = CONF / "model" / f"{cfg.verifier.model}.yaml"
    assert model_yaml.exists()
    assert OmegaConf.load(model_yaml).path == "Qwen/Qwen2.5-7B-Instruct"


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_composes_with_either_correctness_source(name):
    for source in ("rule", "model"):
        cfg = to_reward_config(_load(name, OmegaConf.from_dotlist([f"correctness={source}"])))
        assert cfg.correctness == source
        assert cfg.verifier.model == "qwen2.5-7b-instruct"
        assert reward_channels(cfg) == DOCUMENTED[name]


@pytest.mark.parametrize(
    "bad",
    [
        {"nmae": "x"},
        {"cosine": {"r0_corect": 1.0}},
        {"repetition": {"ngram": 40}},
        {"verifier": {"last_line": 20}},
    ],
)
def test_misspelled_key_fails(bad):
    with pytest.raises(ConfigKeyError):
        _load("cosine_reppen", OmegaConf.create(bad))


def test_misspelled_key_in_a_file_fails(tmp_path):
    f = tmp_path / "typo.yaml"
    f.write_text("name: typo\nkind: cosine\ncosine:\n  r0_correct: 2.0\n  rl_correct: 1.0\n")
    with pytest.raises(ConfigKeyError):
        OmegaConf.merge(OmegaConf.structured(RewardConfig), OmegaConf.load(f))


def test_wrong_type_fails():
    with pytest.raises(ValidationError):
        _load("cosine", OmegaConf.create({"margin": "sixteen"}))


@pytest.mark.parametrize(
    "override,message",
    [
        ({"kind": "cosin"}, "valid: classic, cosine"),
        ({"correctness": "llm"}, "valid: rule, model"),
        ({"gamma": 1.5}, "reward.gamma"),
        ({"margin": -1}, "reward.margin"),
        ({"repetition": {"variant": "sparse"}}, "valid: dense, sequence"),
        ({"repetition": {"penalty": 0.05}}, "penalty"),
        ({"repetition": {"gamma": -0.1}}, "repetition.gamma"),
        ({"repetition": {"ngram_size": 0}}, "ngram_size"),
        ({"verifier": {"last_lines": 0}}, "last_lines"),
    ],
)
def test_invalid_values_have_clear_messages(override, message):
    with pytest.raises(Exception, match=message):
        to_reward_config(_load("cosine_reppen", OmegaConf.create(override)))


def test_python_construction_validates():
    with pytest.raises(ValueError, match="valid: classic, cosine"):
        RewardConfig(name="x", kind="linear")
    with pytest.raises(ValueError):
        RepetitionConfig(variant="token")
    cfg = RewardConfig(name="x", kind="cosine", repetition=RepetitionConfig())
    assert reward_channels(cfg) == [C1, DENSE]
    assert to_reward_config({"name": "x"}).kind == "classic"
