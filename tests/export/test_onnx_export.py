"""export_onnx: graph interface, metadata round trip, dynamic batch, the gate refusing a broken model, bad arguments,
and one export of the default (paper, 128^3) configuration."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from sranet.config import ModelConfig, PreprocessConfig
from sranet.errors import InputError, ParityGateError
from sranet.export import onnx as export_mod
from sranet.export.onnx import export_onnx
from sranet.export.parity import parity_inputs
from sranet.model.checkpoint import load_checkpoint
from sranet.runtime.artifact import ArtifactInfo, sha256_file
from tests.helpers import write_checkpoint


def make_checkpoint(path, preset="tiny", *, seed=0):
    return write_checkpoint(path, seed=seed, preset=preset, threshold=0.42, epoch=3, metrics={"auc": 0.5})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("onnx_export")
    ckpt = make_checkpoint(tmp / "best.pt")
    result = export_onnx(ckpt, tmp / "model.onnx", parity_cases=3)
    return ckpt, result


@pytest.mark.integration
def test_graph_interface_and_dynamic_batch(exported):
    _, result = exported
    model = onnx.load(result.path)
    onnx.checker.check_model(model, full_check=True)
    (inp,), outs = model.graph.input, model.graph.output
    assert inp.name == "ct" and [o.name for o in outs] == ["prob", "attention"]
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1:] == [1, 48, 48, 48]
    assert [d.dim_value for d in outs[1].type.tensor_type.shape.dim][1:] == [64]
    assert next(o.version for o in model.opset_import if o.domain == "") == export_mod.DEFAULT_OPSET

    net = load_checkpoint(exported[0]).build_model()
    sess = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    x, _ = parity_inputs(net.cfg, PreprocessConfig.for_model(net.cfg), 3, seed=11)
    for batch in (x[:1], x):  # B=1 and B=3 through the same graph
        prob, att = sess.run(None, {"ct": batch})
        with torch.inference_mode():
            ref = net(torch.from_numpy(batch))
        assert prob.shape == (len(batch),) and att.shape == (len(batch), 64)
        np.testing.assert_allclose(prob, torch.sigmoid(ref.logit).numpy(), atol=1e-5)
        np.testing.assert_allclose(att, ref.attention.numpy(), atol=1e-5)
        np.testing.assert_allclose(att.sum(axis=1), 1.0, atol=1e-4)


def test_metadata_round_trip(exported):
    ckpt, result = exported
    meta = {p.key: p.value for p in onnx.load(result.path).metadata_props}
    info = ArtifactInfo.from_metadata(meta, path=result.path)
    assert info.model == ModelConfig.preset("tiny")
    assert info.preprocess == PreprocessConfig.for_model(info.model)
    assert info.threshold == pytest.approx(0.42)
    assert info.source_sha256 == sha256_file(ckpt)
    assert info.precision == "fp32"
    assert info.extra["sranet.opset"] == str(export_mod.DEFAULT_OPSET)


def test_parity_report_saved_next_to_model(exported):
    _, result = exported
    assert result.parity_path == result.path.with_name("model.onnx.parity.json")
    data = json.loads(result.parity_path.read_text())
    parity = data["parity"]
    assert parity["passed"] and parity["cases"] == 3 and parity["decision_flips"] == 0
    assert parity["max_abs_prob"] <= parity["tolerance"]["prob_abs"]
    assert "synthetic hip CT phantoms" in parity["inputs"]
    assert data["sha256"] == sha256_file(result.path)
    assert data["tensorrt_op_check"]["ok"] is True


@pytest.mark.integration
def test_broken_model_fails_gate_and_writes_nothing(tmp_path, monkeypatch):
    ckpt = make_checkpoint(tmp_path / "best.pt", seed=1)
    real = export_mod.to_onnx_proto

    def perturbed(model, **kwargs):  # weights change after the PyTorch reference has been computed
        with torch.no_grad():
            model.head.weight.add_(0.5)
            model.attention.w.weight.mul_(-3.0)
        return real(model, **kwargs)

    monkeypatch.setattr(export_mod, "to_onnx_proto", perturbed)
    out = tmp_path / "out" / "model.onnx"
    with pytest.raises(ParityGateError, match="disagrees with the PyTorch model") as info:
        export_onnx(ckpt, out, parity_cases=2)
    assert not info.value.report.passed and info.value.report.max_abs_attention > 1e-4
    assert not out.parent.exists() or not any(out.parent.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"opset": 17}, "opset=17 is outside"),
    ({"opset": 25}, "opset=25 is outside"),
    ({"precision": "fp8"}, "precision='fp8'"),
    ({"precision": "int8"}, "int8 export needs calibration"),
    ({"parity_cases": 1}, "at least 2 volumes"),
    ({"calib_manifest": "x.csv"}, "only used with int8"),
    ({"conv_impl": "fft"}, "conv_impl='fft' is not one of"),
    ({"conv_impl": "spectral", "precision": "fp16"}, "spectral is fp32 only"),
    ({"conv_impl": "spectral", "precision": "int8", "calib_manifest": "x.csv"}, "spectral is fp32 only"),
    ({"spectral_layers": (2,)}, "spectral_layers was given for a direct export"),
])
def test_bad_arguments_are_refused_before_work(tmp_path, kwargs, message):
    ckpt = tmp_path / "missing.pt"  # never opened: arguments are checked first
    with pytest.raises(InputError, match=message):
        export_onnx(ckpt, tmp_path / "m.onnx", **kwargs)
    with pytest.raises(InputError, match="must end in .onnx"):
        export_onnx(ckpt, tmp_path / "m.engine")


def test_paper_configuration_full_128_path(tmp_path):
    """The default (paper) configuration: 128^3 input, 3.4 M parameters, batch 2 through the gate."""
    ckpt = make_checkpoint(tmp_path / "paper.pt", preset="paper")
    result = export_onnx(ckpt, tmp_path / "paper.onnx", parity_cases=2)
    assert result.parity.passed and result.parity.cases == 2
    assert result.parity.max_abs_prob < 1e-4 and result.parity.decision_flips == 0
    assert result.trt_ops.ok
    model = onnx.load(result.path)
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][1:] == [1, 128, 128, 128]
    assert ArtifactInfo.from_metadata({p.key: p.value for p in model.metadata_props}).model == ModelConfig()


@pytest.mark.slow
def test_paper_configuration_spectral_128_path(tmp_path):
    """The paper configuration exported in spectral form: conv2 chosen by arithmetic, gated at 1e-4."""
    ckpt = make_checkpoint(tmp_path / "paper.pt", preset="paper")
    spectral = export_onnx(ckpt, tmp_path / "paper.spectral.onnx", parity_cases=2, conv_impl="spectral")
    assert spectral.parity.passed and spectral.parity.max_abs_prob < 1e-4
    assert spectral.parity.max_abs_attention < 1e-4 and spectral.parity.top1_agreement_tie_aware == 1.0
    assert spectral.info.spectral_layers == (2,)  # chosen by arithmetic: conv2 only
    ops = [n.op_type for n in onnx.load(spectral.path).graph.node]
    assert ops.count("Conv") == 1 and spectral.trt_ops.ok


@pytest.mark.integration
def test_spectral_export_matches_pytorch_without_conv_nodes(tmp_path):
    """Both tiny Conv3d layers forced into the frequency domain: the gate passes against the unmodified model,
    the graph has MatMuls instead of Conv nodes, the metadata says so, and the batch stays dynamic."""
    ckpt = make_checkpoint(tmp_path / "best.pt", seed=2)
    result = export_onnx(ckpt, tmp_path / "spectral.onnx", parity_cases=2, conv_impl="spectral",
                         spectral_layers=(2, 1))
    assert result.parity.passed and result.parity.runtime["spectral_layers"] == [1, 2]
    model = onnx.load(result.path)
    ops = [n.op_type for n in model.graph.node]
    assert "Conv" not in ops and ops.count("MatMul") >= 8
    info = ArtifactInfo.from_metadata({p.key: p.value for p in model.metadata_props})
    assert info.extra["sranet.conv_impl"] == "spectral" and info.spectral_layers == (1, 2)
    assert result.trt_ops.ok

    net = load_checkpoint(ckpt).build_model()
    sess = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    x, _ = parity_inputs(net.cfg, PreprocessConfig.for_model(net.cfg), 3, seed=5)
    for batch in (x[:1], x):
        prob, att = sess.run(None, {"ct": batch})
        with torch.inference_mode():
            ref = net(torch.from_numpy(batch))
        np.testing.assert_allclose(prob, torch.sigmoid(ref.logit).numpy(), atol=1e-5)
        np.testing.assert_allclose(att, ref.attention.numpy(), atol=1e-5)


def test_spectral_export_refuses_a_model_it_would_not_speed_up(tmp_path):
    ckpt = make_checkpoint(tmp_path / "best.pt")
    with pytest.raises(InputError, match="would not cut this model's arithmetic") as info:
        export_onnx(ckpt, tmp_path / "m.onnx", conv_impl="spectral")
    assert "conv1" in str(info.value) and "conv2" in str(info.value)
    with pytest.raises(InputError, match=r"Conv3d layers are \[1, 2\]"):
        export_onnx(ckpt, tmp_path / "m.onnx", conv_impl="spectral", spectral_layers=(3,))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]
