"""Per-channel value heads (``algorithm.value_heads=per_channel``, beyond the official code): GAE per
channel by hand, its agreement with the official shared-head formulas where they overlap (lambda = 1;
equal gammas; one channel), the summed per-channel value loss, and the multi-head critic (shapes,
checkpoint round trip, a clear error for a head of the wrong width)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from longcot.rl.advantages import gae_advantages, per_channel_gae
from longcot.rl.experience import build_rollout
from longcot.rl.losses import value_loss

EOS, PAD = 2, 0
PROMPTS = [[1, 5, 6, 7], [1, 8], [1, 9, 9]]
OUTPUTS = [[11, 12, EOS], [13, 14, 15, 16, 17], [18, EOS]]
TRUNCATED = [False, True, False]


def _prefix_mask(lengths, width):
    return (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).float()


def _ref_gae(values, rewards, gamma, lam):
    """One channel, one unpadded response, plain python: delta_t = r_t + g V_{t+1} - V_t (V_T = 0),
    A_t = delta_t + g lam A_{t+1} (official single-gamma loop)."""
    n = len(rewards)
    adv = [0.0] * n
    last = 0.0
    for t in reversed(range(n)):
        next_v = values[t + 1] if t + 1 < n else 0.0
        delta = rewards[t] + gamma * next_v - values[t]
        last = delta + gamma * lam * last
        adv[t] = last
    return adv


# ------------------------------------------------------------------------------------ per-channel GAE
def test_per_channel_gae_by_hand():
    """3 tokens; channel 0: sparse reward 1 at the end, gamma 1; channel 1: dense -0.1, -0.2, gamma 0.9;
    lambda 0.95. Each channel against its own values."""
    v = torch.tensor([[[0.5, -0.2], [0.6, -0.1], [0.8, 0.0]]])
    r = torch.tensor([[[0.0, -0.1], [0.0, -0.2], [1.0, 0.0]]])
    adv, ret = per_channel_gae(v, r, torch.ones(1, 3), [1.0, 0.9], lam=0.95)
    # channel 0: delta = [0.6-0.5, 0.8-0.6, 1-0.8] = [0.1, 0.2, 0.2]; A2=0.2, A1=0.2+0.95*0.2=0.39,
    #            A0 = 0.1 + 0.95*0.39 = 0.4705
    # channel 1: delta2 = 0; delta1 = -0.2 + 0.9*0 + 0.1 = -0.1; delta0 = -0.1 + 0.9*(-0.1) + 0.2 = 0.01;
    #            A2=0, A1=-0.1, A0 = 0.01 + 0.855*(-0.1) = -0.0755
    a0 = [0.4705, 0.39, 0.2]
    a1 = [-0.0755, -0.1, 0.0]
    assert torch.allclose(adv, torch.tensor([[x + y for x, y in zip(a0, a1)]]), atol=1e-6)
    assert ret.shape == (1, 3, 2)
    assert torch.allclose(ret[0, :, 0], torch.tensor(a0) + v[0, :, 0], atol=1e-6)  # [0.9705, 0.99, 1.0]
    assert torch.allclose(ret[0, :, 1], torch.tensor(a1) + v[0, :, 1], atol=1e-6)  # [-0.2755, -0.2, 0.0]


def test_per_channel_gae_loops_with_padding():
    """Right-padded batch: each row's channels by the plain loop over its own tokens only; padding is 0
    (values and rewards there are garbage and must be ignored)."""
    g = torch.Generator().manual_seed(3)
    lengths, width, gammas, lam = (5, 2, 1), 5, [1.0, 0.9, 0.5], 0.8
    mask = _prefix_mask(lengths, width)
    v = torch.randn(3, width, 3, generator=g)
    r = torch.randn(3, width, 3, generator=g) * mask.unsqueeze(-1)
    adv, ret = per_channel_gae(v, r, mask, gammas, lam)
    for i, n in enumerate(lengths):
        total = [0.0] * n
        for c, gamma in enumerate(gammas):
            vals = v[i, :n, c].tolist()
            a = _ref_gae(vals, r[i, :n, c].tolist(), gamma, lam)
            total = [x + y for x, y in zip(total, a)]
            assert torch.allclose(ret[i, :n, c], torch.tensor([x + y for x, y in zip(a, vals)]), atol=1e-5)
        assert torch.allclose(adv[i, :n], torch.tensor(total), atol=1e-5)
        assert torch.all(adv[i, n:] == 0) and torch.all(ret[i, n:] == 0)


def test_lambda_one_is_the_official_shared_formula():
    """lam = 1: sum_c A^c = sum_c G^c - sum_c V^c, the official multi-gamma ``returns - values`` with
    the shared head's value = the sum of the per-channel heads."""
    g = torch.Generator().manual_seed(5)
    mask = _prefix_mask((6, 3, 1), 6)
    v = torch.randn(3, 6, 2, generator=g)
    r = torch.randn(3, 6, 2, generator=g) * mask.unsqueeze(-1)
    adv, ret = per_channel_gae(v, r, mask, [1.0, 0.99], lam=1.0)
    adv_shared, ret_shared = gae_advantages(v.sum(-1), r, mask, [1.0, 0.99], lam=1.0)
    assert torch.allclose(adv, adv_shared, atol=1e-5)
    assert torch.allclose(ret.sum(-1), ret_shared, atol=1e-5)


