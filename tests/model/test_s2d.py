"""S2dConvPool3d (conv + ReLU + max-pool as one space-to-depth convolution) against the three layers it replaces."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from sranet.config import ModelConfig
from sranet.errors import ConfigError
from sranet.export.graphs import s2d_flops
from sranet.model.flops import ConvLayer
from sranet.model.s2d import S2dConvPool3d, s2d_copy, s2d_layers
from sranet.model.sranet import SRANet


def reference(conv, x):
    return torch.nn.functional.max_pool3d(torch.relu(conv(x)), 2)


@pytest.mark.parametrize(("n", "k", "out_ch", "axes"), [
    (32, 5, 20, (0, 1, 2)),  # the paper's conv1
    (12, 3, 4, (0, 1, 2)),  # the tiny preset's conv1
    (10, 5, 3, (0, 1)),  # D and H folded, W pooled afterwards
    (8, 3, 2, (2,)),  # W only
    (6, 1, 3, (0, 1, 2)),  # 1x1x1 kernel: the window's 8 positions are 8 plain channels
])
def test_matches_conv_relu_pool(n, k, out_ch, axes):
    torch.manual_seed(n * 10 + k)
    conv = torch.nn.Conv3d(1, out_ch, k)
    layer = S2dConvPool3d(conv, torch.nn.MaxPool3d(2), n, axes)
    for batch in (1, 3):
        x = torch.randn(batch, 1, n, n, n)
        with torch.no_grad():
            want, got = reference(conv, x), layer(x)
        assert got.shape == want.shape == (batch, out_ch, (n - k + 1) // 2, (n - k + 1) // 2, (n - k + 1) // 2)
        assert (got - want).abs().max().item() < 1e-5 * max(want.abs().max().item(), 1.0)


def test_weights_put_every_tap_once_per_window_position():
    """Each output channel (o, p) holds exactly the k^3 taps of w[o], the rest of the (k+1)^3 kernel is zero."""
    conv = torch.nn.Conv3d(1, 2, 5)
    with torch.no_grad():
        conv.weight.copy_(torch.arange(1, 251, dtype=torch.float32).reshape(2, 1, 5, 5, 5))
    w = S2dConvPool3d(conv, torch.nn.MaxPool3d(2), 32).weight  # (2 * 8, 8, 3, 3, 3)
    assert w.shape == (16, 8, 3, 3, 3)
    for row in w:
        taps = row[row != 0]
        assert taps.numel() == 125 and len(set(taps.tolist())) == 125


@pytest.mark.parametrize(("conv", "pool", "n", "match"), [
    (torch.nn.Conv3d(2, 3, 3), torch.nn.MaxPool3d(2), 8, "one-input-channel"),
    (torch.nn.Conv3d(1, 3, 3, stride=2), torch.nn.MaxPool3d(2), 9, "stride-1"),
    (torch.nn.Conv3d(1, 3, 3, padding=1), torch.nn.MaxPool3d(2), 8, "valid"),
    (torch.nn.Conv3d(1, 3, 3), torch.nn.MaxPool3d(3), 8, "MaxPool3d\\(2\\)"),
    (torch.nn.Conv3d(1, 3, 4), torch.nn.MaxPool3d(2), 8, "even"),  # output edge 5 is odd
])
def test_refuses_layers_it_does_not_compute(conv, pool, n, match):
    with pytest.raises(ConfigError, match=match):
        S2dConvPool3d(conv, pool, n)


@pytest.mark.integration
@pytest.mark.parametrize("preset", ["tiny", "small", "paper"])
def test_s2d_copy_keeps_the_model_and_its_outputs(preset):
    cfg = ModelConfig.preset(preset)
    assert s2d_layers(cfg) == (1,)
    torch.manual_seed(0)
    model = SRANet(cfg).eval()
    copy = s2d_copy(model)
    assert isinstance(copy.patch_cnn.features[0], S2dConvPool3d)
    assert isinstance(model.patch_cnn.features[0], torch.nn.Conv3d)  # the original is untouched
    S = cfg.input_size
    x = torch.randn(1 if preset == "paper" else 2, 1, S, S, S)
    with torch.no_grad():
        a, b = model(x), copy(x)
    assert (a.attention - b.attention).abs().max().item() < 1e-6
    assert (a.logit - b.logit).abs().max().item() < 1e-5


def test_s2d_copy_refuses_layers_with_several_input_channels():
    with pytest.raises(ConfigError, match="cannot be folded"):
        s2d_copy(SRANet(ModelConfig.preset("tiny")), (2,))


@pytest.mark.parametrize(("n", "k", "out_ch"), [(32, 5, 20), (12, 3, 4)])
def test_flop_count_matches_torch(n, k, out_ch):
    layer = S2dConvPool3d(torch.nn.Conv3d(1, out_ch, k), torch.nn.MaxPool3d(2), n)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        layer(torch.zeros(1, 1, n, n, n))
    assert counter.get_total_flops() == s2d_flops(ConvLayer(1, 1, out_ch, n, k))
