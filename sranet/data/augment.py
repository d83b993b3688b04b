"""Training-time augmentation of a cached volume and its bone mask, applied together so they stay aligned.

In the spirit of the reference loader: a random geometric transform, then random axis flips.

- ``crop_zoom`` (default, the reference loader's): crop a random cube of edge S / z (z uniform in ``zoom_range``)
  anywhere inside the volume and resize it back to S (trilinear for the CT, nearest for the mask). It can cut the
  edge of the femoral head, and with it a subchondral lesion, out of a crop whose label stays positive.
- ``head_crop_zoom`` (lesion-preserving): the same crop-zoom, but the cube always contains the central box of edge
  ``keep_fraction`` * S, where a crop prepared around the femoral head holds the head; z is drawn from
  ``head_zoom_range``, whose low end below 1 zooms out (the cube reaches past the volume, filled with air), and is
  capped at 1 / keep_fraction. The choice never looks at the label or the lesion, so it is the same for
  positives and negatives.
- ``affine``: rotate about a random axis by up to ``max_rotate_deg``, scale by ``scale_range`` and shift by up to
  ``max_shift_fraction`` of the edge; voxels that come from outside take the volume's minimum (air).
- flips: each axis in ``flip_axes`` (0 = D, 1 = H, 2 = W) is reversed with probability ``flip_prob``.

The bone mask goes through the same transform and flips, and the structure regulariser's patch targets are
computed from the augmented mask afterwards, so a flip moves target n with its patch. Randomness comes only from the
``numpy.random.Generator`` passed in: the same seed gives the same augmentation on any machine or worker count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sranet.config import _ConfigMixin
from sranet.errors import ConfigError, check_choice

AUGMENT_MODES = ("crop_zoom", "head_crop_zoom", "affine", "none")


@dataclass(frozen=True)
class AugmentConfig(_ConfigMixin):
    mode: str = "crop_zoom"  # "crop_zoom", "head_crop_zoom", "affine" or "none"
    zoom_range: tuple[float, float] = (1.0, 1.25)
    head_zoom_range: tuple[float, float] = (0.9, 1.2)
    keep_fraction: float = 0.8
    max_rotate_deg: float = 10.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    max_shift_fraction: float = 0.05
    flip_axes: tuple[int, ...] = (0, 1, 2)
    flip_prob: float = 0.5

    def __post_init__(self) -> None:
        check_choice("AugmentConfig.mode", self.mode, AUGMENT_MODES)
        if not 1.0 <= self.zoom_range[0] <= self.zoom_range[1]:
            raise ConfigError(f"AugmentConfig.zoom_range must be (low, high) with 1 <= low <= high, got {self.zoom_range!r}.")
        if not 0 < self.head_zoom_range[0] <= self.head_zoom_range[1]:
            raise ConfigError(f"AugmentConfig.head_zoom_range must be (low, high) with 0 < low <= high, got "
                              f"{self.head_zoom_range!r}.")
        if not 0 < self.keep_fraction <= 1:
            raise ConfigError(f"AugmentConfig.keep_fraction must be in (0, 1], got {self.keep_fraction!r}.")
        if not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ConfigError(f"AugmentConfig.scale_range must be (low, high) with 0 < low <= high, got {self.scale_range!r}.")
        if any(a not in (0, 1, 2) for a in self.flip_axes):
            raise ConfigError(f"AugmentConfig.flip_axes must be axes 0 (D), 1 (H) or 2 (W), got {self.flip_axes!r}.")
        if not 0 <= self.flip_prob <= 1:
            raise ConfigError(f"AugmentConfig.flip_prob must be in [0, 1], got {self.flip_prob!r}.")


def _rotation(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """3x3 rotation about a unit axis (Rodrigues)."""
    x, y, z = axis
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + math.sin(angle_rad) * k + (1 - math.cos(angle_rad)) * (k @ k)


def random_transform(cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray | None:
    """A (3, 4) output -> input map in normalised coordinates [-1, 1] per axis (D, H, W order), or None."""
    if cfg.mode == "crop_zoom":
        z = rng.uniform(*cfg.zoom_range)
        half = 1.0 / z  # crop half-edge in normalised units
        centre = rng.uniform(-(1 - half), 1 - half, size=3) if half < 1 else np.zeros(3)
        return np.concatenate([np.eye(3) * half, centre[:, None]], axis=1)
    if cfg.mode == "head_crop_zoom":
        z = min(rng.uniform(*cfg.head_zoom_range), 1.0 / cfg.keep_fraction)
        half = 1.0 / z  # crop half-edge; the crop [c - half, c + half] must hold [-keep, keep] on every axis
        reach = half - cfg.keep_fraction  # >= 0 by the cap on z
        if half <= 1:
            reach = min(reach, 1 - half)  # zooming in: the crop also stays inside the volume
        centre = rng.uniform(-reach, reach, size=3)
        return np.concatenate([np.eye(3) * half, centre[:, None]], axis=1)
    if cfg.mode == "affine":
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis) + 1e-12
        angle = math.radians(rng.uniform(-cfg.max_rotate_deg, cfg.max_rotate_deg))
        scale = rng.uniform(*cfg.scale_range)
        shift = rng.uniform(-2 * cfg.max_shift_fraction, 2 * cfg.max_shift_fraction, size=3)
        return np.concatenate([_rotation(axis, angle) / scale, shift[:, None]], axis=1)
    return None


def _warp(array: np.ndarray, theta_dhw: np.ndarray, mode: str, fill: float) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    # affine_grid works in (x, y, z) = (W, H, D) order: reverse rows and the first three columns
    theta = theta_dhw[::-1, :].copy()
    theta[:, :3] = theta[:, :3][:, ::-1]
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32) - fill)[None, None]  # (1, 1, D, H, W)
    grid = F.affine_grid(torch.from_numpy(theta).float()[None], list(t.shape), align_corners=False)
    out = F.grid_sample(t, grid, mode=mode, padding_mode="zeros", align_corners=False)
    return out[0, 0].numpy() + fill


def augment(volume: np.ndarray, mask: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Apply one random transform and flips to volume (S, S, S) float32 and mask (S, S, S) uint8 0/255 together.

    Returns new arrays of the same shapes and dtypes; the inputs are not modified.
    """
    if volume.shape != mask.shape or volume.ndim != 3:
        raise ConfigError(f"augment needs a 3-D volume and a mask of the same shape, got {volume.shape} and {mask.shape}.")
    theta = random_transform(cfg, rng)
    if theta is not None:
        volume = _warp(volume, theta, "bilinear", float(volume.min())).astype(np.float32)
        mask = (_warp((mask > 0).astype(np.float32), theta, "nearest", 0.0) > 0.5).astype(np.uint8) * 255
    for axis in cfg.flip_axes:
        if rng.random() < cfg.flip_prob:
            volume = np.flip(volume, axis=axis)
            mask = np.flip(mask, axis=axis)
    return np.ascontiguousarray(volume, dtype=np.float32), np.ascontiguousarray(mask, dtype=np.uint8)
