"""Processing functions for the node tests: real ones (they read the received series with the runtime and write an
SR and a Parametric Map with ``sranet.runtime.dicom_out``), with a fixed finding instead of a model."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from sranet.runtime.node import StudyResult

SHA = "cd" * 32


def fixed_finding(folder: Path) -> StudyResult:
    """Read the one CT series in ``folder`` (the runtime's loader: several series or a gap raise), put a fixed
    right-hip finding at the volume's centre and return its SR and attention map."""
    from sranet.runtime.dicom_out import (
        AlgorithmInfo,
        AttentionMap,
        HipFinding,
        build_dicom_outputs,
        read_source_series,
    )
    from sranet.runtime.io import load_volume

    volume = load_volume(folder, policy="strict")
    source = read_source_series(folder)
    centre = volume.index_to_patient((np.array(volume.shape) - 1) / 2)
    affine = np.eye(4)
    affine[:3, :3] = volume.direction * 2.0  # an 8^3 map of 2 mm voxels along the volume's axes
    affine[:3, 3] = centre - volume.direction @ np.full(3, 7.0)
    weights = np.full((8, 8, 8), 0.5 / 511, np.float32)
    weights[4, 4, 4] = 0.5
    roi = tuple((float(c) - 8.0, float(c) + 8.0) for c in centre)
    finding = HipFinding("R", 0.75, 0.5, True, roi_mm=roi, attention=AttentionMap(weights, affine))
    outputs = build_dicom_outputs(source, [finding], AlgorithmInfo(SHA, "fixed.onnx"))
    return StudyResult([o.dataset for o in outputs], {"slices": int(volume.shape[0]), "hips": 1, "decision": True})


def slow_finding(folder: Path) -> StudyResult:
    """``fixed_finding`` after a pause, with a marker file saying that processing began (for kill tests).

    SRANET_TEST_MARKER   file to append "start <round folder>" to when called.
    SRANET_TEST_DELAY_S  seconds to wait first (default 5).
    """
    marker = os.environ.get("SRANET_TEST_MARKER")
    if marker:
        with open(marker, "a") as f:
            f.write(json.dumps({"start": folder.parent.name}) + "\n")
    time.sleep(float(os.environ.get("SRANET_TEST_DELAY_S", "5")))
    return fixed_finding(folder)
