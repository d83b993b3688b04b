"""From a located femoral head to what the model reads: its ROI box, and the slices one read must decode.

Torch-free. ``head_roi`` is the box the artifact's preprocessing expects (``PreprocessConfig.roi_margin_mm``), so
a model trained on automatic ROIs and a prediction on a new study crop alike. ``read_plan`` turns the heads of a
study into the part of the series to decode: each hip's voxel box and the one box (slices ``d0:d1``) that serves
both, for ``load_volume(path, roi=plan.union)``; ``localiser_slices`` says which slices the localiser itself reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sranet.config import PreprocessConfig
from sranet.runtime.localise_grid import DEFAULT_GRID_MM, axis0_samples
from sranet.runtime.roi import Box, Roi, roi_box
from sranet.runtime.volume import Volume


@dataclass(frozen=True)
class FemoralHead:
    """One femoral head. centre_mm LPS; radius_mm; confidence 0-1; qc flags; roi the box the model crops."""

    side: str
    centre_mm: tuple[float, float, float]
    radius_mm: float
    confidence: float
    qc: tuple[str, ...] = ()
    roi: Roi | None = None

    def to_dict(self) -> dict:
        return {"side": self.side, "centre_mm": [round(v, 2) for v in self.centre_mm],
                "radius_mm": round(self.radius_mm, 2), "confidence": round(self.confidence, 3), "qc": list(self.qc),
                "roi": None if self.roi is None else self.roi.text()}


def head_roi(head: FemoralHead, cfg: PreprocessConfig | None = None, *, margin_mm: float | None = None) -> Roi:
    """The ROI the artifact's preprocessing crops for ``head``: the head's bounding cube plus
    ``cfg.roi_margin_mm`` (or ``margin_mm``) on every side, in LPS millimetres, labelled with the head's side."""
    margin = margin_mm if margin_mm is not None else (cfg or PreprocessConfig()).roi_margin_mm
    half = head.radius_mm + margin
    c = np.asarray(head.centre_mm, dtype=float)
    return Roi(tuple(float(v) for v in np.round(c - half, 2)), tuple(float(v) for v in np.round(c + half, 2)), "mm",
               head.side)


def roi_truncated(roi: Roi, volume: Volume) -> bool:
    """True when the mm ROI reaches beyond the scanned volume (voxel faces of the outer voxels)."""
    corners = np.array([[x, y, z] for x in (roi.lo[0], roi.hi[0]) for y in (roi.lo[1], roi.hi[1])
                        for z in (roi.lo[2], roi.hi[2])])
    idx = volume.patient_to_index(corners)
    return bool(np.any(idx < -0.5 - 1e-6) or np.any(idx > np.asarray(volume.shape) - 0.5 + 1e-6))


@dataclass(frozen=True)
class ReadPlan:
    """What to decode for the heads of one study, in full-series voxel indices (array axes D, H, W).

    boxes   {side: ((d0, d1), (h0, h1), (w0, w1))}, the part of the series each hip's ROI covers (clipped).
    union   one voxel ``Roi`` holding every box: ``load_volume(path, roi=plan.union)`` decodes slices
            d0:d1 once for both hips; each hip's mm ROI then maps into the loaded volume by its geometry.
    """

    boxes: dict[str, Box]
    union: Roi | None

    @property
    def slices(self) -> dict[str, tuple[int, int]]:
        """{side: (d0, d1)}: the slice range (axis 0, half-open) each hip needs."""
        return {side: box[0] for side, box in self.boxes.items()}


def read_plan(heads, shape: tuple[int, int, int], affine: np.ndarray,
              cfg: PreprocessConfig | None = None) -> ReadPlan:
    """The voxel boxes of the heads' ROIs in a series of ``shape`` (D, H, W) whose voxel -> LPS map is ``affine``
    ((4, 4), ``Volume.affine`` of the full series), and their union.

    heads   {side: FemoralHead} (``Localisation.heads``) or a list of FemoralHead. A head whose ROI misses the
            series is left out. ``cfg`` gives the ROI margin (default PreprocessConfig()).
    """
    from sranet.errors import EmptyRoiError

    items = list(heads.values()) if isinstance(heads, dict) else list(heads)
    boxes: dict[str, Box] = {}
    for head in items:
        try:
            boxes[head.side] = roi_box(head_roi(head, cfg), tuple(shape), np.asarray(affine, dtype=float))
        except EmptyRoiError:
            continue
    if not boxes:
        return ReadPlan({}, None)
    lo = np.min([[b[0] for b in box] for box in boxes.values()], axis=0)
    hi = np.max([[b[1] for b in box] for box in boxes.values()], axis=0)
    return ReadPlan(boxes, Roi(tuple(float(v) for v in lo), tuple(float(v) for v in hi), "voxel"))


def localiser_slices(n_slices: int, slice_spacing_mm: float, grid_mm: float | None = None) -> np.ndarray:
    """Indices along axis 0 that ``locate_femoral_heads`` reads from a series of ``n_slices`` slices
    ``slice_spacing_mm`` apart (every k-th slice; the localiser's other reads are a few hundred voxels per head)."""
    return axis0_samples(int(n_slices), float(slice_spacing_mm), grid_mm or DEFAULT_GRID_MM)