def test_equal_gammas_is_gae_on_summed_rewards():
    """Equal gammas, lam < 1: by linearity of the TD error, single-gamma GAE with V = sum_c V^c."""
    g = torch.Generator().manual_seed(6)
    mask = _prefix_mask((4, 2), 4)
    v = torch.randn(2, 4, 2, generator=g)
    r = torch.randn(2, 4, 2, generator=g) * mask.unsqueeze(-1)
    adv, _ = per_channel_gae(v, r, mask, [0.95, 0.95], lam=0.9)
    adv_shared, _ = gae_advantages(v.sum(-1), r, mask, [0.95, 0.95], lam=0.9)
    assert torch.allclose(adv, adv_shared, atol=1e-5)


def test_one_channel_is_gae_advantages():
    g = torch.Generator().manual_seed(7)
    mask = _prefix_mask((4, 2), 4)
    v = torch.randn(2, 4, generator=g)
    r = torch.randn(2, 4, 1, generator=g) * mask.unsqueeze(-1)
    adv_ref, ret_ref = gae_advantages(v, r, mask, [0.9], lam=0.7)
    adv, ret = per_channel_gae(v.unsqueeze(-1), r, mask, [0.9], lam=0.7)
    assert torch.allclose(adv, adv_ref) and ret.shape == (2, 4, 1) and torch.allclose(ret[..., 0], ret_ref)
    adv2, ret2 = per_channel_gae(v, r, mask, [0.9], lam=0.7)  # a one-head critic's (B, T) values
    assert torch.allclose(adv2, adv_ref) and ret2.shape == (2, 4) and torch.allclose(ret2, ret_ref)


def test_per_channel_gae_shape_errors():
    r = torch.zeros(1, 3, 2)
    with pytest.raises(ValueError, match="value_heads=per_channel"):
        per_channel_gae(torch.zeros(1, 3), r, torch.ones(1, 3), [1.0, 0.9], lam=0.95)  # one shared head
    with pytest.raises(ValueError, match="2 channel gammas"):
        per_channel_gae(torch.zeros(1, 3, 3), torch.zeros(1, 3, 3), torch.ones(1, 3), [1.0, 0.9], lam=0.95)
    with pytest.raises(ValueError, match="lam"):
        per_channel_gae(torch.zeros(1, 3, 2), r, torch.ones(1, 3), [1.0, 0.9], lam=1.5)


# ------------------------------------------------------------------------------------ value loss
def _ref_value_loss(values, old_values, returns, action_mask, clip_eps):
    """Official models/loss.py::ValueLoss.forward (one channel), clip_eps None = unclipped."""
    if clip_eps is not None:
        values_clipped = old_values + (values - old_values).clamp(-clip_eps, clip_eps)
        loss = torch.max((values_clipped - returns) ** 2, (values - returns) ** 2)
    else:
        loss = (values - returns) ** 2
    return 0.5 * ((loss * action_mask).sum(-1) / action_mask.sum(-1)).mean()


@pytest.mark.parametrize("clip", [0.2, None])
def test_value_loss_sums_channels(clip):
    g = torch.Generator().manual_seed(8)
    mask = _prefix_mask((5, 2, 3), 5)
    new, old, ret = (torch.randn(3, 5, 3, generator=g) for _ in range(3))
    loss = value_loss(new, old, ret, mask, clip)
    expected = sum(_ref_value_loss(new[..., c], old[..., c], ret[..., c], mask, clip) for c in range(3))
    assert torch.isclose(loss, expected, atol=1e-6)
    # by hand, one token, one row: channel 0 clipped (V moved 0.5 > 0.2 away from V_old), channel 1 not
    v, vo, rt = torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[0.5, 0.1]]]), torch.tensor([[[2.0, 0.3]]])
    # ch0: max((0.7 - 2)^2, (1 - 2)^2) = 1.69; ch1: V_clip = 0.0, max(0.09, 0.09) = 0.09
    assert torch.isclose(value_loss(v, vo, rt, torch.ones(1, 1), 0.2), torch.tensor(0.5 * (1.69 + 0.09)))
    # C = 1 is the scalar loss
    assert torch.equal(value_loss(new[..., :1], old[..., :1], ret[..., :1], mask, clip),
                       value_loss(new[..., 0], old[..., 0], ret[..., 0], mask, clip))


def test_value_loss_head_gradients_are_the_lone_heads():
    """Summed over channels: head c's gradient is what a one-head critic of channel c would get."""
    g = torch.Generator().manual_seed(9)
    mask = _prefix_mask((4, 2), 4)
    new = torch.randn(2, 4, 2, generator=g).requires_grad_()
    old, ret = torch.randn(2, 4, 2, generator=g), torch.randn(2, 4, 2, generator=g)
    value_loss(new, old, ret, mask, 0.2).backward()
    lone = new.detach()[..., 1].clone().requires_grad_()
    value_loss(lone, old[..., 1], ret[..., 1], mask, 0.2).backward()
    assert torch.allclose(new.grad[..., 1], lone.grad)


