"""`sranet serve`: its help says how to wire it to Orthanc; bad options get one clear error line; the node and the
DICOM writers stay torch-free."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from sranet.cli.main import app


def test_help_explains_orthanc_wiring():
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for words in ("DicomModalities", "/modalities/sranet/store", "--spool", "--dest", "--processor", "--idle"):
        assert words in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--dest", "ORTHANC-127.0.0.1"], "is not AE_TITLE@host:port"),
    (["--processor", "no_colon"], "is not 'module:function'"),
    (["--processor", "tests.node.processors:missing"], "has no 'missing'"),
    (["--ae-title", "A" * 17], "1-16 printable ASCII"),
])
def test_bad_options_are_one_error_line(tmp_path, args, message):
    base = {"--spool": str(tmp_path / "spool"), "--dest": "ORTHANC@127.0.0.1:4242",
            "--processor": "tests.node.processors:fixed_finding", "--port": "0"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = ["serve", *[x for kv in base.items() for x in kv]]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and message in result.output


@pytest.mark.parametrize("module", ["sranet.runtime.node", "sranet.runtime.dicom_out", "sranet.cli.serve"])
def test_node_and_writers_leave_torch_unimported(module):
    code = f"import sys, {module}; print([m for m in ('torch', 'onnxruntime') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
