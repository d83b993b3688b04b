"""Cutting a ROI in millimetres out of a volume in memory, padded where it reaches past the scan. Torch-free.

Both an automatic ROI (the femoral head's cube plus the artifact's margin) and one a user gives in millimetres are
cut out this way before preprocessing, at prediction (``Predictor.prepare_volume``) and at preparation
(``sranet.data.prepare``) alike: the crop always spans the ROI's full extent, so a head cut by the scan's edge
keeps its place and scale in the network input, the part outside the scan is padding (``PreprocessConfig.pad_value_hu``),
and the crop is flagged ``roi_truncated``. For a ROI inside the scan the crop is exactly what
``load_volume(path, roi=roi)`` returns, so ``preprocess`` gives the same network input either way.
"""

from __future__ import annotations

import numpy as np

from sranet.errors import EmptyRoiError, InputError
from sranet.runtime.roi import Roi
from sranet.runtime.volume import Volume

# QC flags ``sranet.runtime.qc.qc_flags`` derives from a volume's values: recomputed on the crop, so metal in one
# hip is not reported on the other
VALUE_FLAGS = ("too_few_slices", "hu_out_of_range", "metal_present")


def crop_roi(volume: Volume, roi: Roi, pad_hu: float) -> tuple[Volume, bool]:
    """The voxels of ``volume`` that the mm ``roi`` touches, as their own Volume (a float32 copy), and whether the
    ROI reaches past the scan; there the crop is padded with ``pad_hu`` and flagged ``roi_truncated``.

    ``index_offset`` is in full-series indices (negative where the crop starts outside the scan). QC: the
    volume's flags from loading, and the value flags (``VALUE_FLAGS``) recomputed on the part inside the scan.
    Raises EmptyRoiError when the ROI misses the volume, InputError for a ROI in voxels.
    """
    from sranet.runtime.qc import qc_flags

    if roi.units != "mm":
        raise InputError(f"crop_roi takes a ROI in millimetres, got {roi.text()!r}.")
    corners = np.array([[x, y, z] for x in (roi.lo[0], roi.hi[0]) for y in (roi.lo[1], roi.hi[1])
                        for z in (roi.lo[2], roi.hi[2])])
    idx = volume.patient_to_index(corners)
    # the voxels the box touches (as sranet.runtime.roi.roi_box does), not clipped to the scan
    lo = np.floor(np.round(idx.min(axis=0) + 0.5, 6)).astype(int)
    hi = np.ceil(np.round(idx.max(axis=0) + 0.5, 6)).astype(int)
    shape = np.asarray(volume.shape)
    clo, chi = np.clip(lo, 0, shape), np.clip(hi, 0, shape)
    if np.any(chi <= clo):
        raise EmptyRoiError(
            f"ROI {roi.text()!r} does not overlap the volume of shape {tuple(int(n) for n in shape)} (D, H, W).",
            path=volume.source or None,
            hint="Check the ROI's units and axis order (LPS x, y, z in millimetres for 'mm:').")
    inside = volume.hu[clo[0]:chi[0], clo[1]:chi[1], clo[2]:chi[2]]
    truncated = bool(np.any(lo < 0) or np.any(hi > shape))
    if truncated:
        hu = np.full(tuple(int(n) for n in hi - lo), pad_hu, np.float32)
        a, b = clo - lo, chi - lo
        hu[a[0]:b[0], a[1]:b[1], a[2]:b[2]] = inside
    else:
        hu = np.array(inside, dtype=np.float32, order="C", copy=True)
    qc = [f for f in volume.qc if f not in VALUE_FLAGS] + qc_flags(Volume(inside, volume.spacing_mm))
    if truncated:
        qc.append("roi_truncated")
    crop = Volume(hu=hu, spacing_mm=tuple(volume.spacing_mm),
                  origin_mm=tuple(float(v) for v in volume.index_to_patient(lo.astype(float))),
                  direction=np.asarray(volume.direction, dtype=float), meta=dict(volume.meta),
                  qc=list(dict.fromkeys(qc)), source=volume.source,
                  index_offset=tuple(int(v) for v in np.asarray(volume.index_offset) + lo))
    return crop, truncated


__all__ = ["VALUE_FLAGS", "crop_roi"]
