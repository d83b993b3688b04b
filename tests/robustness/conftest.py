"""The robustness suite's shared inputs, and its summary line at the end of the test session."""

from __future__ import annotations

import pytest

from tests.robustness.harness import SUMMARY, summary_line
from tests.robustness.inputs import make_base


@pytest.fixture(scope="session")
def base(tmp_path_factory, tiny_artifacts):
    """Good inputs (DICOM series, NIfTI, .npy), the tiny artifacts, two Ed25519 key pairs and signed copies."""
    pytest.importorskip("cryptography")
    onnx, pt = tiny_artifacts
    return make_base(tmp_path_factory.mktemp("robustness_base"), onnx, pt)


def pytest_terminal_summary(terminalreporter):
    if SUMMARY:
        terminalreporter.write_sep("-", "robustness summary")
        terminalreporter.write_line(summary_line())
