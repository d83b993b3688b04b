"""`sranet predict` on crops (`--roi whole`): JSON lines, heatmaps, failures recorded with exit code 1, resumable
reruns, argument errors. Whole studies (no --roi): tests/cli/test_predict_study_cli.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sranet.cli.main import app
from tests.helpers import PATIENT_ID, phantom_hu, write_dicom_series, write_engine

pytest.importorskip("torch")  # the shared tiny_artifacts are exported from PyTorch

runner = CliRunner()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Two DICOM series, a NIfTI and a corrupt file (third of four)."""
    import nibabel as nib

    root = tmp_path_factory.mktemp("cases")
    s0 = write_dicom_series(root / "DOE^JANE_series", phantom_hu(seed=0))
    s1 = write_dicom_series(root / "s1", phantom_hu(seed=1))
    nii = root / "vol.nii.gz"
    nib.save(nib.Nifti1Image(phantom_hu(seed=2).astype(np.int16), np.diag([-0.8, -0.8, 2.0, 1.0])), str(nii))
    bad = root / "broken.dcm"
    bad.write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00" * 20)
    return [s0, s1, bad, nii]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_predict_batch_with_corrupt_case_heatmaps_and_resume(tmp_path, tiny_artifacts, inputs):
    out, hm = tmp_path / "results.jsonl", tmp_path / "heatmaps"
    args = ["predict", str(tiny_artifacts[0]), *map(str, inputs), "--out", str(out), "--heatmaps", str(hm),
            "--batch", "2", "--threads", "1", "--device", "cpu", "--roi", "whole"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "3 predicted, 1 failed" in result.output and "1 of 4 cases failed" in result.output
    lines = _lines(out)
    assert len(lines) == 4
    failed = [r for r in lines if "error" in r]
    assert len(failed) == 1 and "broken.dcm" in failed[0]["message"] and failed[0]["error"].endswith("Error")
    assert set(failed[0]) == {"case", "source", "side", "error", "message", "model_sha256", "sranet_version"}
    assert failed[0]["source"] == str(inputs[2]) and len(failed[0]["model_sha256"]) == 64
    for r in (r for r in lines if "error" not in r):
        assert 0 <= r["probability"] <= 1 and r["threshold"] == 0.5 and len(r["model_sha256"]) == 64
        assert np.asarray(r["attention_grid"]).shape == (4, 4, 4) and len(r["top_patches"]) == 3
        assert set(r["timings_ms"]) == {"read", "preprocess", "infer", "post"}
        assert r["roi_source"] == "whole" and r["roi"] is None and "no_roi" in r["qc"]
        assert Path(r["heatmaps"]["png"]).is_file() and Path(r["heatmaps"]["nifti"]).is_file()
    # no patient name or ID anywhere: case keys are hashes of paths, not DICOM tags
    text = out.read_text() + " ".join(p.name for p in hm.iterdir())
    assert PATIENT_ID not in text and "DOE^JANE" not in " ".join(p.name for p in hm.iterdir())

    # rerun: nothing new, nothing duplicated (the failed case is kept as recorded)
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "0 predicted, 0 failed, 4 already in results.jsonl (skipped)" in again.output
    assert len(_lines(out)) == 4

    # crash simulation: the last line is cut in half -> dropped, that case is predicted again, once
    data = out.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    lost = json.loads(data[last_start:])["case"]
    out.write_bytes(data[: last_start + 40])
    resumed = runner.invoke(app, args)
    assert "dropped a partial last line" in resumed.output
    assert "1 predicted" in resumed.output or "0 predicted, 1 failed" in resumed.output
    cases = [r["case"] for r in _lines(out)]
    assert len(cases) == 4 and len(set(cases)) == 4 and lost in cases


def test_manifest_cases_use_their_ids(tmp_path, tiny_artifacts, inputs):
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"case_id,path,label,split\nhip 01,{inputs[0]},1,test\nhip-02,{inputs[1]},0,test\n")
    out = tmp_path / "r.jsonl"
    result = runner.invoke(app, ["predict", str(tiny_artifacts[0]), "--manifest", str(manifest), "--out", str(out),
                                 "--roi", "whole"])
    assert result.exit_code == 0, result.output
    assert [r["case"] for r in _lines(out)] == ["hip_01", "hip-02"]


