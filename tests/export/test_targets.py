"""Export targets: which graph each runtime gets (a pure function of target, precision and model config), and the
option combinations `sranet export` refuses before any work is done."""

from __future__ import annotations

import pytest

from sranet.config import ModelConfig
from sranet.errors import InputError
from sranet.export.graphs import GRAPHS, plan_graph
from sranet.export.targets import TARGETS, choose_graph, get_target, route_export

PAPER, TINY = ModelConfig.preset("paper"), ModelConfig.preset("tiny")


@pytest.mark.parametrize(("target", "precision", "cfg", "want"), [
    ("onnxruntime-cpu", "fp32", PAPER, "spectral"),
    ("onnxruntime-cpu", "fp32", TINY, "direct"),  # no layer gets cheaper in DFT form
    ("onnxruntime-cpu", "int8", PAPER, "direct"),
    ("openvino-cpu", "fp32", PAPER, "spectral"),
    ("openvino-cpu", "bf16", PAPER, "s2d-spectral"),
    ("openvino-cpu", "bf16", TINY, "s2d"),
    ("tensorrt", "fp16", PAPER, "direct"),
])
def test_choose_graph(target, precision, cfg, want):
    form, why = choose_graph(get_target(target), precision, cfg)
    assert form == want and why
    plan_graph(cfg, form)  # the choice applies to the model
    if cfg is TINY and form != TARGETS[target].graphs[precision][0]:
        assert "does not apply to this model" in why


def test_every_preferred_graph_is_a_known_form():
    for t in TARGETS.values():
        assert t.suffix in (".onnx", ".xml")
        for forms in t.graphs.values():
            assert set(forms) <= set(GRAPHS) and forms[-1] in ("direct", "s2d")  # always something that applies


@pytest.mark.parametrize(("target", "kwargs", "match"), [
    ("cuda", {}, "--target"),
    ("tensorrt", {"conv_impl": "spectral"}, "TensorRT builds from the direct graph"),
    ("onnxruntime-cpu", {"conv_impl": "s2d"}, "--conv-impl"),  # not an ONNX form at all
    ("onnxruntime-cpu", {"precision": "bf16"}, "--bf16 is an OpenVINO inference precision"),
    ("onnxruntime-cpu", {"engine": True}, "--target tensorrt --engine"),
    ("onnxruntime-cpu", {"openvino": True}, "--openvino writes an OpenVINO IR"),
    ("openvino-cpu", {"precision": "fp16"}, "not fp16"),
    ("openvino-cpu", {"triton": True}, "--engine and --triton build from an ONNX"),
    ("tensorrt", {"precision": "bf16"}, "--bf16"),
    ("openvino-cpu", {"out": "m.onnx"}, "must end in .xml"),
    ("tensorrt", {"out": "m.xml"}, "must end in .onnx"),
])
def test_route_refuses(target, kwargs, match):
    args = {"openvino": False, "precision": "fp32", "conv_impl": None, "engine": False, "triton": False, **kwargs}
    with pytest.raises(InputError, match=match):
        route_export(target, **args)


def test_route():
    r = route_export("openvino-cpu", openvino=False, precision="bf16", conv_impl=None, engine=False, triton=False)
    assert r.openvino and r.conv_impl is None and r.target.runtime == "openvino"
    r = route_export(None, openvino=True, precision="fp32", conv_impl="s2d", engine=False, triton=False)
    assert r.openvino and r.conv_impl == "s2d" and r.target is None
    r = route_export(None, openvino=False, precision="fp16", conv_impl=None, engine=True, triton=False)
    assert not r.openvino and r.conv_impl is None  # the default: direct, as without --target
