"""Coarse bone masks for the structure regulariser (paper section II.D), made with OpenCV from HU.

``bone_mask(hu)`` takes the *resampled* HU of a prepared volume ((S, S, S), ``Prepared.hu``) and, slice by slice
along axis 0:

1. maps the bone window [window_hu[0], window_hu[1]] = [-200, 1300] HU linearly to uint8 0..255, so fat/air are 0,
   soft tissue ~40, trabecular bone ~90-110 and cortex ~230+;
2. ``cv2.adaptiveThreshold`` (Gaussian-weighted mean over ``block_size`` = 15 voxels, offset ``c`` = 20 grey
   levels, about 120 HU): a voxel is kept unless it is clearly darker than its neighbourhood, which drops the soft
   tissue hugging a bright cortex while keeping textured trabecular interiors whole (c = 2 left them full of holes);
3. ANDs it with a global floor ``hu >= floor_hu`` (150 HU): muscle (~50), fluid and fat never count as bone, and air
   (uniform, so "as bright as its neighbourhood") is removed;
4. ``cv2.erode`` with a 3x3 cross, ``erode_iter`` = 1, removes isolated noisy voxels;
5. ``cv2.dilate`` with a 3x3 square, ``dilate_iter`` = 2, closes cysts and gaps and makes the mask coarse.

The result is stored as uint8 0/255 (like the paper). ``patch_targets(mask, grid, min_fraction)`` turns it into the
per-patch targets f_i of the regulariser, patch n = grid*grid*i + grid*j + k for grid position (i, j, k).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from sranet.errors import InputError
from sranet.runtime.patches import patch_blocks


@dataclass(frozen=True)
class BoneMaskParams:
    """Parameters of ``bone_mask`` (stored in the cache's cache.json). HU values, sizes in voxels."""

    window_hu: tuple[float, float] = (-200.0, 1300.0)
    block_size: int = 15
    c: float = 20.0
    floor_hu: float = 150.0
    erode_iter: int = 1
    dilate_iter: int = 2

    def __post_init__(self) -> None:
        if self.block_size < 3 or self.block_size % 2 == 0:
            raise InputError(f"BoneMaskParams.block_size={self.block_size} must be an odd number >= 3.")
        if not self.window_hu[0] < self.window_hu[1]:
            raise InputError(f"BoneMaskParams.window_hu={self.window_hu} must be (low, high) with low < high.")
        if self.erode_iter < 0 or self.dilate_iter < 0:
            raise InputError("BoneMaskParams erode_iter and dilate_iter must be >= 0.")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def bone_mask(hu: np.ndarray, params: BoneMaskParams = BoneMaskParams()) -> np.ndarray:
    """(D, H, W) HU (float) -> (D, H, W) uint8 coarse bone mask, 0 or 255. See the module docstring."""
    import cv2

    hu = np.asarray(hu)
    if hu.ndim != 3 or min(hu.shape) < 1:
        raise InputError(f"bone_mask needs a (D, H, W) HU volume, got shape {hu.shape}.")
    lo, hi = params.window_hu
    u8 = np.clip((hu.astype(np.float32) - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    floor = hu >= params.floor_hu
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    square = np.ones((3, 3), np.uint8)
    out = np.empty(hu.shape, dtype=np.uint8)
    for d in range(hu.shape[0]):
        m = cv2.adaptiveThreshold(
            u8[d], 255, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY, params.block_size, params.c
        )
        m[~floor[d]] = 0
        if params.erode_iter:
            m = cv2.erode(m, cross, iterations=params.erode_iter)
        if params.dilate_iter:
            m = cv2.dilate(m, square, iterations=params.dilate_iter)
        out[d] = m
    return out


def patch_targets(mask: np.ndarray, grid: int, min_fraction: float = 0.0) -> np.ndarray:
    """(S, S, S) mask (0/255, 0/1 or bool) -> (grid**3,) float32 targets f_n in {0, 1}.

    f_n = 1 when the fraction of nonzero voxels in patch n exceeds 0 (min_fraction = 0: "contains bone") or reaches
    ``min_fraction`` (> 0). Patch n = grid*grid*i + grid*j + k covers voxels [i*p:(i+1)*p, j*p:..., k*p:...], p = S/grid.
    """
    if not 0.0 <= min_fraction <= 1.0:
        raise InputError(f"min_fraction={min_fraction} must be in [0, 1].")
    frac = patch_blocks(np.asarray(mask) != 0, grid).mean(axis=(3, 4, 5))  # (grid, grid, grid) as (i, j, k)
    hit = frac > 0 if min_fraction == 0 else frac >= min_fraction
    return hit.astype(np.float32).reshape(-1)