def test_pt_artifact_runs_the_same(tmp_path, tiny_artifacts, inputs):
    out_onnx, out_pt = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert runner.invoke(app, ["predict", str(tiny_artifacts[0]), str(inputs[1]), "--out", str(out_onnx),
                               "--roi", "whole"]).exit_code == 0
    assert runner.invoke(app, ["predict", str(tiny_artifacts[1]), str(inputs[1]), "--out", str(out_pt),
                               "--device", "cpu", "--threads", "1", "--roi", "whole"]).exit_code == 0
    assert _lines(out_onnx)[0]["probability"] == pytest.approx(_lines(out_pt)[0]["probability"], abs=1e-5)


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "no inputs given"),
        (["INPUT", "--device", "cuda:0", "--provider", "cuda"], "provider 'cuda' needs onnxruntime's CUDAExecution"),
        (["INPUT", "--device", "cuda:0", "--provider", "gpu"], "provider='gpu' is not one of"),
        (["INPUT", "--provider", "cuda"], "provider='cuda' chooses ONNX Runtime's GPU execution provider, but the"),
        (["INPUT", "--device", "tpu"], "device='tpu' is not 'cpu' or 'cuda:N'"),
        (["INPUT", "--top-k", "0"], "Invalid value for '--top-k'"),
        (["INPUT", "--threads", "0"], "Invalid value for '--threads'"),
        (["INPUT", "--prefetch", "9"], "prefetch=9 must be an integer from 0 to 8"),
        (["INPUT", "--prefetch", "-1"], "prefetch=-1 must be an integer from 0 to 8"),
    ],
    ids=["no-inputs", "missing-provider", "bad-provider", "provider-on-cpu", "bad-device", "bad-top-k", "bad-threads",
         "prefetch-too-many", "prefetch-negative"],
)
def test_argument_errors(tmp_path, tiny_artifacts, inputs, extra, message):
    import onnxruntime as ort

    if "cuda" in extra and "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is available here")
    extra = [str(inputs[1]) if a == "INPUT" else a for a in extra]
    result = runner.invoke(app, ["predict", str(tiny_artifacts[0]), *extra, "--out", str(tmp_path / "r.jsonl")])
    assert result.exit_code in (1, 2) and message in result.output


def test_missing_artifact_and_provider_on_pt(tmp_path, tiny_artifacts, inputs):
    r = runner.invoke(app, ["predict", str(tmp_path / "nope.onnx"), str(inputs[1]), "--out", str(tmp_path / "r.jsonl")])
    assert r.exit_code == 1 and "Error:" in r.output and "nope.onnx" in r.output
    r = runner.invoke(app, ["predict", str(tiny_artifacts[1]), str(inputs[1]), "--provider", "cuda",
                            "--out", str(tmp_path / "r.jsonl")])
    assert r.exit_code == 1 and "provider='cuda' (--provider) is not a setting of the torch backend" in r.output
    assert str(tiny_artifacts[1]) in r.output


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_device_reaches_the_pt_backend(tmp_path, tiny_artifacts, inputs):
    r = runner.invoke(app, ["predict", str(tiny_artifacts[1]), str(inputs[1]), "--device", "cuda:0",
                            "--out", str(tmp_path / "r.jsonl")])
    assert r.exit_code == 1 and "device cuda:0 was asked for, but PyTorch sees no CUDA GPU" in r.output


def test_npy_input_needs_spacing(tmp_path, tiny_artifacts):
    vol = tmp_path / "v.npy"
    np.save(vol, phantom_hu(seed=3))
    out = tmp_path / "r.jsonl"
    r = runner.invoke(app, ["predict", str(tiny_artifacts[0]), str(vol), "--out", str(out), "--spacing-mm", "2,0.8,0.8",
                            "--roi", "whole"])
    assert r.exit_code == 0, r.output
    assert _lines(out)[0]["case"].startswith("path-")
    r = runner.invoke(app, ["predict", str(tiny_artifacts[0]), str(vol), "--out", str(out), "--spacing-mm", "2,0.8"])
    assert r.exit_code == 1 and "--spacing-mm '2,0.8' must be three positive numbers" in r.output


