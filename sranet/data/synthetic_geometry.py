"""Geometry and image helpers shared by the synthetic phantoms (crops and whole pelvis studies).

Everything works on (D, H, W) float32 grids in millimetres, vectorised numpy and OpenCV; no per-voxel loops.
"""

from __future__ import annotations

import numpy as np

HU_MIN, HU_MAX = -1024.0, 3071.0
# column a = LPS direction of array axis a: axial slices, D along +z (feet to head), H along +y, W along +x
AXIAL_DIRECTION = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


class Field:
    """Coordinates of every voxel in a rotated anatomical frame, as broadcastable float32 arrays (mm).

    shape       (D, H, W) of the grid; spacing_mm its voxel spacing in array-axis order.
    center_mm   the frame's origin in array-axis millimetres (index * spacing) of this grid.
    frame       (3, 3) rows: unit superior, lateral, anterior vectors in array-axis (d, h, w) components.

    ``s``, ``l``, ``a`` are the superior, lateral and anterior coordinates relative to the centre; each is a
    full (D, H, W) array. ``dot(u)`` gives the coordinate along a direction written in that frame.
    """

    def __init__(self, shape, spacing_mm, center_mm, frame):
        axes = [(np.arange(n, dtype=np.float32) * sp - c) for n, sp, c in zip(shape, spacing_mm, center_mm, strict=True)]
        r0 = axes[0][:, None, None]
        r1 = axes[1][None, :, None]
        r2 = axes[2][None, None, :]
        # Python-float coefficients keep the arithmetic in float32 (NumPy 2 promotion rules)
        self.s, self.l, self.a = (float(f[0]) * r0 + float(f[1]) * r1 + float(f[2]) * r2 for f in frame)
        self.dist = np.sqrt(self.s * self.s + self.l * self.l + self.a * self.a)

    def dot(self, u) -> np.ndarray:
        """Coordinate along ``u`` = (superior, lateral, anterior) components (normalised here)."""
        u = np.asarray(u, dtype=np.float64)
        u = u / np.linalg.norm(u)
        return float(u[0]) * self.s + float(u[1]) * self.l + float(u[2]) * self.a


def unit(v) -> np.ndarray:
    """``v`` scaled to length 1 (float64)."""
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def random_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    """(3, 3) rotation: three rotations about the axes 0, 1, 2 in turn, each by an angle uniform in +-max_deg."""
    out = np.eye(3)
    for axis in range(3):
        t = np.deg2rad(rng.uniform(-max_deg, max_deg))
        c, s = np.cos(t), np.sin(t)
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        out = r @ out
    return out


def blur3d(vol: np.ndarray, sigma_vox: tuple[float, float, float]) -> np.ndarray:
    """Separable Gaussian blur of a (D, H, W) float32 array, sigma in voxels per axis (OpenCV, reflect border)."""
    import cv2

    out = np.ascontiguousarray(vol, dtype=np.float32)
    sd, sh, sw = sigma_vox
    if sh > 0.05 or sw > 0.05:
        ks = [2 * int(np.ceil(3 * s)) + 1 if s > 0.05 else 1 for s in (sw, sh)]
        out = np.stack([cv2.GaussianBlur(sl, (ks[0], ks[1]), sigmaX=max(sw, 1e-3), sigmaY=max(sh, 1e-3)) for sl in out])
    if sd > 0.05:
        k = cv2.getGaussianKernel(2 * int(np.ceil(3 * sd)) + 1, sd).astype(np.float32)
        flat = out.reshape(out.shape[0], -1)
        out = cv2.sepFilter2D(flat, -1, np.ones((1, 1), np.float32), k, borderType=cv2.BORDER_REFLECT).reshape(out.shape)
    return out


def smooth_noise(rng: np.random.Generator, shape, sigma_vox) -> np.ndarray:
    """Gaussian-filtered white noise, rescaled to zero mean and unit standard deviation. (D, H, W) float32."""
    field_ = blur3d(rng.standard_normal(shape, dtype=np.float32), sigma_vox)
    field_ -= field_.mean()
    field_ /= max(float(field_.std()), 1e-6)
    return field_
