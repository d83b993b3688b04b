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
