"""Volume -> network input: crop to the ROI box, resample to (S, S, S), window and normalise. Torch-free, numpy.

The geometry is a ``ResamplePlan`` (per axis: output voxel o samples input index ``offset + scale * o``) applied
by a separable sampler, so a GPU port (CuPy) runs the same plan. Choices, all recorded in ``PreprocessConfig``:

- Aspect: with ``keep_aspect`` the ROI box's largest physical extent spans the S output voxels and the box is
  centred in the cube; the other axes are padded with ``pad_value_hu`` (voxels are isotropic and anatomy is
  never stretched). Samples outside the ROI box are padding, never neighbouring anatomy, so a ROI-limited load
  (``load_volume(..., roi=)``) and a full load give identical input.
- Orientation (``canonical``): each output axis is flipped, where needed, to point along the positive LPS axis
  nearest to it (D -> superior for axial scans, H -> posterior, W -> patient left), so a series stored with rows
  running posterior to anterior reaches the network the same way up as any other. Axes are never permuted.
- Sampling position x is valid in [lo - 0.5, hi - 0.5] of the box (the outer faces of its edge voxels); valid
  positions are clamped to [lo, hi - 1] and interpolated (linear) or rounded (nearest); others get the pad value.

What the model is never given (``preprocess_qc``, shared with the GPU path): a volume whose geometry is not finite
(GeometryError) or an input with a NaN or infinite sample (CorruptPixelDataError: non-finite voxels are refused,
never replaced). QC flags raised here: ``few_slices_in_roi`` (fewer than 8 slices in the box), ``roi_clipped`` (the
ROI reaches past the volume and was cut to it) and ``uniform_input`` (the box read holds one value only: no anatomy
for the model to see, e.g. all air or all zeros).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from sranet.config import PreprocessConfig
from sranet.errors import CorruptPixelDataError, GeometryError
from sranet.runtime.roi import Box, Roi, roi_clipped, volume_roi_box
from sranet.runtime.volume import Volume

FEW_SLICES_IN_ROI = 8


@dataclass(frozen=True)
class ResamplePlan:
    """Where each output voxel samples the input array ``volume.hu`` (indices local to that array).

    out_shape   (S, S, S).
    scale       (3,) input voxels per output voxel, per axis (negative where the axis is flipped).
    offset      (3,) input index of output voxel 0, per axis (fractional).
    box         ((d0, d1), (h0, h1), (w0, w1)) half-open voxel box of ``volume.hu`` that may be read; samples
                outside it get the pad value.
    """

    out_shape: tuple[int, int, int]
    scale: np.ndarray
    offset: np.ndarray
    box: Box

    @property
    def output_to_input(self) -> np.ndarray:
        """(4, 4) affine: output index (d, h, w, 1) -> input index of ``volume.hu``."""
        a = np.diag([*np.asarray(self.scale, dtype=float), 1.0])
        a[:3, 3] = self.offset
        return a

    def output_to_patient(self, volume: Volume) -> np.ndarray:
        """(4, 4) affine: output index (d, h, w, 1) -> LPS millimetres."""
        return volume.affine @ self.output_to_input

    def sample_positions(self, axis: int) -> np.ndarray:
        """(S,) fractional input indices sampled along ``axis``."""
        return self.offset[axis] + self.scale[axis] * np.arange(self.out_shape[axis], dtype=np.float64)


@dataclass
class Prepared:
    """Network-ready input and how it was made. ``input``/``hu``: (S, S, S) float32."""

    input: np.ndarray
    hu: np.ndarray
    plan: ResamplePlan
    qc: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)


def plan_resample(volume: Volume, cfg: PreprocessConfig, roi: Roi | None = None) -> ResamplePlan:
    """Plan the resampling of ``volume`` (hu (D, H, W), spacing mm) inside ``roi`` (None: whole volume) to (S, S, S).

    Raises EmptyRoiError when the ROI misses the volume, GeometryError when its geometry is not finite.
    """
    check_geometry(volume)
    box = volume_roi_box(volume, roi)
    lo = np.array([b[0] for b in box], dtype=float)
    hi = np.array([b[1] for b in box], dtype=float)
    spacing = np.asarray(volume.spacing_mm, dtype=float)
    s = cfg.output_size
    extent_mm = (hi - lo) * spacing
    out_voxel_mm = np.full(3, extent_mm.max() / s) if cfg.keep_aspect else extent_mm / s
    scale = out_voxel_mm / spacing
    centre = (lo + hi - 1.0) / 2.0
    if cfg.canonical:
        direction = np.asarray(volume.direction, dtype=float)
        nearest = np.argmax(np.abs(direction), axis=0)
        flip = direction[nearest, np.arange(3)] < 0
        scale = np.where(flip, -scale, scale)
    offset = centre - scale * (s - 1) / 2.0
    return ResamplePlan((s, s, s), scale, offset, box)


def _axis_pass(arr: np.ndarray, axis: int, x: np.ndarray, lo: int, hi: int, linear: bool, pad: float) -> np.ndarray:
    """Resample ``arr`` along one axis at positions ``x`` (input indices), float32 out."""
    valid = (x >= lo - 0.5) & (x <= hi - 0.5)
    xc = np.clip(x, lo, hi - 1)
    shape = [1, 1, 1]
    shape[axis] = len(x)
    if linear:
        i0 = np.floor(xc).astype(np.intp)
        i1 = np.minimum(i0 + 1, hi - 1)
        t = (xc - i0).astype(np.float32).reshape(shape)
        a = np.take(arr, i0, axis=axis).astype(np.float32, copy=False)
        b = np.take(arr, i1, axis=axis).astype(np.float32, copy=False)
        out = a + (b - a) * t
    else:
        out = np.take(arr, np.floor(xc + 0.5).astype(np.intp), axis=axis).astype(np.float32)
    if not valid.all():
        index = [slice(None)] * 3
        index[axis] = ~valid
        out[tuple(index)] = pad
    return out


def resample(hu: np.ndarray, plan: ResamplePlan, cfg: PreprocessConfig) -> np.ndarray:
    """(D, H, W) HU -> (S, S, S) float32 HU by the separable sampler (trilinear or nearest, per cfg.interpolation).

    The axis that shrinks the data most is done first, so a 512x512x300 series costs about one pass over the box.
    """
    linear = cfg.interpolation == "linear"
    pad = float(cfg.pad_value_hu)
    (d0, d1), (h0, h1), (w0, w1) = plan.box
    arr = hu[d0:d1, h0:h1, w0:w1]
    lo = (d0, h0, w0)
    ratios = [plan.out_shape[a] / max(arr.shape[a], 1) for a in range(3)]
    for axis in np.argsort(ratios, kind="stable"):
        axis = int(axis)
        x = plan.sample_positions(axis) - lo[axis]
        arr = _axis_pass(arr, axis, x, 0, arr.shape[axis], linear, pad)
    return np.ascontiguousarray(arr, dtype=np.float32)


def normalize(hu_resampled: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """(S, S, S) HU -> (S, S, S) float32 network input: clip to cfg.window_hu, then z-score (per volume, over all
    voxels including padding; a constant volume becomes zeros) or a linear map of the window to [0, 1]."""
    low, high = cfg.window_hu
    if not np.isfinite(hu_resampled).all():  # np.clip keeps NaN, and one NaN makes the z-score all NaN
        raise CorruptPixelDataError("the resampled input holds NaN or infinite values; the model is never given them.",
                                    hint="Check the volume for non-finite voxels inside the ROI.")
    x = np.clip(hu_resampled.astype(np.float32, copy=False), low, high)
    if cfg.normalize == "window":
        return ((x - low) / (high - low)).astype(np.float32)
    mean = float(x.mean(dtype=np.float64))
    std = float(x.std(dtype=np.float64))
    return ((x - mean) / std).astype(np.float32) if std > 1e-6 else np.zeros_like(x)


def preprocess(volume: Volume, cfg: PreprocessConfig, roi: Roi | None = None) -> Prepared:
    """Volume (hu (D, H, W) HU, spacing mm) -> ``Prepared`` (.input (S, S, S) float32, .hu, .plan, .qc, .timings_ms)."""
    t0 = time.perf_counter()
    plan = plan_resample(volume, cfg, roi)
    t1 = time.perf_counter()
    hu = resample(volume.hu, plan, cfg)
    t2 = time.perf_counter()
    qc = preprocess_qc(volume, plan, roi, hu)
    x = normalize(hu, cfg)
    t3 = time.perf_counter()
    return Prepared(x, hu, plan, qc, {"plan": (t1 - t0) * 1e3, "resample": (t2 - t1) * 1e3,
                                      "normalize": (t3 - t2) * 1e3})


def check_geometry(volume: Volume) -> None:
    """Spacing positive and finite, origin finite, direction a finite rotation: else GeometryError (a NaN origin would
    put NaN millimetres into every result)."""
    spacing = np.asarray(volume.spacing_mm, dtype=float)
    origin = np.asarray(volume.origin_mm, dtype=float)
    direction = np.asarray(volume.direction, dtype=float)
    problems = []
    if spacing.shape != (3,) or not (np.all(np.isfinite(spacing)) and np.all(spacing > 0)):
        problems.append(f"spacing_mm {spacing.tolist()} is not three positive numbers")
    if origin.shape != (3,) or not np.all(np.isfinite(origin)):
        problems.append(f"origin_mm {origin.tolist()} is not three finite numbers")
    if direction.shape != (3, 3) or not np.all(np.isfinite(direction)) or not np.allclose(
            direction.T @ direction, np.eye(3), atol=1e-3):
        problems.append("direction is not a (3, 3) rotation")
    if problems:
        raise GeometryError(f"the volume's geometry is unusable: {'; '.join(problems)}.", path=volume.source or None,
                            hint="Fix the header (affine, ImagePositionPatient, sidecar) that gave this geometry.")


def preprocess_qc(volume: Volume, plan: ResamplePlan, roi: Roi | None, hu_resampled) -> list[str]:
    """The volume's QC flags plus those of this preparation (module docstring); raises CorruptPixelDataError when the
    resampled HU (numpy or CuPy, (S, S, S)) hold a non-finite value."""
    low, high = _scalar(hu_resampled.min()), _scalar(hu_resampled.max())  # NaN propagates through min and max
    if not (np.isfinite(low) and np.isfinite(high)):
        raise CorruptPixelDataError(
            "the volume has NaN or infinite voxels inside the ROI; the model is never given them.",
            path=volume.source or None, hint="Fill missing voxels with air (-1000 HU) before saving, or fix the rescale.")
    qc = list(volume.qc)
    if plan.box[0][1] - plan.box[0][0] < FEW_SLICES_IN_ROI:
        qc.append("few_slices_in_roi")
    if roi is not None and roi_clipped(roi, volume.shape, volume.affine, volume.index_offset):
        qc.append("roi_clipped")
    (d0, d1), (h0, h1), (w0, w1) = plan.box
    box = np.asarray(volume.hu[d0:d1, h0:h1, w0:w1])  # the voxels sampled, without the padding around them
    if float(box.max()) - float(box.min()) <= 1e-3:
        qc.append("uniform_input")
    return list(dict.fromkeys(qc))


def _scalar(value) -> float:
    """A 0-d numpy or CuPy value as a Python float (one device-to-host copy for CuPy)."""
    return float(value.item() if hasattr(value, "item") else value)
