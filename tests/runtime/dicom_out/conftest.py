"""Fixtures for the DICOM writer tests: a phantom CT series (the project's phantom writer) and its outputs."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.runtime.dicom_out.builders import algorithm, finding_for, write_phantom


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return write_phantom(tmp_path_factory.mktemp("ct") / "series")


@pytest.fixture(scope="module")
def outputs(phantom, tmp_path_factory):
    """(paths, right finding): SR + right-hip map + overview SC for the phantom, left hip not assessed."""
    import cv2
    import numpy as np

    from sranet.runtime.dicom_out import HipFinding, read_source_series, write_dicom_outputs

    out = tmp_path_factory.mktemp("dicom_out")
    png = out.parent / "overview.png"
    picture = np.zeros((60, 90, 3), np.uint8)
    picture[10:50, 20:70] = (40, 200, 250)
    cv2.imwrite(str(png), picture)
    right = finding_for(phantom)
    left = HipFinding("L", None, None, None, qc=("no femoral head found: no bone sphere of 18-30 mm on this side",))
    paths = write_dicom_outputs(read_source_series(phantom.folder), [left, right], algorithm(), out, overview_png=png)
    return paths, right


def run_tool(name: str, *args: str) -> subprocess.CompletedProcess:
    """Run a validator from the Debian packages; skip with the reason when it is not installed."""
    exe = shutil.which(name)
    if exe is None:
        pytest.skip(f"{name} is not installed (Debian package {'dicom3tools' if name == 'dciodvfy' else 'dcmtk'}; "
                    ".ci/run installs it)")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)
