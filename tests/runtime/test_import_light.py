"""The runtime is what gets embedded: importing it (and opening an .onnx) must not import torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

MODULES = [
    "sranet",
    "sranet.runtime",
    "sranet.runtime.backends",
    "sranet.runtime.backends.onnxruntime",
    "sranet.runtime.predictor",
    "sranet.runtime.results",
    "sranet.runtime.heatmap",
    "sranet.runtime.batch",
    "sranet.runtime.manifest",
    "sranet.runtime.sidecar",
    "sranet.runtime.devices",
    "sranet.model.flops",
    "sranet.bench.runner",
    "sranet.cli.main",
]


@pytest.mark.parametrize("module", MODULES)
def test_import_leaves_torch_unimported(module):
    code = f"import sys, {module}; heavy = [m for m in ('torch', 'tensorrt', 'onnxruntime') if m in sys.modules]; print(heavy)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"importing {module} imported {out}"


def test_sranet_help_is_light():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom sranet.cli.main import app\n"
            "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0, r.output\n"
            "assert 'predict' in r.output\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_predicting_with_an_onnx_artifact_leaves_torch_unimported(tiny_artifacts, tmp_path):
    """The whole batch path (manifest-free inputs, ONNX Runtime backend, results file) in a fresh interpreter."""
    import numpy as np

    volume = tmp_path / "v.npy"
    np.save(volume, np.full((20, 24, 24), 40, np.int16))
    code = ("import sys\nfrom sranet.runtime.batch import cases_from, predict_batch\n"
            "from sranet.runtime.predictor import Predictor\n"
            f"whole = cases_from([{str(volume)!r}], spacing_mm=(1.0, 1.0, 1.0), roi='whole')\n"
            f"study = cases_from([{str(volume)!r}], spacing_mm=(1.0, 1.0, 1.0))\n"
            f"with Predictor.from_artifact({str(tiny_artifacts[0])!r}, threads=1) as p:\n"
            f"    s = predict_batch(p, whole, {str(tmp_path / 'r.jsonl')!r})\n"
            f"    t = predict_batch(p, study, {str(tmp_path / 's.jsonl')!r}, heatmaps={str(tmp_path / 'maps')!r})\n"
            "print(s.predicted, t.refused, [m for m in ('torch', 'tensorrt') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "1 2 []"  # the crop predicted; the 'study' (no femoral head in it) located and refused
