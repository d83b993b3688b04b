"""The localiser's cheap view of a study: a downsampled copy, sphere voting on it, and HU sampling in patient space.

Torch-free (numpy + OpenCV). Everything geometric goes through the volume's affine, so any orientation, any
spacing and flipped or permuted axes give the same answer in patient (LPS) millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sranet.runtime.volume import Volume

DEFAULT_GRID_MM = 4.0  # voxel size of the downsampled copy the sphere votes are counted on


@dataclass
class WorkGrid:
    """A downsampled copy of a volume. ``hu`` (d, h, w) float32; ``affine`` maps its indices to LPS mm."""

    hu: np.ndarray
    affine: np.ndarray

    @property
    def spacing_mm(self) -> np.ndarray:
        return np.linalg.norm(self.affine[:3, :3], axis=0)


def axis0_samples(n: int, spacing_mm: float, grid_mm: float) -> np.ndarray:
    """Indices along array axis 0 (the slice axis of a DICOM series) that the localiser reads: every k-th slice,
    k = round(grid_mm / spacing_mm) (at least 1), starting in the middle of the first block."""
    k = max(1, int(round(grid_mm / spacing_mm)))
    return np.arange(k // 2, n, k) if n > k // 2 else np.array([0])


def downsample(volume: Volume, grid_mm: float) -> WorkGrid:
    """Every k0-th slice along axis 0, block means of k1 x k2 pixels in-plane (OpenCV area resampling), so each
    working voxel is about ``grid_mm`` across. The copy is small (a 512 x 512 x 300 series becomes about
    100 x 170 x 170 at 3 mm): the only pass over the full-resolution pixels is reading the chosen slices."""
    import cv2

    sd, sh, sw = (float(s) for s in volume.spacing_mm)
    d_idx = axis0_samples(volume.shape[0], sd, grid_mm)
    k1 = max(1, int(round(grid_mm / sh)))
    k2 = max(1, int(round(grid_mm / sw)))
    h_out, w_out = max(1, volume.shape[1] // k1), max(1, volume.shape[2] // k2)
    out = np.empty((len(d_idx), h_out, w_out), np.float32)
    for j, d in enumerate(d_idx):
        sl = volume.hu[d, : h_out * k1, : w_out * k2]
        sl = sl if sl.dtype == np.float32 else sl.astype(np.float32)
        out[j] = cv2.resize(sl, (w_out, h_out), interpolation=cv2.INTER_AREA) if (k1, k2) != (1, 1) else sl
    # working index j along an axis covers source indices [j*k, (j+1)*k): its centre is j*k + (k-1)/2
    scale = np.diag([float(d_idx[1] - d_idx[0]) if len(d_idx) > 1 else 1.0, k1, k2, 1.0])
    scale[:3, 3] = [float(d_idx[0]), (k1 - 1) / 2.0, (k2 - 1) / 2.0]
    return WorkGrid(out, volume.affine @ scale)


def sphere_votes(grid: WorkGrid, radii_mm: np.ndarray, edge_hu_per_mm: float, clip_hu=(0.0, 400.0)) -> np.ndarray:
    """Hough accumulator for bright spheres: every strong bone edge votes for the points ``radii_mm`` inside it,
    along its gradient. Returns the (d, h, w) float32 vote count, smoothed over one voxel.

    HU are clipped to ``clip_hu`` first, so only bone-to-soft-tissue edges are strong (fat, air and gas sit at the
    floor; metal at the ceiling looks like bone)."""
    import cv2

    v = np.clip(grid.hu, *clip_hu)
    sp = grid.spacing_mm.astype(np.float32)
    g = [np.zeros_like(v) for _ in range(3)]  # central differences, HU per mm (0 on the border)
    g[0][1:-1] = (v[2:] - v[:-2]) * (0.5 / sp[0])
    g[1][:, 1:-1] = (v[:, 2:] - v[:, :-2]) * (0.5 / sp[1])
    g[2][:, :, 1:-1] = (v[:, :, 2:] - v[:, :, :-2]) * (0.5 / sp[2])
    mag2 = g[0] * g[0] + g[1] * g[1] + g[2] * g[2]
    flat_edges = np.flatnonzero(mag2 > edge_hu_per_mm**2)
    radii = np.asarray(radii_mm, dtype=np.float32)
    pad = np.ceil(radii.max() / sp).astype(int) + 1  # votes land in a padded grid: no bounds checks
    padded = np.array(v.shape) + 2 * pad
    acc = np.zeros(int(np.prod(padded)), np.float32)
    if flat_edges.size:
        pos = np.stack(np.unravel_index(flat_edges, v.shape), axis=1).astype(np.float32) + pad
        inv = 1.0 / np.sqrt(mag2.reshape(-1)[flat_edges])
        unit = np.stack([g[a].reshape(-1)[flat_edges] * inv for a in range(3)], axis=1)  # (N, 3) towards brighter
        c = np.rint(pos[None] + unit[None] * (radii[:, None, None] / sp[None, None, :])).astype(np.int64)
        flat = (c[..., 0] * padded[1] + c[..., 1]) * padded[2] + c[..., 2]
        acc = np.bincount(flat.reshape(-1), minlength=acc.size).astype(np.float32)
    acc = acc.reshape(padded)[pad[0]:pad[0] + v.shape[0], pad[1]:pad[1] + v.shape[1], pad[2]:pad[2] + v.shape[2]]
    acc = np.ascontiguousarray(acc)
    acc = acc.reshape(v.shape)
    smooth = cv2.blur(acc.reshape(v.shape[0], -1).reshape(-1, v.shape[2]), (3, 1)).reshape(v.shape)  # along w
    smooth = cv2.blur(np.ascontiguousarray(smooth.transpose(0, 2, 1)).reshape(-1, v.shape[1]), (3, 1))
    smooth = np.ascontiguousarray(smooth.reshape(v.shape[0], v.shape[2], v.shape[1]).transpose(0, 2, 1))  # along h
    out = smooth.copy()
    out[1:] += smooth[:-1]
    out[:-1] += smooth[1:]
    return out


def local_maxima(acc: np.ndarray, spacing_mm: np.ndarray, count: int, min_votes: float,
                 min_separation_mm: float) -> list[tuple[np.ndarray, float]]:
    """Up to ``count`` (index (3,), votes) peaks of ``acc``, strongest first, at least ``min_separation_mm`` apart."""
    import cv2

    kernel = np.ones((3, 3), np.uint8)
    dil = np.stack([cv2.dilate(s, kernel) for s in acc])
    peak = dil.copy()
    peak[1:] = np.maximum(peak[1:], dil[:-1])
    peak[:-1] = np.maximum(peak[:-1], dil[1:])
    idx = np.nonzero((acc >= peak) & (acc >= min_votes))
    order = np.argsort(acc[idx])[::-1]
    out: list[tuple[np.ndarray, float]] = []
    taken = np.zeros((0, 3))
    for i in order:
        p = np.array([idx[0][i], idx[1][i], idx[2][i]], dtype=float)
        if len(taken) and np.min(np.linalg.norm((taken - p) * spacing_mm, axis=1)) < min_separation_mm:
            continue
        taken = np.vstack([taken, p])
        out.append((_subvoxel(acc, p), float(acc[tuple(p.astype(int))])))
        if len(out) == count:
            break
    return out


def _subvoxel(acc: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Parabolic refinement of a peak along each axis."""
    q = p.copy()
    for a in range(3):
        i = int(p[a])
        if 0 < i < acc.shape[a] - 1:
            lo, mid, hi = (float(acc[tuple(int(p[b]) if b != a else i + o for b in range(3))]) for o in (-1, 0, 1))
            den = lo - 2 * mid + hi
            if den < 0:
                q[a] = i + float(np.clip(0.5 * (lo - hi) / den, -0.5, 0.5))
    return q


