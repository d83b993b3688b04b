"""fp16 and int8 QDQ variants: float32 interface, what the graphs contain, and the same parity gate."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from sranet.config import ModelConfig, PreprocessConfig
from sranet.errors import InputError
from sranet.export.onnx import export_onnx
from sranet.export.parity import TOLERANCES, parity_inputs
from sranet.export.precision import quantize_int8
from sranet.runtime.artifact import ArtifactInfo
from tests.helpers import write_checkpoint

CFG = ModelConfig.preset("tiny")
PREP = PreprocessConfig.for_model(CFG)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("precision") / "best.pt", seed=2, epoch=1)


def _float_io(model) -> None:
    for vi in [*model.graph.input, *model.graph.output]:
        assert vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT, vi.name


@pytest.mark.integration
def test_fp16_variant(checkpoint, tmp_path):
    result = export_onnx(checkpoint, tmp_path / "m16.onnx", precision="fp16", parity_cases=2)
    model = onnx.load(result.path)
    _float_io(model)
    weights = [t for t in model.graph.initializer if t.name.endswith("weight")]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    casts = [n for n in model.graph.node if n.op_type == "Cast"]
    assert any(n.input[0] == "ct" for n in casts)  # float32 in -> fp16 graph
    assert {o.name for o in model.graph.output} <= {n.output[0] for n in casts}  # fp16 graph -> float32 out
    meta = ArtifactInfo.from_metadata({p.key: p.value for p in model.metadata_props})
    assert meta.precision == "fp16"

    report = json.loads(result.parity_path.read_text())["parity"]
    assert report["passed"] and report["precision"] == "fp16"
    assert report["tolerance"] == TOLERANCES["fp16"].__dict__
    # ORT's CPU EP computes these nodes in float32; the report says so and adds the PyTorch float16 check
    assert "float32" in report["runtime"]["compute_dtypes_on_cpu"]["Conv"]
    sim = report["runtime"]["fp16_arithmetic_simulation"]
    assert sim["passed"] and sim["cases"] == 2
    assert any("no fp16 kernels" in n for n in report["runtime"]["notes"])
    assert result.trt_ops.ok

    x, _ = parity_inputs(CFG, PREP, 2, seed=9)
    prob, att = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"]).run(None, {"ct": x})
    assert prob.dtype == np.float32 and att.shape == (2, 64)


@pytest.mark.integration
def test_int8_qdq_variant(checkpoint, tmp_path):
    calib, _ = parity_inputs(CFG, PREP, 6, seed=100)
    result = export_onnx(checkpoint, tmp_path / "m8.onnx", precision="int8", calib_volumes=list(calib[:, 0]),
                         parity_cases=2)
    model = onnx.load(result.path)
    _float_io(model)
    nodes = model.graph.node
    assert any(n.op_type == "QuantizeLinear" for n in nodes) and any(n.op_type == "DequantizeLinear" for n in nodes)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    # symmetric (zero points 0: TensorRT's requirement); weights int8 per output channel; biases stay float
    for n in nodes:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2:
            assert not inits[n.input[2]].any()
    conv_w = [n for n in nodes if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None
              and inits[n.input[0]].ndim == 5]
    assert len(conv_w) == 2
    for n in conv_w:
        assert inits[n.input[0]].dtype == np.int8
        assert inits[n.input[1]].shape == (inits[n.input[0]].shape[0],)  # one scale per output channel
    assert not any(v.dtype == np.int32 for v in inits.values())

    report = json.loads(result.parity_path.read_text())["parity"]
    assert report["passed"] and report["precision"] == "int8" and report["decision_flips"] == 0
    assert report["runtime"]["calibration"]["calibration_volumes"] == 6
    assert result.trt_ops.ok


@pytest.mark.integration
def test_int8_needs_volumes(checkpoint):
    from sranet.export.onnx import load_model, to_onnx_proto

    proto = to_onnx_proto(load_model(checkpoint)[0])
    with pytest.raises(InputError, match="got no volumes"):
        quantize_int8(proto, [])
    with pytest.raises(InputError, match="calibration method"):
        quantize_int8(proto, [np.zeros((48, 48, 48), np.float32)], method="kl")
