"""Stacking CT slices into a ``Volume``: the step a series folder, a single slice and an enhanced multi-frame object
share. The slices' headers are already read and checked for being CT images; here their geometry is checked and
planned (``dicom_geometry.plan_stack``) and only the pixels the ROI needs are decoded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sranet.errors import GeometryError
from sranet.runtime.dicom_decode import SliceHeader, decode_slice_hu
from sranet.runtime.dicom_geometry import assemble, plan_stack
from sranet.runtime.limits import check_volume_bytes
from sranet.runtime.roi import Roi, roi_box
from sranet.runtime.volume import Volume


def check_consistent(hs: list[SliceHeader], where: Path) -> None:
    """Same size, orientation and pixel spacing for every slice; else GeometryError naming two that differ."""
    first = hs[0]
    for h in hs[1:]:
        if (h.rows, h.columns) != (first.rows, first.columns):
            raise GeometryError(f"slices differ in size: {first.path.name} is {first.rows}x{first.columns}, "
                                f"{h.path.name} is {h.rows}x{h.columns}.", path=where,
                                hint="The folder mixes series; choose one with series=.")
        if not np.allclose(h.orientation, first.orientation, atol=1e-3):
            raise GeometryError(f"inconsistent orientation: {first.path.name} has ImageOrientationPatient "
                                f"{list(first.orientation)}, {h.path.name} has {list(h.orientation)}.", path=where,
                                hint="The series mixes planes (e.g. a reformat); choose one series or re-export.")
        if not np.allclose(h.pixel_spacing, first.pixel_spacing, rtol=1e-3):
            raise GeometryError(f"slices differ in PixelSpacing ({list(first.pixel_spacing)} vs "
                                f"{list(h.pixel_spacing)} in {h.path.name}).", path=where)


def build_volume(hs: list[SliceHeader], *, where: Path, roi: Roi | None, policy: str, decode=None,
                 extra_meta: dict | None = None, qc: list[str] | None = None, max_gib: float | None = None) -> Volume:
    """Stack single-frame slices (headers already checked) into a Volume, decoding only what ``roi`` needs.

    decode      callable(index into ``hs``) -> (H, W) float32 HU; default decodes the slice's file.
    max_gib     memory budget (``sranet.runtime.limits``): the output box plus, for a resampled stack, the decoded
                slices it is blended from; checked before any pixel is decoded.
    """
    check_consistent(hs, where)
    decode = decode or (lambda i: decode_slice_hu(hs[i]))
    plan = plan_stack(np.array([h.position for h in hs]), np.array(hs[0].orientation), hs[0].pixel_spacing,
                      policy=policy, tie_break=np.array([h.instance for h in hs]),
                      slice_thickness_mm=hs[0].slice_thickness, where=str(where))
    shape = (plan.depth, hs[0].rows, hs[0].columns)
    affine = np.eye(4)
    affine[:3, :3] = plan.direction * np.asarray(plan.spacing_mm)[None, :]
    affine[:3, 3] = plan.origin_mm
    box = roi_box(roi, shape, affine) if roi is not None else tuple((0, n) for n in shape)
    (d0, d1), (h0, h1), (w0, w1) = box
    needed = plan.inputs_for(d0, d1)
    held = 0 if not plan.resampled else 4 * len(needed) * (
        hs[0].rows * hs[0].columns if np.any(plan.shift_px) else (h1 - h0) * (w1 - w0))
    check_volume_bytes((d1 - d0, h1 - h0, w1 - w0), max_gib, path=where, extra_bytes=held,
                       what="the box to read" if roi is not None else "the series")
    if not plan.resampled:  # a regular stack: decode each slice straight into the output (one copy in memory)
        hu = np.empty((d1 - d0, h1 - h0, w1 - w0), np.float32)
        for k in range(d0, d1):
            hu[k - d0] = decode(int(plan.order[k]))[h0:h1, w0:w1]
    elif np.any(plan.shift_px):  # tilted: shift whole slices first, crop after
        slices = {int(i): decode(int(plan.order[i])) for i in needed}
        hu = assemble(slices, plan, d0, d1)[:, h0:h1, w0:w1]
    else:  # keep only the ROI's part of each slice as soon as it is decoded
        slices = {int(i): decode(int(plan.order[i]))[h0:h1, w0:w1].copy() for i in needed}
        hu = assemble(slices, plan, d0, d1)
    offset = (d0, h0, w0)
    origin = affine[:3, :3] @ np.asarray(offset, dtype=float) + affine[:3, 3]
    meta = {
        "format": "dicom",
        "modality": "CT",
        "series_uid_suffix": hs[0].series_uid[-8:],
        "series_number": hs[0].series_number,
        "n_files": len(hs),
        "decoded_slices": len(needed),
        "tilt_deg": round(plan.tilt_deg, 3),
        "transfer_syntax": sorted({h.transfer_syntax for h in hs}),
        "full_shape": list(shape),
        "slice_thickness_mm": hs[0].slice_thickness,
        **hs[0].scanner,
        **(extra_meta or {}),
    }
    return Volume(hu=np.ascontiguousarray(hu), spacing_mm=tuple(float(s) for s in plan.spacing_mm),
                  origin_mm=tuple(float(v) for v in origin), direction=plan.direction, meta=meta,
                  qc=list(qc or []) + plan.qc, source=str(where), index_offset=offset)


__all__ = ["build_volume", "check_consistent"]
