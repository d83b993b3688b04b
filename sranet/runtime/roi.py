"""Regions of interest: a box around one femoral head, in voxel indices or patient millimetres.

Text form (CLI ``--roi``, manifest column ``roi``):
  voxels, half-open, array axis order (D, H, W):  ``"d0:d1,h0:h1,w0:w1"``   e.g. ``"40:104,120:250,60:190"``
  patient millimetres (LPS x, y, z):              ``"mm:x0:x1,y0:y1,z0:z1"`` e.g. ``"mm:-120:-40,-60:20,-900:-830"``
Voxel indices always refer to the full series' grid (``Volume.index_offset`` handles volumes loaded for a ROI).
A mm box is mapped through the volume's geometry; the voxel box is the set of voxels the mm box touches.
A box that reaches past the volume is clipped to it, and ``roi_clipped`` says so (preprocessing raises the QC flag
"roi_clipped"); a box that misses the volume is an EmptyRoiError; values beyond ``limits.ROI_LIMIT`` are refused.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from sranet.errors import EmptyRoiError, InputError
from sranet.runtime.limits import ROI_LIMIT

Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"^\s*({_NUM})\s*:\s*({_NUM})\s*$")


@dataclass(frozen=True)
class Roi:
    """A box. ``units`` is "voxel" (lo/hi are (d, h, w) indices, half-open) or "mm" (lo/hi are LPS (x, y, z))."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    units: str = "voxel"
    side: str | None = None

    def __post_init__(self) -> None:
        if self.units not in ("voxel", "mm"):
            raise InputError(f"Roi.units={self.units!r} is not 'voxel' or 'mm'.")
        if self.side not in (None, "L", "R"):
            raise InputError(f"ROI side {self.side!r} is not 'L', 'R' or empty.", hint="Use L or R (patient's side).")
        for a, (lo, hi) in enumerate(zip(self.lo, self.hi, strict=False)):
            if math.isfinite(lo) and math.isfinite(hi) and max(abs(lo), abs(hi)) > ROI_LIMIT:
                unit = "voxels" if self.units == "voxel" else "mm"
                raise InputError(f"ROI {self.text()!r} reaches {max(abs(lo), abs(hi)):g} {unit} along axis {a}; "
                                 f"values beyond {ROI_LIMIT:g} {unit} cannot be a box on a CT.",
                                 hint="Check the ROI's units (voxel indices vs mm:) and its numbers.")
            if not (math.isfinite(lo) and math.isfinite(hi)) or not hi > lo:
                raise EmptyRoiError(f"ROI {self.text()!r} is empty along axis {a}: {lo} >= {hi}.",
                                    hint="Write each range as low:high with low < high.")
        if self.units == "voxel" and any(v != int(v) for v in (*self.lo, *self.hi)):
            raise InputError(f"voxel ROI {self.text()!r} has non-integer indices.",
                             hint="Use whole voxel indices, or the 'mm:' form for millimetres.")

    def text(self) -> str:
        """The text form, as given: whole voxel indices print as integers, anything else as written (``0.5``)."""

        def fmt(v: float) -> str:
            return str(int(v)) if self.units == "voxel" and float(v).is_integer() else f"{v:g}"

        body = ",".join(f"{fmt(lo)}:{fmt(hi)}" for lo, hi in zip(self.lo, self.hi, strict=False))
        return body if self.units == "voxel" else f"mm:{body}"

    def with_side(self, side: str | None) -> Roi:
        return Roi(self.lo, self.hi, self.units, side)


