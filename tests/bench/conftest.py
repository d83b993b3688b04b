"""Fixtures for the benchmark tests: tiny SRANet artifacts exported to ONNX with sranet metadata, run by the
package's ONNX Runtime backend on the CPU (the default device)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import write_onnx


@pytest.fixture(scope="session")
def tiny_onnx(tiny_artifacts) -> Path:
    """tiny.onnx: SRANet(tiny), seed 0 (tests/conftest.py)."""
    return tiny_artifacts[0]


@pytest.fixture(scope="session")
def tiny_onnx_b(tmp_path_factory) -> Path:
    """tiny_b.onnx: the same architecture with other weights (seed 1)."""
    return write_onnx(tmp_path_factory.mktemp("bench") / "tiny_b.onnx", seed=1)

