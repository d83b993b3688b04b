"""Slice-stack geometry: sort slices along their normal, find tilt, irregular spacing, gaps and duplicates, and plan
the regular grid the stack is stacked (or resampled) onto. Pure numpy on header values; no pixels are touched here.

Axis conventions (as ``Volume``): array axis 0 (D) runs along the slice normal ``n = row x col``, axis 1 (H) along
the DICOM column direction cosines (down the image rows), axis 2 (W) along the row direction cosines.
``PixelSpacing`` is (row spacing, column spacing) = (spacing along H, spacing along W), in mm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sranet.errors import GeometryError

POLICIES = ("resample", "strict")
# Positions closer than this along the normal are the same slice position (mm).
DUPLICATE_TOL_MM = 0.01
# Spacing differing from the median by more than this fraction is "irregular".
IRREGULAR_FRACTION = 0.05
# In-plane drift per mm along the normal above this (tan of the angle) is gantry tilt (~0.06 degrees).
TILT_TOL = 1e-3
# A gap larger than this many median spacings cannot be bridged by interpolation: it is two stacks, not one.
MAX_GAP_FACTOR = 5.0


@dataclass
class StackPlan:
    """How decoded slices become a regular (D, H, W) grid.

    order           indices of the input slices used, sorted along the normal (duplicates removed).
    out_source      (D, 3): for output slice k, (a, b, t): value = (1 - t) * slice[a] + t * slice[b], where a, b
                    index into ``order``. For a regular stack, (k, k, 0).
    shift_px        (len(order), 2): in-plane (dH, dW) pixel shift that moves each slice onto slice 0's grid.
                    Non-zero only for tilted stacks.
    spacing_mm      (sD, sH, sW); origin_mm: LPS of voxel (0, 0, 0); direction: (3, 3), column a = axis a.
    qc              flags raised (tilt_corrected, spacing_irregular, missing_slices, duplicate_positions_dropped).
    tilt_deg        gantry tilt angle in degrees (0 when none).
    """

    order: np.ndarray
    out_source: np.ndarray
    shift_px: np.ndarray
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    direction: np.ndarray
    qc: list[str] = field(default_factory=list)
    tilt_deg: float = 0.0

    @property
    def depth(self) -> int:
        return len(self.out_source)

    @property
    def resampled(self) -> bool:
        return bool(np.any(self.out_source[:, 2] != 0) or np.any(self.shift_px != 0)
                    or not np.array_equal(self.out_source[:, 0], np.arange(self.depth)))

    def inputs_for(self, d0: int, d1: int) -> np.ndarray:
        """Positions in ``order`` whose pixels are needed for output slices [d0, d1)."""
        src = self.out_source[d0:d1]
        needed = set(src[:, 0].astype(int).tolist())
        needed |= set(src[src[:, 2] > 0, 1].astype(int).tolist())
        return np.array(sorted(needed), dtype=int)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def plan_stack(
    positions_mm: np.ndarray,
    orientation: np.ndarray,
    pixel_spacing_mm: tuple[float, float],
    *,
    policy: str = "resample",
    tie_break: np.ndarray | None = None,
    slice_thickness_mm: float | None = None,
    where: str = "",
) -> StackPlan:
    """Plan the regular grid for N slices.

    positions_mm        (N, 3) ImagePositionPatient (LPS mm, centre of the first pixel) per slice.
    orientation         (6,) ImageOrientationPatient shared by all slices (callers check they agree).
    pixel_spacing_mm    (along H, along W) in mm.
    policy              "resample": tilt, irregular spacing, small gaps and duplicate positions are corrected by
                        resampling onto a regular orthogonal grid (flags in ``qc``); "strict": they raise
                        ``GeometryError``. A gap over MAX_GAP_FACTOR median spacings always raises.
    tie_break           (N,) InstanceNumber or similar; among duplicates the lowest is kept.

    Steps: sort along the normal, drop duplicate positions, then either the stack is regular (slices stacked as
    they are) or its tilt, irregular spacing and missing slices are named and, under "resample", corrected.
    """
    if policy not in POLICIES:
        from sranet.errors import InputError, suggest

        raise InputError(f"geometry policy={policy!r} is not one of {POLICIES}.{suggest(str(policy), POLICIES)}")
    where_path = where or None
    row, col, normal = _axes(orientation, where_path)
    pos = np.asarray(positions_mm, dtype=float).reshape(-1, 3)
    tb = np.zeros(len(pos)) if tie_break is None else np.asarray(tie_break, dtype=float)
    s_all = pos @ normal
    order = np.lexsort((tb, s_all))
    qc: list[str] = []
    order = _drop_duplicates(order, s_all[order], policy, qc, where_path)
    s = s_all[order]
    ps_h, ps_w = float(pixel_spacing_mm[0]), float(pixel_spacing_mm[1])
    if not (np.isfinite(ps_h) and np.isfinite(ps_w) and ps_h > 0 and ps_w > 0):
        raise GeometryError(f"PixelSpacing {[ps_h, ps_w]} is not two positive millimetre values.",
                            path=where_path, hint="The header is damaged; re-export the series.")
    pos = pos[order]
    direction = np.stack([normal, col, row], axis=1)
    n = len(order)
    if n == 1:
        dz = float(slice_thickness_mm) if slice_thickness_mm and slice_thickness_mm > 0 else 1.0
        return StackPlan(order, np.array([[0, 0, 0.0]]), np.zeros((1, 2)), (dz, ps_h, ps_w),
                         tuple(pos[0].tolist()), direction, qc)

    gaps = np.diff(s)
    median = float(np.median(gaps))
    _refuse_large_gap(s, gaps, median, where_path)
    rel = pos - pos[0]
    shift_px = np.stack([rel @ col / ps_h, rel @ row / ps_w], axis=1)
    span = float(np.linalg.norm(shift_px[-1] * (ps_h, ps_w)))
    tan_tilt = span / max(s[-1] - s[0], 1e-9)
    irregular = _irregular(s, gaps, median)
    problems = _problems(gaps, median, tan_tilt, irregular)
    if problems and policy == "strict":
        raise GeometryError(f"the slices do not form a regular grid: {'; '.join(problems)}.", path=where_path,
                            hint="Use policy='resample' to resample onto a regular grid (flagged in volume.qc).")
    if not problems:
        idx = np.arange(n)
        out_source = np.stack([idx, idx, np.zeros(n)], axis=1)
        return StackPlan(order, out_source, np.zeros((n, 2)), ((s[-1] - s[0]) / (n - 1), ps_h, ps_w),
                         tuple(pos[0].tolist()), direction, qc, 0.0)
    return _resampled(order, s, pos, (row, col, normal), (ps_h, ps_w), gaps, median, tan_tilt, irregular,
                      problems, qc)


def _axes(orientation: np.ndarray, where: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, normal) unit vectors from ImageOrientationPatient; refuses anything but two orthogonal ones."""
    iop = np.asarray(orientation, dtype=float).reshape(6)
    row, col = iop[:3], iop[3:]
    if not (np.all(np.isfinite(iop)) and np.linalg.norm(row) > 0.5 and np.linalg.norm(col) > 0.5
            and abs(np.dot(_unit(row), _unit(col))) < 1e-2):
        raise GeometryError(f"ImageOrientationPatient {iop.tolist()} is not two orthogonal unit vectors.",
                            path=where, hint="The header is damaged; re-export the series.")
    row, col = _unit(row), _unit(col)
    return row, col, np.cross(row, col)