def parse_roi(text: str, side: str | None = None) -> Roi:
    """Parse ``"d0:d1,h0:h1,w0:w1"`` (voxels) or ``"mm:x0:x1,y0:y1,z0:z1"`` (LPS mm). Raises InputError/EmptyRoiError."""
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"ROI {text!r} is empty.", hint="Write it as d0:d1,h0:h1,w0:w1 or mm:x0:x1,y0:y1,z0:z1.")
    body, units = text.strip(), "voxel"
    if body.lower().startswith("mm:"):
        body, units = body[3:], "mm"
    parts = body.split(",")
    ranges = [_RANGE.match(p) for p in parts]
    if len(parts) != 3 or not all(ranges):
        raise InputError(f"ROI {text!r} is not three low:high ranges.",
                         hint="Write it as d0:d1,h0:h1,w0:w1 (voxels) or mm:x0:x1,y0:y1,z0:z1 (LPS millimetres).")
    lo = tuple(float(m.group(1)) for m in ranges)
    hi = tuple(float(m.group(2)) for m in ranges)
    side = side.strip().upper() or None if isinstance(side, str) else side
    return Roi(lo, hi, units, side)  # type: ignore[arg-type]


def _unclipped(roi: Roi, affine: np.ndarray, index_offset) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) voxel indices of the array, half-open, that ``roi`` covers before clipping to the array."""
    if roi.units == "voxel":
        lo = np.array(roi.lo) - index_offset
        hi = np.array(roi.hi) - index_offset
    else:
        corners = np.array([[x, y, z] for x in (roi.lo[0], roi.hi[0]) for y in (roi.lo[1], roi.hi[1])
                            for z in (roi.lo[2], roi.hi[2])])
        idx = (corners - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
        fmin, fmax = idx.min(axis=0), idx.max(axis=0)
        # voxel i spans [i - 0.5, i + 0.5]; keep every voxel the box touches (rounded to 1e-6 against float noise)
        lo = np.floor(np.round(fmin + 0.5, 6))
        hi = np.ceil(np.round(fmax + 0.5, 6))
    return lo, hi


def roi_box(roi: Roi, shape: tuple[int, int, int], affine: np.ndarray,
            index_offset: tuple[int, int, int] = (0, 0, 0)) -> Box:
    """The integer voxel box ((d0, d1), (h0, h1), (w0, w1)), half-open, of an array of ``shape`` that ``roi`` covers
    (clipped to the array: ``roi_clipped`` says whether it had to be).

    affine          (4, 4) voxel (d, h, w) -> LPS mm of the array (``Volume.affine``).
    index_offset    full-series index of the array's voxel (0, 0, 0); voxel ROIs are shifted by it.
    Raises EmptyRoiError when the box misses the array.
    """
    lo, hi = _unclipped(roi, affine, index_offset)
    lo = np.clip(lo, 0, shape).astype(int)
    hi = np.clip(hi, 0, shape).astype(int)
    if np.any(hi <= lo):
        raise EmptyRoiError(
            f"ROI {roi.text()!r} does not overlap the volume of shape {tuple(int(s) for s in shape)} (D, H, W)"
            + (f" whose voxel (0, 0, 0) is at full-series index {tuple(index_offset)}" if any(index_offset) else "")
            + ".", hint="Check the ROI's units (voxel vs mm:) and axis order (D, H, W for voxels, LPS x, y, z for mm).")
    return tuple((int(a), int(b)) for a, b in zip(lo, hi, strict=False))  # type: ignore[return-value]


def roi_clipped(roi: Roi, shape: tuple[int, int, int], affine: np.ndarray,
                index_offset: tuple[int, int, int] = (0, 0, 0)) -> bool:
    """True when ``roi`` reaches past an array of ``shape`` (so ``roi_box`` cut it to the array)."""
    lo, hi = _unclipped(roi, affine, index_offset)
    return bool(np.any(lo < 0) or np.any(hi > np.asarray(shape)))


def volume_roi_box(volume, roi: Roi | None) -> Box:
    """``roi_box`` for a ``Volume``; the whole array when ``roi`` is None."""
    if roi is None:
        return tuple((0, int(n)) for n in volume.shape)  # type: ignore[return-value]
    return roi_box(roi, volume.shape, volume.affine, volume.index_offset)
