"""`sranet export`: exit codes and messages for bad input, a full fp32 export with a Triton repository, signed and
checked end to end by `sranet predict --trusted-key`, int8 from a manifest, and --engine without TensorRT (clear
error after the ONNX is written)."""

from __future__ import annotations

import importlib.util
import json
import os
import stat

import numpy as np
import pytest
from typer.testing import CliRunner

from sranet.cli.main import app
from tests.helpers import phantom_hu, tiny_model, with_threshold, write_checkpoint, write_onnx

runner = CliRunner()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("cli_export") / "best.pt", seed=3, epoch=1)


def _run(*args):
    return runner.invoke(app, ["export", *map(str, args)])


def test_missing_checkpoint(tmp_path):
    r = _run(tmp_path / "nope.pt", "--out", tmp_path / "m.onnx")
    assert r.exit_code == 1
    assert "Error:" in r.output and "nope.pt" in r.output and "does not exist" in r.output
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize(("extra", "needle"), [
    (["--int8"], "--int8 needs calibration"),
    (["--fp16", "--int8", "--calib", "x.csv"], "choose one precision"),
    (["--calib", "x.csv"], "--calib is only used with --int8"),
    (["--engine", "--profile", "8:4:16"], "MIN <= OPT <= MAX"),
    (["--engine", "--profile", "1:x:4"], "is not MIN:OPT:MAX"),
    (["--profile", "1:4:8"], "--profile sets the engine profile"),
    (["--workspace-gib", "2"], "only apply to a TensorRT engine"),
    (["--engine", "--hardware-compatibility", "amper+"], "Did you mean 'ampere+'"),
    (["--opset", "13"], "opset=13 is outside"),
    (["--int8", "--calib", "missing.csv"], "calibration manifest"),
    (["--engine", "--profile", "2:4:8", "--triton", "repo"], "Triton may send a batch of 1"),
    (["--conv-impl", "fft"], "--conv-impl='fft' is not one of"),
    (["--conv-impl", "spectral", "--engine"], "a TensorRT plan is built from the direct graph"),
    (["--conv-impl", "spectral", "--fp16"], "spectral is fp32 only"),
    (["--conv-impl", "spectral"], "would not cut this model's arithmetic"),  # tiny: 3^3 kernels on 12^3 patches
    (["--compute-capability", "8.9"], "only apply to a TensorRT engine"),
    (["--engine", "--compute-capability", "8.9"], "--compute-capability chooses TensorRT-RTX targets"),
    (["--engine", "--engine-flavour", "tensorrt-rtx", "--timing-cache", "t.cache"], "does not apply to TensorRT-RTX"),
    (["--engine", "--engine-flavour", "rtx"], "--engine-flavour='rtx' is not one of"),
    (["--triton-backend", "python"], "describe the Triton repository"),
    (["--triton", "repo", "--triton-backend", "onnx"], "--triton-backend='onnx' is not one of"),
    (["--engine", "--triton", "repo", "--triton-device", "cpu"], "a TensorRT plan runs on a GPU only"),
])
def test_bad_options_exit_1_before_export(ckpt, tmp_path, extra, needle):
    r = _run(ckpt, "--out", tmp_path / "m.onnx", *extra)
    assert r.exit_code == 1, r.output
    assert needle in r.output
    assert not list(tmp_path.iterdir())  # refused before any work


