"""The SRANet loss against a hand computation, alpha validation, and one training step lowering it."""

import math

import pytest
import torch

from sranet.config import ModelConfig
from sranet.errors import ConfigError
from sranet.model.loss import sranet_loss
from sranet.model.sranet import SRANet, SRANetOutput


def _bce(p: float, y: float) -> float:
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_loss_matches_hand_computation():
    logit = torch.tensor([0.5, -1.0])
    q = torch.tensor([[2.0, -1.0, 0.0, 0.3], [-0.5, 1.5, 0.2, -2.0]])
    f = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0]])
    y = torch.tensor([1.0, 0.0])
    alpha = 0.7
    l_c = (_bce(_sig(0.5), 1) + _bce(_sig(-1.0), 0)) / 2
    l_s = sum(_bce(_sig(float(q[b, n])), float(f[b, n])) for b in range(2) for n in range(4)) / 8
    parts = sranet_loss(SRANetOutput(logit, torch.softmax(q, 1), q), y, f, alpha)
    assert parts.classification.item() == pytest.approx(l_c, rel=1e-6)
    assert parts.structure.item() == pytest.approx(l_s, rel=1e-6)
    assert parts.total.item() == pytest.approx(alpha * l_c + (1 - alpha) * l_s, rel=1e-6)


def test_instance_term_matches_hand_computation():
    logit, q = torch.tensor([0.5, -1.0]), torch.zeros(2, 4)
    c = torch.tensor([[-2.0, 1.5, 0.0, 0.3], [-0.5, -3.0, 0.2, -2.0]])  # the patches' own logits
    y, f = torch.tensor([1.0, 0.0]), torch.ones(2, 4)
    paper = sranet_loss(SRANetOutput(logit, torch.softmax(q, 1), q), y, f, 0.9)
    parts = sranet_loss(SRANetOutput(logit, torch.softmax(q, 1), q, c), y, f, 0.9, instance_weight=0.5)
    l_i = (_bce(_sig(1.5), 1) + _bce(_sig(0.2), 0)) / 2  # each volume's top patch against its label
    assert parts.instance.item() == pytest.approx(l_i, rel=1e-6)
    assert parts.total.item() == pytest.approx(paper.total.item() + 0.5 * l_i, rel=1e-6)
    assert paper.instance is None and parts.classification.item() == paper.classification.item()


def test_instance_term_needs_patch_logits_and_a_valid_weight():
    q = torch.zeros(1, 64)
    with pytest.raises(ConfigError, match="training mode"):
        sranet_loss(SRANetOutput(torch.zeros(1), q, q), torch.zeros(1), torch.zeros(1, 64), 0.9, instance_weight=1.0)
    with pytest.raises(ConfigError, match="instance_weight"):
        sranet_loss(SRANetOutput(torch.zeros(1), q, q, q), torch.zeros(1), torch.zeros(1, 64), 0.9, instance_weight=-1)


def test_logit_is_the_attention_weighted_mean_of_patch_logits():
    torch.manual_seed(0)
    model = SRANet(ModelConfig.preset("tiny")).train()
    out = model(torch.randn(3, 1, 48, 48, 48))
    assert out.patch_logits.shape == (3, 64)
    torch.testing.assert_close(out.logit, (out.attention * out.patch_logits).sum(1), atol=1e-5, rtol=1e-5)
    assert model.eval()(torch.randn(1, 1, 48, 48, 48)).patch_logits is None  # not computed (nor exported) in eval


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_alpha_extremes_pick_one_term(alpha):
    q = torch.randn(2, 64)
    out = SRANetOutput(torch.randn(2), torch.softmax(q, 1), q)
    parts = sranet_loss(out, torch.tensor([0.0, 1.0]), torch.ones(2, 64), alpha)
    expected = parts.classification if alpha == 1.0 else parts.structure
    torch.testing.assert_close(parts.total, expected)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), "high"])
def test_bad_alpha_is_refused(alpha):
    q = torch.zeros(1, 64)
    with pytest.raises(ConfigError, match="alpha"):
        sranet_loss(SRANetOutput(torch.zeros(1), q, q), torch.zeros(1), torch.zeros(1, 64), alpha)


def test_shape_mismatch_is_refused():
    q = torch.zeros(2, 64)
    with pytest.raises(ConfigError, match="patch targets"):
        sranet_loss(SRANetOutput(torch.zeros(2), q, q), torch.zeros(2), torch.zeros(2, 8), 0.5)


def test_one_training_step_lowers_the_loss():
    torch.manual_seed(0)
    cfg = ModelConfig.preset("tiny")
    model = SRANet(cfg)
    x = torch.randn(4, 1, 48, 48, 48)
    y = torch.tensor([0.0, 1.0, 0.0, 1.0])
    f = (torch.rand(4, 64) > 0.5).float()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    before = sranet_loss(model(x), y, f, 0.5).total
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = sranet_loss(model(x), y, f, 0.5).total
    assert after.item() < before.item()
