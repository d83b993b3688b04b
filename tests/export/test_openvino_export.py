"""OpenVINO IR export: gated on OpenVINO (fp32 and bf16) before anything is written, metadata in the IR, float32
weights, refusals; the paper configuration in the slow set."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from sranet.errors import InputError, ParityGateError
from tests.helpers import write_checkpoint

if importlib.util.find_spec("openvino") is None:  # not importorskip: a plain `import openvino` starts its telemetry
    pytest.skip("openvino is not installed (pip install 'sranet[openvino]')", allow_module_level=True)
pytest.importorskip("torch")

from sranet.export.openvino import export_openvino  # noqa: E402
from sranet.runtime.backends.openvino import OpenVinoBackend, cpu_supports_bf16, import_openvino, read_info  # noqa: E402

HAS_BF16 = cpu_supports_bf16(import_openvino().Core())
needs_bf16 = pytest.mark.skipif(not HAS_BF16, reason="this CPU has neither AVX512_BF16 nor AMX: bf16 cannot be gated")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", threshold=0.4)


def test_fp32_export_is_gated_and_carries_its_metadata(tmp_path, ckpt):
    result = export_openvino(ckpt, tmp_path / "m.xml", conv_impl="s2d", parity_cases=2)
    assert result.parity.passed and result.parity.precision == "fp32"
    assert result.parity.max_abs_prob < 1e-4 and result.parity.runtime["config_applied"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.xml", "m.xml.parity.json"]  # no leftovers
    info = read_info(tmp_path / "m.xml")
    assert info.threshold == 0.4 and info.precision == "fp32"
    assert info.extra["sranet.conv_impl"] == "s2d" and info.extra["sranet.s2d_layers"] == "1"
    payload = json.loads((tmp_path / "m.xml.parity.json").read_text())
    assert payload["weights"] == "m.bin" and payload["parity"]["passed"]
    xml = (tmp_path / "m.xml").read_text()
    assert 'element_type="f16"' not in xml and 'element_type="f32"' in xml  # weights kept in float32


@pytest.mark.integration
@needs_bf16
def test_bf16_export_is_gated_in_bf16(tmp_path, ckpt):
    result = export_openvino(ckpt, tmp_path / "m.bf16.xml", precision="bf16", conv_impl="s2d", parity_cases=4)
    report = result.parity
    assert report.passed and report.decision_flips == 0 and report.top1_agreement_tie_aware == 1.0
    assert report.runtime["config_applied"]["INFERENCE_PRECISION_HINT"] == "bf16"
    assert 0 < report.max_abs_attention <= report.tolerance.attention_abs  # bf16 rounding shows, within bounds
    with OpenVinoBackend(result.path) as backend:
        assert backend.info.precision == "bf16"
        assert backend.describe()["config_applied"]["INFERENCE_PRECISION_HINT"] == "bf16"


@pytest.mark.integration
@needs_bf16
def test_a_failed_gate_writes_nothing(tmp_path, ckpt, monkeypatch):
    from sranet.export import parity

    strict = parity.Tolerance(prob_abs=1e-9, attention_abs=1e-9, min_top1_agreement=1.0)
    monkeypatch.setitem(parity.TOLERANCES, "bf16", strict)  # bf16 rounding cannot meet fp64-level bounds
    with pytest.raises(ParityGateError, match="bf16 export disagrees") as err:
        export_openvino(ckpt, tmp_path / "m.xml", precision="bf16", parity_cases=2)
    assert err.value.report.max_abs_attention > 1e-9
    assert list(tmp_path.iterdir()) == []


def test_bf16_is_refused_where_it_cannot_be_gated(tmp_path, ckpt, monkeypatch):
    import sranet.runtime.backends.openvino as backend_module

    monkeypatch.setattr(backend_module, "cpu_supports_bf16", lambda core: False)
    with pytest.raises(InputError, match="would compute float32"):
        export_openvino(ckpt, tmp_path / "m.xml", precision="bf16")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"out": "m.onnx"}, "must end in .xml"),
    ({"precision": "fp16"}, "precision"),
    ({"parity_cases": 1}, "at least 2"),
    ({"threads": 0}, "positive integer"),
    ({"conv_impl": "spectral"}, "would not cut"),  # tiny: no layer gets cheaper
    ({"conv_impl": "winograd"}, "conv_impl"),
])
def test_refuses_bad_arguments(tmp_path, ckpt, kwargs, match):
    out = tmp_path / kwargs.pop("out", "m.xml")
    with pytest.raises(InputError, match=match):
        export_openvino(ckpt, out, **kwargs)
    assert not out.exists()


@pytest.mark.slow
def test_paper_configuration(tmp_path):
    """The paper configuration: fp32 (spectral) against ONNX Runtime's fp32 export, bf16 (s2d-spectral) gated."""
    from sranet.export.onnx import export_onnx
    from sranet.runtime.backends import open_backend
    from tests.helpers import tiny_model

    ckpt = write_checkpoint(tmp_path / "paper.pt", tiny_model(0, "paper"))
    fp32 = export_openvino(ckpt, tmp_path / "paper.xml", conv_impl="spectral", parity_cases=4)
    assert fp32.parity.passed and fp32.parity.max_abs_attention < 1e-4
    onnx_path = export_onnx(ckpt, tmp_path / "paper.onnx", parity_cases=2).path
    x = np.random.default_rng(0).standard_normal((1, 1, 128, 128, 128), dtype=np.float32)
    with open_backend(fp32.path, threads=2) as ov_b, open_backend(onnx_path, threads=2) as ort_b:
        got, want = ov_b.infer(x), ort_b.infer(x)
    np.testing.assert_allclose(got["attention"], want["attention"], atol=1e-5)
    np.testing.assert_allclose(got["prob"], want["prob"], atol=1e-5)
    if HAS_BF16:
        bf16 = export_openvino(ckpt, tmp_path / "paper.bf16.xml", precision="bf16", conv_impl="s2d-spectral")
        assert bf16.parity.passed and bf16.parity.decision_flips == 0
