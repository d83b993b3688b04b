"""Initialisation: Kaiming keeps activations alive through the ReLUs; the attention starts near uniform."""

import dataclasses
import math

import pytest
import torch

from sranet.config import INIT_SCHEMES, ModelConfig
from sranet.errors import ConfigError
from sranet.model.sranet import SRANet, initialize
from sranet.train.config import TrainConfig

SMALL = ModelConfig.preset("small")


def _entropy(a: torch.Tensor) -> torch.Tensor:
    return -(a * a.clamp_min(1e-12).log()).sum(1)


def test_softmax_attention_is_uniform_at_init():
    torch.manual_seed(0)
    model = initialize(SRANet(dataclasses.replace(SMALL, attention_norm="softmax")))
    with torch.no_grad():
        out = model(torch.randn(2, 1, 64, 64, 64))
    assert torch.all(_entropy(out.attention) > math.log(64) - 1e-3)
    assert out.attention.max() < 1.01 / 64


def test_minshift_attention_is_spread_at_init():
    """Min-shift is scale-free, so a small w cannot make it uniform; it starts from the features' spread, which
    must put weight on most patches (not on one), with the raw scores q nearly equal."""
    torch.manual_seed(0)
    model = initialize(SRANet(SMALL))
    with torch.no_grad():
        out = model(torch.randn(4, 1, 64, 64, 64))
    assert torch.exp(_entropy(out.attention)).min() > 0.75 * 64
    assert out.attention.max() < 0.1
    assert (out.attention_logits.max(1).values - out.attention_logits.min(1).values).max() < 0.05


def test_kaiming_keeps_embedding_scale():
    """PyTorch's default init shrinks activations layer by layer; Kaiming keeps the patch embedding at unit scale."""
    x = torch.randn(64, 1, 16, 16, 16)
    scales = {}
    for scheme in INIT_SCHEMES:
        torch.manual_seed(0)
        model = initialize(SRANet(SMALL), scheme)
        with torch.no_grad():
            scales[scheme] = model.patch_cnn(x).pow(2).mean().sqrt().item()
    assert scales["kaiming"] > 0.3 and scales["kaiming"] > 3 * scales["torch"]


def test_torch_scheme_changes_nothing():
    torch.manual_seed(0)
    a = SRANet(SMALL)
    torch.manual_seed(0)
    b = initialize(SRANet(SMALL), "torch")
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_unknown_scheme_is_refused_by_the_model_and_the_config():
    assert set(INIT_SCHEMES) == {"kaiming", "torch"}
    with pytest.raises(ConfigError, match="Did you mean 'kaiming'"):
        TrainConfig(init="kaimng")
    with pytest.raises(ConfigError, match="Did you mean 'kaiming'"):
        initialize(SRANet(ModelConfig.preset("tiny")), "kaimng")
