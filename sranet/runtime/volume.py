"""``Volume``: a CT volume in HU with the geometry that maps every voxel to patient coordinates and back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Volume:
    """A CT volume and its geometry.

    hu          (D, H, W) array of Hounsfield units (float32, or int16 where lossless). Axis 0 (D) runs along the
                slice normal, axis 1 (H) along DICOM columns direction (rows of the image), axis 2 (W) along rows.
    spacing_mm  (sD, sH, sW) voxel spacing in millimetres, in array-axis order.
    origin_mm   patient (LPS, mm) position of the centre of voxel (0, 0, 0).
    direction   (3, 3) matrix whose column a is the unit patient-space (LPS) direction of array axis a.
    meta        small, non-identifying metadata (modality, manufacturer, kernel, series description hash, ...).
                Never patient names or IDs.
    qc          quality-check flags raised while loading (e.g. "tilt_corrected", "spacing_irregular").
    source      the path it was read from (as given by the user).
    index_offset  (d, h, w) index, in the full series' grid, of this array's voxel (0, 0, 0). Non-zero only when
                ``load_volume(..., roi=...)`` decoded just the part of the series that the ROI needs; voxel ROIs
                are always written in full-series indices and are shifted by this offset (``sranet.runtime.roi``).
    """

    hu: np.ndarray
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    meta: dict[str, Any] = field(default_factory=dict)
    qc: list[str] = field(default_factory=list)
    source: str = ""
    index_offset: tuple[int, int, int] = (0, 0, 0)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.hu.shape)  # type: ignore[return-value]

    @property
    def affine(self) -> np.ndarray:
        """(4, 4) matrix mapping (d, h, w, 1) voxel indices to (x, y, z, 1) LPS millimetres."""
        a = np.eye(4)
        a[:3, :3] = np.asarray(self.direction, dtype=float) * np.asarray(self.spacing_mm, dtype=float)[None, :]
        a[:3, 3] = self.origin_mm
        return a

    def index_to_patient(self, index: np.ndarray) -> np.ndarray:
        """(..., 3) voxel indices (d, h, w), fractional allowed -> (..., 3) LPS millimetres."""
        index = np.asarray(index, dtype=float)
        a = self.affine
        return index @ a[:3, :3].T + a[:3, 3]

    def patient_to_index(self, point_mm: np.ndarray) -> np.ndarray:
        """(..., 3) LPS millimetres -> (..., 3) fractional voxel indices (d, h, w)."""
        point_mm = np.asarray(point_mm, dtype=float)
        a = self.affine
        return (point_mm - a[:3, 3]) @ np.linalg.inv(a[:3, :3]).T
