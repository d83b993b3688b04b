"""Training diagnostics on constructed cases: attention entropy, dead ReLUs, gradient norms and clipping, the plot."""

import math

import cv2
import numpy as np
import pytest
import torch

from sranet.config import ModelConfig
from sranet.model.sranet import SRANet
from sranet.train.diagnostics import GradientMonitor, ReLUMonitor, attention_stats, diagnostics_png, gradient_blocks


def test_uniform_attention_has_entropy_log_n():
    a = np.full((3, 64), 1 / 64)
    s = attention_stats(a)
    assert s["attn_entropy"] == pytest.approx(math.log(64))
    assert s["attn_effective_patches"] == pytest.approx(64)
    assert s["attn_uniform_share"] == 1.0 and s["attn_onehot_share"] == 0.0 and s["attn_zero_share"] == 0.0
    assert s["attn_top_share"] == pytest.approx(1 / 64)


def test_one_hot_and_mixed_attention():
    one_hot = np.zeros((1, 64))
    one_hot[0, 5] = 1.0
    s = attention_stats(one_hot)
    assert s["attn_entropy"] == pytest.approx(0.0) and s["attn_effective_patches"] == pytest.approx(1.0)
    assert s["attn_onehot_share"] == 1.0 and s["attn_zero_share"] == pytest.approx(63 / 64)
    half = np.zeros((1, 64))
    half[0, :2] = 0.5  # two patches share the weight: exp(H) = 2
    both = attention_stats(np.concatenate([one_hot, half]), targets=np.concatenate([one_hot, one_hot]))
    assert both["attn_effective_patches"] == pytest.approx(1.5)
    assert both["attn_onehot_share"] == 0.5
    assert both["attn_target_mass"] == pytest.approx((1.0 + 0.0) / 2)


def test_logit_range():
    q = np.array([[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]])
    assert attention_stats(np.full((2, 3), 1 / 3), logits=q)["attn_logit_range"] == pytest.approx(1.5)


def test_dead_relu_counts_channels_never_active():
    model = SRANet(ModelConfig.preset("tiny"))
    conv1 = model.patch_cnn.features[0]
    with torch.no_grad():
        conv1.weight[:2] = 0.0
        conv1.bias[:2] = -1.0  # channels 0 and 1 of conv1 output -1 everywhere -> ReLU 0: dead
    with ReLUMonitor(model) as monitor, torch.no_grad():
        model(torch.randn(2, 1, 48, 48, 48))
        model(torch.randn(1, 1, 48, 48, 48))
    dead, zero = monitor.result()
    assert set(dead) == {"conv1", "conv2", "embed"}
    assert dead["conv1"] == pytest.approx(2 / 4)  # tiny: 4 channels in conv1
    assert zero["conv1"] >= 0.5
    assert not any(m._forward_hooks for m in model.modules())  # hooks removed on exit


def test_gradient_norms_per_block_and_clipping():
    torch.manual_seed(0)
    model = SRANet(ModelConfig.preset("tiny"))
    blocks = gradient_blocks(model)
    assert list(blocks) == ["conv1", "conv2", "embed", "attn_K", "attn_Q", "attn_w", "head"]
    out = model(torch.randn(2, 1, 48, 48, 48))
    (out.logit.sum() + out.attention_logits.sum()).backward()
    expected = {k: torch.cat([p.grad.flatten() for p in v]).norm().item() for k, v in blocks.items()}
    total = math.sqrt(sum(v * v for v in expected.values()))
    monitor = GradientMonitor(model, clip=total / 2)
    monitor.step()
    r = monitor.result()
    for k, v in expected.items():
        assert r["grad_norm"][k] == pytest.approx(v, rel=1e-4)
    assert r["grad_norm_total"] == pytest.approx(total, rel=1e-4) and r["grad_clipped_share"] == 1.0
    clipped = math.sqrt(sum(p.grad.norm().item() ** 2 for p in model.parameters()))
    assert clipped == pytest.approx(total / 2, rel=1e-3)


def test_overflowed_step_is_counted_apart_from_the_norms():
    torch.manual_seed(0)
    model = SRANet(ModelConfig.preset("tiny"))
    monitor = GradientMonitor(model)
    for scale in (1.0, float("inf"), 1.0):
        model.zero_grad()
        out = model(torch.randn(2, 1, 48, 48, 48))
        (out.logit.sum() * scale).backward()
        monitor.step()
    r = monitor.result()
    assert r["grad_nonfinite_steps"] == 1
    assert math.isfinite(r["grad_norm_total"]) and math.isfinite(r["grad_norm_total_max"])
    assert r["grad_norm_total"] > 0


def test_diagnostics_png_from_records(tmp_path):
    history = [{"epoch": e, "lr": 1e-3, "alpha": 0.9, "train_loss_classification": 0.7 - 0.1 * e,
                "train_loss_structure": 0.5, "val_auc": 0.5 + 0.1 * e, "attn_patches": 64,
                "attn_effective_patches": 40.0, "dead_relu": {"conv1": 0.0, "embed": 0.2},
                "grad_norm": {"conv1": 0.1, "head": 1.0}} for e in (1, 2, 3)]
    path = diagnostics_png(history, tmp_path / "plots" / "d.png", title="t")
    img = cv2.imread(str(path))
    assert img is not None and img.shape[0] > 400 and img.shape[1] > 1000