def sample_hu(volume: Volume, points_mm: np.ndarray) -> np.ndarray:
    """Trilinear HU at LPS points ``(..., 3)``; NaN outside the volume (beyond its outer voxel centres + 0.5)."""
    pts = np.asarray(points_mm, dtype=np.float64).reshape(-1, 3)
    a = volume.affine
    idx = (pts - a[:3, 3]) @ np.linalg.inv(a[:3, :3]).T
    shape = np.array(volume.shape)
    inside = np.all((idx >= -0.5) & (idx <= shape - 0.5), axis=1)
    idx = np.clip(idx, 0, shape - 1)
    i0 = np.clip(np.floor(idx).astype(np.int64), 0, np.maximum(shape - 2, 0))
    t = (idx - i0).astype(np.float32)
    hu = volume.hu
    flat = hu.reshape(-1) if hu.flags.c_contiguous else None
    step = np.array([shape[1] * shape[2], shape[2], 1]) * (shape > 1)  # a single-voxel axis has no neighbour
    base = i0 @ np.array([shape[1] * shape[2], shape[2], 1])
    out = np.zeros(len(idx), np.float32)
    for corner in range(8):
        off = np.array([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1])
        w = np.ones(len(idx), np.float32)
        for ax in range(3):
            w *= t[:, ax] if off[ax] else 1.0 - t[:, ax]
        if flat is not None:
            vals = flat[base + int(off @ step)]
        else:
            ii = np.minimum(i0 + off * (shape > 1), shape - 1)
            vals = hu[ii[:, 0], ii[:, 1], ii[:, 2]]
        out += w * vals.astype(np.float32, copy=False)
    out[~inside] = np.nan
    return out.reshape(np.shape(points_mm)[:-1])


def sample_grid(grid: WorkGrid, points_mm: np.ndarray) -> np.ndarray:
    """Nearest-voxel HU of the working grid at LPS points (N, 3); NaN outside it."""
    a = grid.affine
    idx = np.rint((np.asarray(points_mm, dtype=np.float64) - a[:3, 3]) @ np.linalg.inv(a[:3, :3]).T).astype(np.int64)
    shape = np.array(grid.hu.shape)
    inside = np.all((idx >= 0) & (idx < shape), axis=1)
    out = np.full(len(idx), np.nan, np.float32)
    ii = idx[inside]
    out[inside] = grid.hu[ii[:, 0], ii[:, 1], ii[:, 2]]
    return out


def fibonacci_directions(n: int) -> np.ndarray:
    """(n, 3) unit vectors spread evenly over the sphere."""
    i = np.arange(n) + 0.5
    phi = np.arccos(1.0 - 2.0 * i / n)
    theta = np.pi * (1.0 + 5.0**0.5) * i
    return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], axis=1)