def _drop_duplicates(order: np.ndarray, s: np.ndarray, policy: str, qc: list[str], where: str | None) -> np.ndarray:
    """``order`` without slices that share a position with the one before (the lowest tie-break is kept);
    refused under "strict". ``s``: the positions along the normal in that order."""
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = np.diff(s) > DUPLICATE_TOL_MM
    if keep.all():
        return order
    if policy == "strict":
        raise GeometryError(
            f"{int((~keep).sum())} slice(s) share a position along the slice normal with another slice (e.g. at "
            f"{s[~keep][0]:.2f} mm); the series mixes several acquisitions or phases.", path=where,
            hint="Choose one acquisition, or use policy='resample' to keep the first slice at each position.")
    qc.append("duplicate_positions_dropped")
    return order[keep]


def _refuse_large_gap(s: np.ndarray, gaps: np.ndarray, median: float, where: str | None) -> None:
    """A gap over MAX_GAP_FACTOR median spacings cannot be bridged: missing slices or two stacks."""
    if gaps.max() > MAX_GAP_FACTOR * median:
        i = int(np.argmax(gaps))
        raise GeometryError(
            f"the series has a {gaps[i]:.1f} mm gap between slices at {s[i]:.2f} mm and {s[i + 1]:.2f} mm along the "
            f"slice normal, {gaps[i] / median:.0f}x its usual {median:.2f} mm spacing: slices are missing or it is "
            "two separate stacks.", path=where,
            hint="Re-export the complete series, or load the stacks separately (e.g. split the files by position).")


def _irregular(s: np.ndarray, gaps: np.ndarray, median: float) -> np.ndarray:
    """Per gap (or, for drift, per slice): True where the spacing departs from regular."""
    irregular = np.abs(gaps - median) > IRREGULAR_FRACTION * median
    # small gap differences that add up (e.g. 1.0 and 1.04 mm mixed) would misplace far slices on a regular grid
    n = len(s)
    mean_gap = (s[-1] - s[0]) / (n - 1)
    drift = np.abs(s - (s[0] + mean_gap * np.arange(n)))
    if not irregular.any() and drift.max() > 2 * IRREGULAR_FRACTION * mean_gap:
        irregular = drift > 2 * IRREGULAR_FRACTION * mean_gap
    return irregular


