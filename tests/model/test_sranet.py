"""SRANet shapes, patch order, min-shift normalisation and the softmax option."""

import pytest
import torch

from sranet.config import ModelConfig
from sranet.errors import InputError
from sranet.model.sranet import SRANet, count_parameters, minshift_normalize, patchify

TINY = ModelConfig.preset("tiny")


def _grid_volume(S: int, grid: int = 4) -> torch.Tensor:
    """(1, 1, S, S, S) volume whose patch (i, j, k) holds the value 16i + 4j + k."""
    idx = torch.arange(S) // (S // grid)
    return (grid * grid * idx[:, None, None] + grid * idx[None, :, None] + idx[None, None, :]).float()[None, None]


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_output_shapes(name):
    cfg = ModelConfig.preset(name)
    torch.manual_seed(0)
    out = SRANet(cfg)(torch.randn(2, 1, cfg.input_size, cfg.input_size, cfg.input_size))
    assert out.logit.shape == (2,)
    assert out.attention.shape == (2, 64) and out.attention_logits.shape == (2, 64)
    torch.testing.assert_close(out.attention.sum(1), torch.ones(2), atol=1e-5, rtol=0)


def test_paper_config_parameter_count():
    # Conv3d(1,20,5) + Conv3d(20,50,5) + Linear(50*5^3, 500) + attention(500->128 x2, 128->1) + head(500->1)
    expected = (20 * 125 + 20) + (50 * 20 * 125 + 50) + (6250 * 500 + 500) + 2 * (500 * 128 + 128) + 129 + 501
    assert count_parameters(SRANet(ModelConfig())) == expected


def test_patchify_order():
    patches = patchify(_grid_volume(48), 4)  # (64, 1, 12, 12, 12)
    assert patches.shape == (64, 1, 12, 12, 12)
    for n in range(64):
        assert torch.all(patches[n] == n), f"patch {n} holds {patches[n].unique().tolist()}"


def test_model_keeps_patch_order_end_to_end():
    """Features -> attention logits keep index n = 16i + 4j + k (the reshape after the patch CNN is checked)."""
    model = SRANet(TINY)

    class MeanFeature(torch.nn.Module):
        def forward(self, p):  # (B*N, 1, p, p, p) -> (B*N, M): every feature = the patch's mean
            return p.mean(dim=(1, 2, 3, 4))[:, None].expand(-1, TINY.feature_dim)

    class FirstFeatureScore(torch.nn.Module):
        def forward(self, h):  # (B, N, M) -> weights, scores q_n = h_n[0]
            return torch.softmax(h[..., 0], 1), h[..., 0]

    model.patch_cnn = MeanFeature()
    model.attention = FirstFeatureScore()
    x = torch.cat([_grid_volume(48), 2 * _grid_volume(48)])
    out = model(x)
    torch.testing.assert_close(out.attention_logits[0], torch.arange(64).float())
    torch.testing.assert_close(out.attention_logits[1], 2 * torch.arange(64).float())


@pytest.mark.parametrize("shape", [(1, 1, 47, 48, 48), (1, 48, 48, 48), (1, 2, 48, 48, 48)])
def test_wrong_input_shape_is_a_clear_error(shape):
    with pytest.raises(InputError, match=r"expects input of shape \(B, 1, 48, 48, 48\)"):
        SRANet(TINY)(torch.zeros(shape))


def test_non_divisible_config_is_refused():
    from sranet.errors import ConfigError

    with pytest.raises(ConfigError, match="not divisible"):
        ModelConfig(input_size=50, grid=4)


def test_minshift_equal_scores_uniform_and_nan_free():
    q = torch.full((3, 64), 0.7, requires_grad=True)
    a = minshift_normalize(q, 1e-6)
    torch.testing.assert_close(a, torch.full((3, 64), 1 / 64))
    (a * torch.randn(3, 64)).sum().backward()
    assert torch.isfinite(q.grad).all()


def test_minshift_lowest_patch_gets_zero_and_rows_sum_to_one():
    q = torch.tensor([[3.0, 1.0, 2.0, 5.0], [-1.0, -4.0, 0.0, -4.0]], requires_grad=True)
    a = minshift_normalize(q, 1e-6)
    torch.testing.assert_close(a[0], torch.tensor([2.0, 0.0, 1.0, 4.0]) / 7)
    torch.testing.assert_close(a[1], torch.tensor([3.0, 0.0, 4.0, 0.0]) / 7)
    a[:, 0].sum().backward()
    assert torch.isfinite(q.grad).all()


def test_minshift_nearly_equal_scores_stay_finite():
    q = torch.zeros(1, 64, requires_grad=True)
    with torch.no_grad():
        q[0, 5] = 1e-9  # spread below eps: falls back to uniform
    a = minshift_normalize(q, 1e-6)
    assert torch.isfinite(a).all()
    torch.testing.assert_close(a.sum(), torch.tensor(1.0))
    a[0, 5].backward()
    assert torch.isfinite(q.grad).all()


def test_model_gradients_nan_free_on_constant_input():
    torch.manual_seed(0)
    model = SRANet(TINY)
    out = model(torch.zeros(2, 1, 48, 48, 48))  # every patch identical -> all scores equal
    torch.testing.assert_close(out.attention, torch.full((2, 64), 1 / 64))
    (out.logit.sum() + out.attention_logits.sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_softmax_option():
    cfg = ModelConfig(**{**TINY.to_dict(), "channels": TINY.channels, "attention_norm": "softmax"})
    torch.manual_seed(0)
    out = SRANet(cfg)(torch.randn(2, 1, 48, 48, 48))
    torch.testing.assert_close(out.attention, torch.softmax(out.attention_logits, dim=1))
    assert (out.attention > 0).all()


def test_minshift_model_gives_lowest_patch_zero():
    torch.manual_seed(0)
    out = SRANet(TINY)(torch.randn(2, 1, 48, 48, 48))
    lowest = out.attention_logits.argmin(dim=1)
    assert torch.all(out.attention[torch.arange(2), lowest] == 0)
