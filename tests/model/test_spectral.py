"""SpectralConv3d (Conv3d through DFT matrix products) against nn.Conv3d: values, shapes, batch, refusals, FLOPs."""

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from sranet.config import ModelConfig
from sranet.errors import ConfigError
from sranet.model.flops import ConvLayer
from sranet.model.spectral import SpectralConv3d, dft_matrices, spectral_copy
from sranet.model.sranet import SRANet


@pytest.mark.parametrize(("n", "k", "cin", "cout", "bias"), [
    (14, 5, 20, 50, True),  # the paper's conv2
    (7, 3, 3, 4, True),  # odd edge: the n/2 bin does not exist
    (6, 6, 2, 3, False),  # kernel as large as the input: one output voxel
    (8, 1, 2, 5, True),  # 1x1x1 kernel: nothing to correlate
    (12, 3, 1, 4, True),  # one input channel, like conv1
])
def test_matches_conv3d(n, k, cin, cout, bias):
    torch.manual_seed(n * 100 + k)
    conv = torch.nn.Conv3d(cin, cout, k, bias=bias)
    spectral = SpectralConv3d(conv, n)
    for batch in (1, 3):
        x = torch.randn(batch, cin, n, n, n)
        with torch.no_grad():
            want, got = conv(x), spectral(x)
        assert got.shape == want.shape == (batch, cout, n - k + 1, n - k + 1, n - k + 1)
        scale = want.abs().max().item()
        assert (got - want).abs().max().item() < 2e-6 * max(scale, 1.0) * np.sqrt(cin * k**3)


def test_forward_dft_is_numpys_rfft2():
    n, x = 6, np.random.default_rng(0).normal(size=(6, 6))
    flat = x.reshape(1, -1) @ dft_matrices(n, 3)["dft_hw"]  # columns (reim, fh, fw)
    got = flat.reshape(2, n, n // 2 + 1)
    np.testing.assert_allclose(got[0] + 1j * got[1], np.fft.rfft2(x), atol=1e-12)


@pytest.mark.parametrize("conv", [
    torch.nn.Conv3d(2, 3, 3, stride=2),
    torch.nn.Conv3d(2, 3, 3, padding=1),
    torch.nn.Conv3d(2, 4, 3, groups=2),
    torch.nn.Conv3d(2, 3, (3, 3, 1)),
    torch.nn.Conv3d(2, 3, 3, dilation=2),
])
def test_refuses_convolutions_it_does_not_compute(conv):
    with pytest.raises(ConfigError, match="valid, stride-1, ungrouped Conv3d"):
        SpectralConv3d(conv, 8)
    with pytest.raises(ConfigError, match="no larger than"):
        SpectralConv3d(torch.nn.Conv3d(1, 1, 5), 4)


def test_spectral_copy_keeps_the_model_and_its_outputs():
    cfg = ModelConfig.preset("tiny")
    torch.manual_seed(0)
    model = SRANet(cfg).eval()
    copy = spectral_copy(model, (1, 2))
    assert isinstance(model.patch_cnn.features[0], torch.nn.Conv3d)  # the original is untouched
    assert all(isinstance(copy.patch_cnn.features[i], SpectralConv3d) for i in (0, 3))
    x = torch.randn(2, 1, cfg.input_size, cfg.input_size, cfg.input_size)
    with torch.no_grad():
        a, b = model(x), copy(x)
    torch.testing.assert_close(b.logit, a.logit, atol=1e-5, rtol=0)
    torch.testing.assert_close(b.attention, a.attention, atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match=r"spectral layers \[3\] do not exist"):
        spectral_copy(model, (3,))


@pytest.mark.parametrize(("n", "k", "cin", "cout"), [(14, 5, 20, 50), (7, 3, 3, 4)])
def test_flop_formula_matches_torch_counter(n, k, cin, cout):
    spectral = SpectralConv3d(torch.nn.Conv3d(cin, cout, k), n)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        spectral(torch.zeros(3, cin, n, n, n))
    assert counter.get_total_flops() == 3 * ConvLayer(2, cin, cout, n, k).spectral_flops()["total"]