@pytest.mark.integration
def test_fp32_export_with_triton_repo_signed_and_checked_end_to_end(ckpt, tmp_path):
    pytest.importorskip("cryptography")
    from tests.robustness.inputs import make_keys

    key, pub = make_keys(tmp_path, "signing")
    _, other_pub = make_keys(tmp_path, "other")
    out = tmp_path / "m.onnx"
    old_umask = os.umask(0o022)
    try:
        r = _run(ckpt, "--out", out, "--parity-cases", "2", "--triton", tmp_path / "repo", "--profile", "1:2:4",
                 "--sign", key)
    finally:
        os.umask(old_umask)
    assert r.exit_code == 0, r.output
    assert "Parity gate (fp32, 2 cases" in r.output and "PASSED" in r.output
    assert "TensorRT op check" in r.output and "all ops and attributes supported" in r.output
    assert out.is_file() and json.loads((tmp_path / "m.onnx.parity.json").read_text())["parity"]["passed"]
    config = (tmp_path / "repo" / "sranet" / "config.pbtxt").read_text()
    assert "max_batch_size: 4" in config and (tmp_path / "repo" / "sranet" / "1" / "model.onnx").is_file()
    # written with the user's umask, like any other file (not 0600)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644 and "signed" in r.output
    assert stat.S_IMODE((tmp_path / "m.onnx.parity.json").stat().st_mode) == 0o644

    # end to end: the signed export runs under its key; tampered, unsigned or otherwise signed ones do not
    case = tmp_path / "v.npy"
    np.save(case, phantom_hu((20, 40, 40)))

    def predict(artifact, *keys):
        results = tmp_path / f"r{len(list(tmp_path.glob('r*.jsonl')))}.jsonl"
        args = ["predict", str(artifact), str(case), "--spacing-mm", "2,0.8,0.8", "--out", str(results), "--roi", "whole"]
        return runner.invoke(app, [*args, *(a for k in keys for a in ("--trusted-key", str(k)))])

    assert predict(out, pub).exit_code == 0
    unsigned = write_onnx(tmp_path / "unsigned.onnx", tiny_model(seed=3))
    r = predict(unsigned, pub)
    assert r.exit_code == 1 and "is not signed" in r.output
    r = predict(out, other_pub)
    assert r.exit_code == 1 and "which is not a trusted key" in r.output
    flipped = tmp_path / "flipped.onnx"
    import onnx

    weight = max(onnx.load(str(out)).graph.initializer, key=lambda t: len(t.raw_data)).raw_data
    data = bytearray(out.read_bytes())
    data[data.find(weight) + 7] ^= 0x01
    flipped.write_bytes(bytes(data))
    for keys in ((), (pub,)):
        r = predict(flipped, *keys)
        assert r.exit_code == 1 and "does not match the digest recorded at export" in r.output, r.output
    zero = with_threshold(out, tmp_path / "zero.onnx", 0.0)  # threshold 0 with a recomputed digest, old signature
    proto = onnx.load(str(zero))
    signature = {p.key: p.value for p in onnx.load(str(out)).metadata_props if p.key.startswith("sranet.sign")}
    for key_name, value in signature.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key_name, value
    onnx.save(proto, str(zero))
    r = predict(zero, pub)
    assert r.exit_code == 1 and "signature does not verify" in r.output, r.output


@pytest.mark.integration
def test_int8_from_manifest(ckpt, tmp_path):
    from sranet.data.synthetic_dataset import write_dataset

    manifest = write_dataset(tmp_path / "data", 4, seed=1, shape=(32, 48, 48))
    r = _run(ckpt, "--out", tmp_path / "m8.onnx", "--int8", "--calib", manifest, "--parity-cases", "2")
    assert r.exit_code == 0, r.output
    assert "Parity gate (int8" in r.output and "PASSED" in r.output
    calib = json.loads((tmp_path / "m8.onnx.parity.json").read_text())["parity"]["runtime"]["calibration"]
    assert 1 <= calib["calibration_volumes"] <= 4


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_engine_without_tensorrt_writes_onnx_then_fails(ckpt, tmp_path):
    out = tmp_path / "m.onnx"
    r = _run(ckpt, "--out", out, "--parity-cases", "2", "--engine", "--profile", "1:2:4")
    assert r.exit_code == 1
    assert "needs TensorRT" in r.output and "pip install 'sranet[gpu-cu12]'" in r.output
    assert out.is_file() and not (tmp_path / "m.engine").exists()
