"""Rollout tensors: the official truncated-response EOS handling (transcribed), padding-invariant
log-probs of a real (tiny) transformers model, and the critic's value head."""

from __future__ import annotations

import pytest
import torch

from longcot.rl.experience import action_logprobs, batched_logprobs, batched_values, build_rollout

EOS, PAD = 2, 0


# --- transcription of the official sequence assembly (eddycmu/demystify-long-cot, OpenRLHF fork) ---
def ref_vllm_samples(prompts, outputs, eos_token_id=EOS, pad_token_id=PAD):
    """trainer/ppo_utils/experience_maker.py::RemoteExperienceMaker._generate_vllm, non-packed branch,
    for one micro batch: (prompt token ids, output token ids) -> sequences, action mask."""
    max_input_len = max(len(p) for p in prompts)
    max_output_len = max(len(o) for o in outputs)
    sequences = []
    for prompt, out in zip(prompts, outputs):
        input_ids = [pad_token_id] * (max_input_len - len(prompt)) + list(prompt)
        output_len = len(out)
        output_ids = list(out) + [pad_token_id] * (max_output_len - output_len)
        if output_ids[output_len - 1] != eos_token_id:
            output_ids[min(output_len, len(output_ids) - 1)] = eos_token_id
        sequences.append(input_ids + output_ids)
    return ref_process_sequences(torch.tensor(sequences), max_input_len, eos_token_id, pad_token_id)


def ref_process_sequences(sequences, input_len, eos_token_id, pad_token_id):
    """models/actor.py::Actor.process_sequences"""
    attention_mask = (sequences.ne(eos_token_id) & sequences.ne(pad_token_id)).to(dtype=torch.long)
    seq_length = attention_mask.size(1)
    eos_indices = seq_length - attention_mask.long().fliplr().argmax(dim=1, keepdim=True).clamp(min=1)
    sequences.scatter_(dim=1, index=eos_indices, value=eos_token_id)
    first_token_indices = attention_mask.long().argmax(dim=1, keepdim=True)
    mask = torch.arange(seq_length).unsqueeze(0).expand(sequences.size(0), -1)
    attention_mask = (mask >= first_token_indices) & (mask <= eos_indices).to(dtype=torch.long)
    state_seq = sequences[:, input_len - 1 : -1]
    action_mask = state_seq.ne(eos_token_id) & state_seq.ne(pad_token_id)
    action_mask[:, 0] = 1
    return sequences, attention_mask, action_mask


PROMPTS = [[1, 5, 6, 7], [1, 8], [1, 9, 9]]
# finished (ends in EOS), truncated at the limit 5, finished short
OUTPUTS = [[11, 12, EOS], [13, 14, 15, 16, 17], [18, EOS]]
TRUNCATED = [False, True, False]


@pytest.mark.parametrize("micro", [1, 3])  # the paper's scripts use micro_rollout_batch_size 1
def test_truncated_eos_matches_official(micro):
    ro = build_rollout(PROMPTS, OUTPUTS, TRUNCATED, eos_id=EOS, pad_id=PAD)
    for s in range(0, 3, micro):
        idx = list(range(s, s + micro))
        seq, _attn, amask = ref_vllm_samples([PROMPTS[i] for i in idx], [OUTPUTS[i] for i in idx])
        p = max(len(PROMPTS[i]) for i in idx)
        sub = ro.rows(idx)
        assert torch.equal(sub.action_mask.bool(), amask), (sub.action_mask, amask)
        assert torch.equal(sub.response_ids * sub.action_mask.long(), seq[:, p:] * amask.long())
    # the truncated response's last token became EOS; its length (for the reward) is unchanged
    assert ro.response_ids[1].tolist() == [13, 14, 15, 16, EOS] and ro.lengths == [3, 5, 2]
    kept = build_rollout(PROMPTS, OUTPUTS, TRUNCATED, eos_id=EOS, pad_id=PAD, truncated_eos="keep")
    assert kept.response_ids[1].tolist() == [13, 14, 15, 16, 17]
    with pytest.raises(ValueError, match="official, truncated, keep"):
        build_rollout(PROMPTS, OUTPUTS, TRUNCATED, eos_id=EOS, pad_id=PAD, truncated_eos="append")


STOP = 3  # a stop id of the generation config that is not the tokenizer's EOS


