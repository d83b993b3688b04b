"""`sranet export --target / --openvino / --bf16`: the graph each target picks, the IR it writes, and the
combinations refused before any work is done."""

from __future__ import annotations

import importlib.util

import pytest
from typer.testing import CliRunner

from sranet.cli.main import app
from tests.helpers import write_checkpoint

runner = CliRunner()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("cli_target") / "best.pt", seed=3)


def _run(*args):
    return runner.invoke(app, ["export", *map(str, args)])


@pytest.mark.parametrize(("out", "extra", "needle"), [
    ("m.onnx", ["--target", "gpu"], "--target"),
    ("m.onnx", ["--bf16"], "--bf16 is an OpenVINO inference precision"),
    ("m.xml", ["--bf16", "--fp16"], "choose one precision"),
    ("m.onnx", ["--target", "tensorrt", "--conv-impl", "spectral"], "TensorRT builds from the direct graph"),
    ("m.xml", ["--target", "openvino-cpu", "--int8", "--calib", "x.csv"], "not int8"),
    ("m.xml", ["--openvino", "--engine"], "--engine and --triton build from an ONNX"),
    ("m.onnx", ["--target", "onnxruntime-cpu", "--engine"], "--target tensorrt --engine"),
    ("m.onnx", ["--openvino"], "must end in .xml"),
    ("m.xml", ["--target", "tensorrt"], "must end in .onnx"),
])
def test_refused_before_any_work(tmp_path, ckpt, out, extra, needle):
    r = _run(ckpt, "--out", tmp_path / out, *extra)
    assert r.exit_code == 1 and needle in r.output, r.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.integration
def test_target_onnxruntime_falls_back_to_direct_for_a_small_model(tmp_path, ckpt):
    r = _run(ckpt, "--out", tmp_path / "m.onnx", "--target", "onnxruntime-cpu", "--parity-cases", "2")
    assert r.exit_code == 0, r.output
    assert "--target onnxruntime-cpu: graph direct" in r.output and "spectral does not apply" in r.output
    assert (tmp_path / "m.onnx").is_file()


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino is not installed")
def test_target_openvino_writes_a_gated_ir(tmp_path, ckpt):
    r = _run(ckpt, "--out", tmp_path / "m.xml", "--target", "openvino-cpu", "--parity-cases", "2")
    assert r.exit_code == 0, r.output
    assert "graph spectral" not in r.output and "--target openvino-cpu: graph direct" in r.output
    assert "Parity gate (fp32" in r.output and "PASSED" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.xml", "m.xml.parity.json"]
    # the IR runs through `sranet predict` like any artifact, with the answers of the ONNX of the same checkpoint
    import json

    from tests.helpers import phantom_hu, write_dicom_series

    series = write_dicom_series(tmp_path / "cases" / "s0", phantom_hu(seed=0))
    assert _run(ckpt, "--out", tmp_path / "m.onnx", "--parity-cases", "2").exit_code == 0
    lines = {}
    for artifact in ("m.xml", "m.onnx"):
        out = tmp_path / f"{artifact}.jsonl"
        r = runner.invoke(app, ["predict", str(tmp_path / artifact), str(series), "--out", str(out), "--roi",
                                "whole"])
        assert r.exit_code == 0, r.output
        lines[artifact] = json.loads(out.read_text().splitlines()[0])
    assert lines["m.xml"]["probability"] == pytest.approx(lines["m.onnx"]["probability"], abs=1e-5)