def _problems(gaps: np.ndarray, median: float, tan_tilt: float, irregular: np.ndarray) -> list[str]:
    """What keeps the slices from a regular grid, in words (empty: they form one)."""
    problems = []
    if tan_tilt > TILT_TOL:
        problems.append(f"gantry tilt of {float(np.degrees(np.arctan(tan_tilt))):.2f} degrees")
    if irregular.any():
        missing = (np.abs(gaps / median - np.round(gaps / median)) < IRREGULAR_FRACTION) & (gaps > 1.5 * median)
        if missing.any():
            problems.append(f"{int(np.round(gaps[missing] / median - 1).sum())} missing slice(s)")
        problems.append(f"slice spacing from {gaps.min():.2f} to {gaps.max():.2f} mm")
    return problems


def _resampled(order, s, pos, axes, pixel_spacing, gaps, median, tan_tilt, irregular, problems, qc) -> StackPlan:
    """The plan for a tilted or irregular stack: a regular grid along the normal at the finest spacing present,
    each output slice blended from its two neighbours, tilted slices shifted in-plane onto the middle slice's grid."""
    row, col, normal = axes
    ps_h, ps_w = pixel_spacing
    n = len(order)
    origin = pos[0]
    shift_px = np.zeros((n, 2))
    if tan_tilt > TILT_TOL:
        # Put the grid on the middle slice's in-plane position, so the tilt pushes the edges out evenly.
        qc.append("tilt_corrected")
        mid = n // 2
        rel = pos - pos[mid]
        shift_px = np.stack([rel @ col / ps_h, rel @ row / ps_w], axis=1)
        origin = pos[mid] + (s[0] - s[mid]) * normal
    if irregular.any():
        qc.append("spacing_irregular")
    if any("missing" in p for p in problems):
        qc.append("missing_slices")
    # Regular grid along the normal: the finest spacing present (at least a quarter of the median, to bound size).
    dz = max(float(gaps.min()), median / 4.0)
    depth = int(np.floor((s[-1] - s[0]) / dz + 1e-6)) + 1
    z = s[0] + dz * np.arange(depth)
    b = np.clip(np.searchsorted(s, z, side="right"), 1, n - 1)
    a = b - 1
    t = np.clip((z - s[a]) / (s[b] - s[a]), 0.0, 1.0)
    out_source = np.stack([a, b, t], axis=1).astype(float)
    tilt_deg = float(np.degrees(np.arctan(tan_tilt)))
    return StackPlan(order, out_source, shift_px, (dz, ps_h, ps_w), tuple(origin.tolist()),
                     np.stack([normal, col, row], axis=1), qc, tilt_deg)


def assemble(slices: dict[int, np.ndarray], plan: StackPlan, d0: int, d1: int, pad_hu: float = -1024.0) -> np.ndarray:
    """Build output slices [d0, d1) from decoded slices (keyed by position in ``plan.order``), (H, W) float32 HU.

    Tilted slices are shifted in-plane (bilinear, OpenCV) onto the grid; an output pixel whose source lies outside
    any slice it needs gets ``pad_hu`` (never a blend of tissue and padding). Returns (d1 - d0, H, W) float32.
    """
    import cv2

    shifted: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}

    def get(i: int) -> tuple[np.ndarray, np.ndarray | None]:
        if i not in shifted:
            img, valid = slices[i], None
            dh, dw = plan.shift_px[i]
            if dh or dw:
                m = np.array([[1.0, 0.0, dw], [0.0, 1.0, dh]], dtype=np.float64)  # out(h, w) = in(h - dh, w - dw)
                size = (img.shape[1], img.shape[0])
                img = cv2.warpAffine(img, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                     borderValue=float(pad_hu))
                ones = np.ones(slices[i].shape, np.float32)
                valid = cv2.warpAffine(ones, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                       borderValue=0.0) > 0.999
            shifted[i] = (img, valid)
        return shifted[i]

    first = next(iter(slices.values()))
    out = np.empty((d1 - d0,) + first.shape, dtype=np.float32)
    for k in range(d0, d1):
        a, b, t = plan.out_source[k]
        img_a, valid = get(int(a))
        if t == 0:
            out[k - d0] = img_a
        else:
            img_b, valid_b = get(int(b))
            out[k - d0] = (1.0 - t) * img_a + t * img_b
            if valid_b is not None:
                valid = valid_b if valid is None else valid & valid_b
        if valid is not None:
            out[k - d0][~valid] = pad_hu
    return out
