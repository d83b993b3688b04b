"""Quality checks on a loaded volume's HU values and size. Flags are short strings that ``predict`` reports.

Flags raised here (loaders add their own: tilt_corrected, spacing_irregular, missing_slices,
duplicate_positions_dropped, files_skipped, derived_image):
  too_few_slices     fewer than MIN_SLICES slices along D (a crop of the femoral head needs a stack, not a slice).
  hu_out_of_range    more than 1 % of voxels outside the plausible CT range [-1100, 4000] HU, not counting
                     values below -1500 HU (the fill outside the scan's field of view): a wrong rescale or sign.
  metal_present      at least METAL_MIN_VOXELS voxels above METAL_HU (implants distort HU and attention).
"""

from __future__ import annotations

import numpy as np

MIN_SLICES = 16
PLAUSIBLE_HU = (-1100.0, 4000.0)
OUT_OF_RANGE_FRACTION = 0.01
FILL_HU = -1500.0
METAL_HU = 3000.0
METAL_MIN_VOXELS = 20


def qc_flags(volume, *, hu_range: tuple[float, float] | None = None) -> list[str]:
    """QC flags for ``volume.hu`` (D, H, W) HU. Subsamples large volumes (every 2nd voxel per axis) for speed.

    ``hu_range``: the volume's (min, max) HU when already known. A count that the range shows to be zero (no value
    beyond a threshold) is not made, so a typical series costs one pass for its range."""
    hu = np.asarray(volume.hu)
    flags = []
    if hu.shape[0] < MIN_SLICES:
        flags.append("too_few_slices")
    if hu.size == 0:
        return flags
    lo, hi = hu_range if hu_range is not None else (hu.min(), hu.max())  # NaN fails every test below: counted
    step = 2 if hu.size > 8_000_000 else 1
    sample = hu[::step, ::step, ::step]
    # Below FILL_HU is the scanners' fill outside the field of view (-2000, -3024, -3072 ...), not anatomy.
    n_low = 0 if lo >= PLAUSIBLE_HU[0] or hi <= FILL_HU else int(
        np.count_nonzero((sample < PLAUSIBLE_HU[0]) & (sample > FILL_HU)))
    n_high = 0 if hi <= PLAUSIBLE_HU[1] else int(np.count_nonzero(sample > PLAUSIBLE_HU[1]))
    if (n_low + n_high) > OUT_OF_RANGE_FRACTION * sample.size:
        flags.append("hu_out_of_range")
    if hi > METAL_HU and int(np.count_nonzero(hu > METAL_HU)) >= METAL_MIN_VOXELS:
        flags.append("metal_present")
    return flags