def test_spacing_applies_to_npy_inputs_only(tmp_path, tiny_artifacts, inputs):
    """A batch mixing a DICOM series and a .npy: --spacing-mm is the .npy's, the DICOM case keeps its own geometry."""
    vol = tmp_path / "v.npy"
    np.save(vol, phantom_hu(seed=3))
    out = tmp_path / "r.jsonl"
    r = runner.invoke(app, ["predict", str(tiny_artifacts[0]), str(inputs[1]), str(vol), "--out", str(out),
                            "--spacing-mm", "2,0.8,0.8", "--roi", "whole"])
    assert r.exit_code == 0, r.output
    assert "2 predicted, 0 failed" in r.output and not any("error" in line for line in _lines(out))


def test_engine_artifact_refuses_what_it_cannot_honour(tmp_path, inputs):
    """A plan without its sidecar is refused before anything else (nothing vouches for it); a sealed one reaches
    TensorRTBackend, which refuses the CPU and CPU threads by name."""
    bare = tmp_path / "bare" / "m.engine"
    bare.parent.mkdir()
    bare.write_bytes(b"not a plan")
    out = tmp_path / "r.jsonl"
    r = runner.invoke(app, ["predict", str(bare), str(inputs[1]), "--out", str(out), "--device", "cuda:0"])
    assert r.exit_code == 1 and "Error:" in r.output and "has no sidecar m.engine.json" in r.output
    engine = write_engine(tmp_path)
    r = runner.invoke(app, ["predict", str(engine), str(inputs[1]), "--out", str(out)])
    assert r.exit_code == 1 and not isinstance(r.exception, TypeError), r.exception
    assert "device='cpu': a TensorRT plan runs on NVIDIA GPUs only" in r.output and "--device cuda:N" in r.output
    r = runner.invoke(app, ["predict", str(engine), str(inputs[1]), "--out", str(out), "--device", "cuda:0",
                            "--threads", "2"])
    assert r.exit_code == 1 and "threads=2: a TensorRT plan runs on the GPU" in r.output


def test_heatmaps_path_that_is_a_file_is_refused_up_front(tmp_path, tiny_artifacts, inputs):
    taken = tmp_path / "maps.png"
    taken.write_bytes(b"x")
    out = tmp_path / "r.jsonl"
    r = runner.invoke(app, ["predict", str(tiny_artifacts[0]), str(inputs[1]), "--out", str(out),
                            "--heatmaps", str(taken)])
    assert r.exit_code == 1 and "--heatmaps" in r.output and "is a file" in r.output, r.exception
    assert not out.exists() or out.read_text() == ""


def test_series_applies_to_folders_only(tmp_path, tiny_artifacts, inputs):
    """--series picks the series in DICOM folders; a NIfTI in the same run is not failed for it."""
    import pydicom

    uid = pydicom.dcmread(next(inputs[1].glob("*.dcm")), stop_before_pixels=True).SeriesInstanceUID
    out = tmp_path / "r.jsonl"
    r = runner.invoke(app, ["predict", str(tiny_artifacts[0]), str(inputs[1]), str(inputs[3]), "--out", str(out),
                            "--series", uid[-10:], "--roi", "whole"])
    assert "0 failed" in r.output, (r.output, [line.get("message") for line in _lines(out)])


@pytest.mark.integration
def test_nothing_is_written_outside_the_named_folders(tmp_path, tiny_artifacts, inputs):
    """A separate process with its own home, working and temporary folders: after a run with heatmaps, only --out
    and --heatmaps hold files (ONNX Runtime's telemetry database under ~/.cache stays off)."""
    import os
    import subprocess
    import sys

    home, cwd, tmp, out = (tmp_path / name for name in ("home", "cwd", "tmp", "out"))
    for folder in (home, cwd, tmp):
        folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "ORT_", "SRANET_"))}
    env.update(HOME=str(home), TMPDIR=str(tmp), PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-m", "sranet.cli.main", "predict", str(tiny_artifacts[0]), str(inputs[1]),
                           "--out", str(out / "r.jsonl"), "--heatmaps", str(out / "maps"), "--threads", "1"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    written = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    assert written and all(name.startswith("out") for name in written), sorted(written)
