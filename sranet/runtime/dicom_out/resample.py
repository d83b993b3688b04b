"""Put an attention map onto the source series' own pixel grid, cropped to where the map is.

A viewer overlays a Parametric Map on CT most reliably when every map pixel coincides with a CT pixel: same
orientation, same pixel spacing, frames at the CT slices' exact positions. Viewers that fuse by frame of reference
(3D Slicer, OHIF) then need no reslicing, and viewers that pair frames with images by position (most PACS viewers)
show it too; a map on its own plane stack (other spacing, other slice positions) would only appear in the first
kind. The crop keeps the object small (the ROI's slices and rows/columns only, not 512 x 512 x N floats).

Sampling is nearest-neighbour: the attention is constant over each patch, so nearest keeps every value exact and the
patch borders where the model put them; source pixels outside the map get 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sranet.errors import EmptyRoiError
from sranet.runtime.dicom_out.finding import AttentionMap
from sranet.runtime.dicom_out.source import SourceSeries


@dataclass(frozen=True, eq=False)
class MapOnSource:
    """An attention map sampled on a crop of the source grid.

    frames     indices into ``source.frames`` of the CT frames the map covers, in slice order.
    row0, col0 the crop's first row and column in the CT frame.
    pixels     (F, rows, columns) float32: pixel [f, r, c] is CT pixel (row0 + r, col0 + c) of ``frames[f]``.
    positions  (F, 3) LPS mm of each crop frame's first pixel (its ImagePositionPatient).
    """

    frames: tuple[int, ...]
    row0: int
    col0: int
    pixels: np.ndarray
    positions: np.ndarray


def _corners(attention: AttentionMap) -> np.ndarray:
    """(8, 3) LPS mm of the map's outer voxel corners (index -0.5 and S - 0.5 on each axis)."""
    s = attention.weights.shape
    idx = np.array([[i, j, k] for i in (-0.5, s[0] - 0.5) for j in (-0.5, s[1] - 0.5) for k in (-0.5, s[2] - 0.5)])
    return idx @ attention.affine[:3, :3].T + attention.affine[:3, 3]


def resample_to_source(attention: AttentionMap, source: SourceSeries) -> MapOnSource:
    """Sample ``attention`` (nearest voxel) at every CT pixel inside its extent. Raises EmptyRoiError when the map
    does not meet the series."""
    corners = _corners(attention)
    normal = source.normal
    along = corners @ normal
    lo, hi = float(along.min()), float(along.max())
    frames = [n for n, f in enumerate(source.frames) if lo <= float(np.asarray(f.position_mm) @ normal) <= hi]
    if not frames:
        raise EmptyRoiError("the attention map lies outside the source series' slices; it cannot be overlaid.",
                            hint="Check that the map's affine is in the series' patient coordinates (LPS mm).")
    rs, cs = source.pixel_spacing_mm
    cols, rows = [], []
    for n in frames:
        rel = corners - np.asarray(source.frames[n].position_mm)
        cols.append(rel @ source.row_dir / cs)
        rows.append(rel @ source.col_dir / rs)
    c0 = max(0, int(np.floor(np.min(cols))))
    c1 = min(source.columns - 1, int(np.ceil(np.max(cols))))
    r0 = max(0, int(np.floor(np.min(rows))))
    r1 = min(source.rows - 1, int(np.ceil(np.max(rows))))
    if c1 < c0 or r1 < r0:
        raise EmptyRoiError("the attention map lies outside the source series' field of view.",
                            hint="Check that the map's affine is in the series' patient coordinates (LPS mm).")
    rr, cc = np.meshgrid(np.arange(r0, r1 + 1), np.arange(c0, c1 + 1), indexing="ij")
    inverse = np.linalg.inv(attention.affine[:3, :3])
    shape = np.array(attention.weights.shape)
    pixels = np.zeros((len(frames), *rr.shape), dtype=np.float32)
    positions = np.zeros((len(frames), 3))
    for f, n in enumerate(frames):
        points = source.pixel_to_patient(n, rr, cc)  # (rows, cols, 3)
        idx = np.rint((points - attention.affine[:3, 3]) @ inverse.T).astype(np.int64)
        inside = np.all((idx >= 0) & (idx < shape), axis=-1)
        pixels[f][inside] = attention.weights[idx[inside, 0], idx[inside, 1], idx[inside, 2]]
        positions[f] = source.pixel_to_patient(n, np.array(r0), np.array(c0))
    return MapOnSource(tuple(frames), r0, c0, pixels, positions)
