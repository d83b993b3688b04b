"""The patch grid: how a prepared (S, S, S) volume is cut into P x P x P patches, in one place.

Patch n = P*P*i + P*j + k covers voxels [i*p:(i+1)*p, j*p:(j+1)*p, k*p:(k+1)*p] of the (D, H, W) volume, p = S/P.
The model cuts its input this way (``sranet.model.sranet.patchify``), the attention weights come out in this order,
and the regulariser's targets, the lesion overlap and the patch centres reported by the predictor follow it.
"""

from __future__ import annotations

import numpy as np

from sranet.errors import InputError


def patch_blocks(volume: np.ndarray, grid: int) -> np.ndarray:
    """(S, S, S) array -> (P, P, P, p, p, p) view: [i, j, k] is patch n = P*P*i + P*j + k, p = S/P."""
    volume = np.asarray(volume)
    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise InputError(f"the patch grid needs a cubic (S, S, S) volume, got shape {volume.shape}.")
    if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or grid < 1 or volume.shape[0] % grid:
        raise InputError(f"volume edge {volume.shape[0]} is not divisible into a {grid}^3 patch grid; use a grid "
                         "that divides it.")
    p = volume.shape[0] // grid
    return volume.reshape(grid, p, grid, p, grid, p).transpose(0, 2, 4, 1, 3, 5)


def patch_centres(grid: int, input_size: int) -> np.ndarray:
    """(P**3, 3) centre of each patch in prepared-volume voxel indices (d, h, w); row n is patch n = P*P*i+P*j+k."""
    p = input_size / grid
    idx = np.stack(np.meshgrid(*[np.arange(grid)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    return idx * p + (p - 1) / 2.0


__all__ = ["patch_blocks", "patch_centres"]
