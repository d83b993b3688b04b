"""Graph forms: which layers each form rewrites, the metadata it records, the FLOPs it claims (checked against
torch's counter on the rewritten model) and outputs equal to the unmodified model's."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from sranet.config import ModelConfig
from sranet.errors import InputError
from sranet.export.graphs import GRAPHS, KEY_S2D_LAYERS, build_graph, plan_graph
from sranet.model.sranet import SRANet
from sranet.runtime.artifact import KEY_CONV_IMPL, KEY_SPECTRAL_LAYERS


def _model(preset: str):
    torch.manual_seed(0)
    return SRANet(ModelConfig.preset(preset)).eval()


@pytest.mark.parametrize(("preset", "form", "spectral", "s2d"), [
    ("paper", "direct", (), ()),
    ("paper", "spectral", (2,), ()),
    ("paper", "s2d", (), (1,)),
    ("paper", "s2d-spectral", (2,), (1,)),
    ("tiny", "s2d", (), (1,)),
])
def test_plan_and_metadata(preset, form, spectral, s2d):
    plan = plan_graph(ModelConfig.preset(preset), form)
    assert (plan.spectral_layers, plan.s2d_layers) == (spectral, s2d)
    meta = plan.metadata()
    assert meta[KEY_CONV_IMPL] == form
    assert meta.get(KEY_SPECTRAL_LAYERS) == (",".join(map(str, spectral)) or None)
    assert meta.get(KEY_S2D_LAYERS) == (",".join(map(str, s2d)) or None)


@pytest.mark.parametrize(("form", "spectral_layers", "match"), [
    ("spectral", None, "would not cut this model's arithmetic"),  # tiny: no layer gets cheaper in DFT form
    ("s2d-spectral", None, "would not cut"),
    ("direct", (1,), "spectral_layers was given"),
    ("spectral", (3,), "Conv3d layers are"),
    ("fft", None, "conv_impl"),
])
def test_refusals(form, spectral_layers, match):
    with pytest.raises(InputError, match=match):
        plan_graph(ModelConfig.preset("tiny"), form, spectral_layers)


@pytest.mark.parametrize(("preset", "form"), [
    ("tiny", "direct"), ("tiny", "s2d"),
    pytest.param("paper", "s2d-spectral", marks=pytest.mark.slow),
])
def test_flops_and_outputs_match_the_model(preset, form):
    model = _model(preset)
    plan = plan_graph(model.cfg, form)
    graph = build_graph(model, plan)
    S = model.cfg.input_size
    x = torch.randn(1, 1, S, S, S)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        got = graph(x)
    assert counter.get_total_flops() == plan.matmul_flops(model.cfg)
    with torch.no_grad():
        want = model(x)
    assert (got.attention - want.attention).abs().max().item() < 1e-6
    assert (got.logit - want.logit).abs().max().item() < 1e-5


def test_every_form_is_known_to_the_cli_and_targets():
    from sranet.export.targets import TARGETS

    assert GRAPHS == ("direct", "spectral", "s2d", "s2d-spectral")
    assert {f for t in TARGETS.values() for forms in t.graphs.values() for f in forms} <= set(GRAPHS)