def test_value_loss_shape_mismatch_is_an_error():
    """A (B, T) value against (B, T, 1) returns would broadcast to (B, T, T) silently."""
    with pytest.raises(ValueError, match="one shape"):
        value_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3, 1), torch.ones(2, 3))


# ------------------------------------------------------------------------------------ the critic
@pytest.fixture(scope="module")
def tiny(one_torch_thread):
    from longcot.models.config import ModelConfig
    from longcot.models.loading import resolve_model_path

    return Path(resolve_model_path(ModelConfig(name="tiny", path="tiny")))


def _values(critic, ro):
    from longcot.rl.value_head import rollout_values

    with torch.no_grad():
        return rollout_values(critic, ro)


def test_critic_heads_shapes_and_init(tiny):
    from longcot.rl.value_head import Critic

    ro = build_rollout(PROMPTS, OUTPUTS, TRUNCATED, eos_id=EOS, pad_id=PAD)
    one = Critic.from_pretrained(tiny, head_seed=4)
    two = Critic.from_pretrained(tiny, head_seed=4, num_heads=2)
    h = int(one.config.hidden_size)
    assert one.value_head.weight.shape == (1, h) and two.value_head.weight.shape == (2, h)
    expected_w = torch.randn(2, h, generator=torch.Generator().manual_seed(4)) / (h + 1)
    assert torch.equal(two.value_head.weight.data, expected_w)  # normal, std 1/(H+1), seeded
    v1, v2 = _values(one, ro), _values(two, ro)
    assert v1.shape == ro.action_mask.shape
    assert v2.shape == (*ro.action_mask.shape, 2)
    assert torch.all(v2[ro.action_mask == 0] == 0)
    # each head is the same body's hidden state times its own row
    with torch.no_grad():
        hidden = two.body(input_ids=ro.sequences, attention_mask=ro.attention_mask,
                          position_ids=ro.position_ids).last_hidden_state[:, ro.prompt_width - 1 : -1]
    for c in range(2):
        assert torch.allclose(v2[..., c], (hidden @ two.value_head.weight[c]) * ro.action_mask, atol=1e-5)
    with pytest.raises(ValueError, match="num_heads"):
        Critic(two.body, h, num_heads=0)


def _engine(critic):
    from longcot.training.engine import Engine, EngineConfig

    return Engine(critic, EngineConfig(learning_rate=1e-2, total_steps=4, warmup_ratio=0.0, backend="torch"))


def test_critic_checkpoint_round_trip(tiny, tmp_path):
    """Two heads trained one step, saved by the training checkpoint, loaded into a fresh critic (another
    head seed): identical values; a one-head critic refuses that checkpoint naming algorithm.value_heads."""
    from longcot.rl.value_head import Critic
    from longcot.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint

    ro = build_rollout(PROMPTS, OUTPUTS, TRUNCATED, eos_id=EOS, pad_id=PAD)
    engine = _engine(Critic.from_pretrained(tiny, head_seed=1, num_heads=2))
    with engine.micro_batch(last=True):
        v = engine(input_ids=ro.sequences, attention_mask=ro.attention_mask, position_ids=ro.position_ids,
                   num_actions=ro.width)
        engine.backward((v * ro.action_mask.unsqueeze(-1)).pow(2).mean())
    engine.step()
    engine.module.eval()
    before = _values(engine.module, ro)
    save_checkpoint(tmp_path, {"critic": engine}, step=1)

    fresh = _engine(Critic.from_pretrained(tiny, head_seed=2, num_heads=2))
    fresh.module.eval()
    assert not torch.allclose(_values(fresh.module, ro), before)
    load_checkpoint(latest_checkpoint(tmp_path), {"critic": fresh})
    assert torch.equal(_values(fresh.module, ro), before)

    shared = _engine(Critic.from_pretrained(tiny, num_heads=1))
    msg = r"algorithm\.value_heads=per_channel \(2 heads.*this run uses algorithm\.value_heads=shared"
    with pytest.raises(ValueError, match=msg):
        load_checkpoint(latest_checkpoint(tmp_path), {"critic": shared})


def test_saved_head_file(tiny, tmp_path):
    """``<path>/value_head.pt`` is loaded when its shape matches and refused with a clear error when not."""
    from longcot.rl.value_head import HEAD_FILE, Critic

    path = tmp_path / "model"
    shutil.copytree(tiny, path)
    h = int(Critic.from_pretrained(tiny).config.hidden_size)
    weight = torch.arange(2 * h, dtype=torch.float32).view(2, h) / 1000
    torch.save({"weight": weight}, path / HEAD_FILE)
    assert torch.equal(Critic.from_pretrained(path, num_heads=2).value_head.weight.data, weight)
    with pytest.raises(ValueError, match=r"value_head\.pt.*algorithm\.value_heads"):
        Critic.from_pretrained(path, num_heads=3)
