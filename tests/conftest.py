"""Shared fixtures. Test data lives in tests/data/ (real DICOM files with their licences)."""

from pathlib import Path

import pytest

DATA_DIR = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR
