"""Shared fixtures. Test data lives in tests/data/ (real DICOM files with their licences); shared builders live in
tests/helpers.py."""

from pathlib import Path

import pytest

from tests.helpers import DATA_DIR, save_tiny


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(scope="session")
def tiny_artifacts(tmp_path_factory) -> tuple[Path, Path]:
    """(tiny.onnx, tiny.pt): SRANet(tiny), seed 0, threshold 0.5, the same weights through the exporter of
    `sranet export` and as a checkpoint (tests/helpers.py save_tiny). Shared by the session: do not modify them;
    write a changed copy (helpers.with_threshold) instead."""
    return save_tiny(tmp_path_factory.mktemp("tiny"), name="tiny")
