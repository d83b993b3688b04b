"""Analytic FLOPs from ModelConfig against torch.utils.flop_counter on the real module."""

import pytest

from sranet.bench.stats import compute_floor_ms
from sranet.config import ModelConfig
from sranet.model.flops import count_flops, count_flops_torch


@pytest.mark.parametrize("preset", ["tiny", "paper"])
def test_matmul_flops_match_torch_flop_counter(preset):
    cfg = ModelConfig.preset(preset)
    assert count_flops(cfg).matmul_flops == count_flops_torch(cfg)


def test_paper_conv_flops_by_hand():
    f = count_flops(ModelConfig.preset("paper"))
    # conv1: 28^3 outputs x 20 ch x 125 MACs; conv2: 10^3 x 50 ch x (20 x 125) MACs; 64 patches; 2 FLOPs per MAC
    assert f.conv == 2 * 64 * (28**3 * 20 * 125 + 10**3 * 50 * 20 * 125)
    assert f.linear == 2 * 64 * 50 * 5**3 * 500
    assert f.total_flops > f.matmul_flops
    assert f.matmul_flops == pytest.approx(23.44e9, rel=1e-3)


def test_softmax_config_counts_and_floor():
    cfg = ModelConfig(input_size=48, channels=(4, 8), kernel_size=3, feature_dim=16, attention_dim=8,
                      attention_norm="softmax")
    assert count_flops(cfg).matmul_flops == count_flops_torch(cfg)
    assert compute_floor_ms(1e9, peak_gflops=100.0, batch=2) == pytest.approx(20.0)


def test_spectral_choice_and_graph_flops():
    from sranet.model.flops import choose_spectral_layers, conv_layers, graph_matmul_flops

    paper = ModelConfig.preset("paper")
    conv1, conv2 = conv_layers(paper)
    assert (conv1.size, conv1.out, conv2.in_ch, conv2.size, conv2.out) == (32, 28, 20, 14, 10)
    assert choose_spectral_layers(paper) == (2,)  # conv1 would grow tenfold in the frequency domain
    assert conv2.spectral_flops()["total"] < 0.3 * conv2.direct_flops()
    assert graph_matmul_flops(paper, (2,)) == count_flops(paper).matmul_flops - 64 * (
        conv2.direct_flops() - conv2.spectral_flops()["total"])
    assert graph_matmul_flops(paper) == count_flops(paper).matmul_flops
    assert choose_spectral_layers(ModelConfig.preset("tiny")) == ()  # 3^3 kernels on 12^3 patches: direct is cheaper