def test_non_eos_stop_id_becomes_eos_as_official():
    """micro_rollout_batch_size 1 (the paper's): a response ending in another stop id gets EOS as its
    last token in the official code; ``truncated`` (the former behaviour) and ``keep`` train on it."""
    outs = [[11, 12, STOP], [13, 14, 15, 16, 17], [18, EOS]]
    ro = build_rollout(PROMPTS, outs, TRUNCATED, eos_id=EOS, pad_id=PAD)
    for i in range(3):
        seq, _attn, amask = ref_vllm_samples([PROMPTS[i]], [outs[i]])
        sub = ro.rows([i])
        assert torch.equal(sub.action_mask.bool(), amask)
        assert torch.equal(sub.response_ids, seq[:, len(PROMPTS[i]):])
    assert ro.response_ids[0].tolist()[:3] == [11, 12, EOS] and ro.lengths == [3, 5, 2]
    old = build_rollout(PROMPTS, outs, TRUNCATED, eos_id=EOS, pad_id=PAD, truncated_eos="truncated")
    assert old.response_ids[0].tolist()[:3] == [11, 12, STOP]
    assert old.response_ids[1].tolist() == [13, 14, 15, 16, EOS]


def test_layout_and_positions():
    ro = build_rollout(PROMPTS, OUTPUTS, TRUNCATED, eos_id=EOS, pad_id=PAD)
    assert ro.prompt_width == 4 and ro.width == 5
    assert ro.sequences[1].tolist() == [PAD, PAD, 1, 8, 13, 14, 15, 16, EOS]
    assert ro.attention_mask[2].tolist() == [0, 1, 1, 1, 1, 1, 0, 0, 0]
    assert ro.position_ids[2].tolist()[1:6] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="no tokens"):
        build_rollout([[1]], [[]], [False], eos_id=EOS, pad_id=PAD)


@pytest.fixture(scope="module")
def tiny(one_torch_thread):
    from longcot.models.config import ModelConfig
    from longcot.models.loading import load_model_and_tokenizer, resolve_model_path

    cfg = ModelConfig(name="tiny", path="tiny")
    model, tok = load_model_and_tokenizer(cfg, device="cpu")
    return model, tok, resolve_model_path(cfg)


def test_logprobs_are_padding_invariant(tiny):
    """Batched, padded log-probs == each response scored alone without padding (a real Llama)."""
    model, _tok, _path = tiny
    ro = build_rollout(PROMPTS, OUTPUTS, TRUNCATED, eos_id=EOS, pad_id=PAD)
    lp = batched_logprobs(model, ro, batch_size=3)
    for i, (pr, out) in enumerate(zip(PROMPTS, OUTPUTS)):
        resp = list(out)
        if TRUNCATED[i]:
            resp[-1] = EOS
        ids = torch.tensor([pr + resp])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0].float()
        logp = torch.log_softmax(logits, -1)
        expected = torch.stack([logp[len(pr) + t - 1, tok] for t, tok in enumerate(resp)])
        assert torch.allclose(lp[i, : len(resp)], expected, atol=1e-5)
        assert torch.all(lp[i, len(resp) :] == 0)
    # same numbers in chunks of 1 and with gradients
    assert torch.allclose(batched_logprobs(model, ro, batch_size=1), lp, atol=1e-5)
    lp_grad, ent = action_logprobs(model, ro, with_entropy=True)
    assert lp_grad.requires_grad and ent.shape == lp.shape and torch.all(ent[ro.action_mask.bool()] > 0)


def test_critic_body_is_the_checkpoint(tiny):
    from longcot.rl.value_head import Critic

    model, _tok, path = tiny
    critic = Critic.from_pretrained(path)
    ro = build_rollout(PROMPTS, OUTPUTS, TRUNCATED, eos_id=EOS, pad_id=PAD)
    values = batched_values(critic, ro, batch_size=2)
    assert values.shape == ro.action_mask.shape and torch.all(values[ro.action_mask == 0] == 0)
    # the body's weights are the actor checkpoint's; the head is normal with std 1/(H+1)
    lm_state = model.model.state_dict()
    for k, v in critic.body.state_dict().items():
        assert torch.equal(v, lm_state[k]), k
    h = model.config.hidden_size
    with torch.no_grad():
        hidden = model.model(input_ids=ro.sequences, attention_mask=ro.attention_mask, position_ids=ro.position_ids).last_hidden_state
    expected = (hidden[:, ro.prompt_width - 1 : -1] @ critic.value_head.weight[0]) * ro.action_mask
    assert torch.allclose(values, expected, atol=1e-5)
    assert critic.value_head.weight.abs().max() < 6.0 / (h + 1)
