"""GPU preprocessing with CuPy: the same ResamplePlan-based resample + normalise as ``sranet.runtime.preprocess``.

The plan (which input index each output voxel samples) is computed on the CPU by ``plan_resample`` (a few
microseconds); only the voxel work runs on the GPU. The code is written against the array API that CuPy and numpy
share (``xp``), so the exact same functions run on numpy in CPU-only tests and on CuPy on a GPU.

Resampling contract (docs/CONTRACTS.md): output voxel ``o`` samples input index ``offset + scale * o`` per axis;
separable trilinear (or nearest); a sample outside the input takes ``cfg.pad_value_hu``. Then clip to
``cfg.window_hu`` and z-score (or map the window to [0, 1]).

Only the input window the plan touches is copied to the GPU (for a femoral-head crop of a 512x512x300 scan that
is a few percent of the volume), which is where most of the time would otherwise go.
"""

from __future__ import annotations

import time
from types import ModuleType

import numpy as np

from sranet.config import PreprocessConfig

STD_EPS = 1e-6  # a volume whose clipped std is below this becomes zeros (as on the CPU path)


def axis_taps(x: np.ndarray, lo: int, hi: int, interpolation: str, xp: ModuleType = np):
    """Sampling taps at input positions ``x`` (S,) on an axis whose readable box is [lo, hi).

    Same rule as the CPU sampler: x is valid in [lo - 0.5, hi - 0.5], valid positions are clamped to [lo, hi - 1]
    and interpolated (linear) or rounded (nearest); invalid ones become padding.
    Returns (i0, i1, w, valid): input indices (int64), the weight of i1 (float32; 0 for nearest) and the mask.
    """
    x = xp.asarray(x, dtype=xp.float64)
    valid = (x >= lo - 0.5) & (x <= hi - 0.5)
    xc = xp.clip(x, lo, hi - 1)
    if interpolation == "nearest":
        i0 = xp.floor(xc + 0.5).astype(xp.int64)
        return i0, i0, xp.zeros(x.shape, dtype=xp.float32), valid
    i0 = xp.floor(xc).astype(xp.int64)
    i1 = xp.minimum(i0 + 1, hi - 1)
    w = (xc - i0).astype(xp.float32)
    return i0, i1, w, valid


def _interp_axis(v, i0, i1, w, axis: int, xp: ModuleType):
    """Linear interpolation of ``v`` along ``axis`` at taps (i0, i1, w)."""
    shape = [1, 1, 1]
    shape[axis] = -1
    a = xp.take(v, i0, axis=axis)
    if i1 is i0:
        return a
    return a + (xp.take(v, i1, axis=axis) - a) * w.reshape(shape)


def input_window(taps) -> tuple[slice, ...]:
    """Smallest box of the input that the taps read, as slices (so only that box is copied to the GPU)."""
    return tuple(slice(int(i0.min()), int(i1.max()) + 1) for i0, i1, _w, _valid in taps)


def _positions(plan, axis: int) -> np.ndarray:
    return float(plan.offset[axis]) + float(plan.scale[axis]) * np.arange(int(plan.out_shape[axis]), dtype=np.float64)


def resample_xp(hu, plan, cfg: PreprocessConfig, xp: ModuleType = np, *, upload=None):
    """(D, H, W) HU (numpy) -> (S, S, S) float32 HU on ``xp`` (numpy or cupy), following ``plan``.

    ``plan`` is a ResamplePlan (out_shape, scale, offset, box). ``upload(array) -> xp array`` moves the cropped
    input window to the device (default ``xp.asarray``).
    """
    out_shape = tuple(int(s) for s in plan.out_shape)
    box = getattr(plan, "box", None) or tuple((0, n) for n in hu.shape)
    taps_np = [axis_taps(_positions(plan, a), int(box[a][0]), int(box[a][1]), cfg.interpolation) for a in range(3)]
    window = input_window(taps_np)
    v = (upload or xp.asarray)(np.ascontiguousarray(hu[window]))
    v = v.astype(xp.float32, copy=False)
    taps = []
    for (i0, i1, w, valid), sl in zip(taps_np, window, strict=True):
        j0 = xp.asarray(i0 - sl.start)
        j1 = j0 if cfg.interpolation == "nearest" else xp.asarray(i1 - sl.start)
        taps.append((j0, j1, xp.asarray(w), xp.asarray(valid)))
    # shrink the axis with the largest reduction first: less data for the next two passes
    order = sorted(range(3), key=lambda a: out_shape[a] / max(v.shape[a], 1))
    for axis in order:
        j0, j1, w, _ = taps[axis]
        v = _interp_axis(v, j0, j1, w, axis, xp)
    vd, vh, vw = (t[3] for t in taps)
    inside = vd[:, None, None] & vh[None, :, None] & vw[None, None, :]
    return xp.where(inside, v, xp.float32(cfg.pad_value_hu)).astype(xp.float32, copy=False)


def normalize_xp(hu, cfg: PreprocessConfig, xp: ModuleType = np):
    """(S, S, S) float32 HU -> network input: clip to cfg.window_hu, then z-score (or window -> [0, 1])."""
    lo, hi = (float(v) for v in cfg.window_hu)
    x = xp.clip(hu, lo, hi)
    if cfg.normalize == "window":
        return ((x - lo) / (hi - lo)).astype(xp.float32)
    x = x.astype(xp.float32, copy=False)
    mean = float(x.mean(dtype=xp.float64))
    std = float(x.std(dtype=xp.float64))
    return ((x - mean) / std).astype(xp.float32) if std > STD_EPS else xp.zeros_like(x)


def preprocess_gpu(volume, cfg: PreprocessConfig, roi=None, *, device: int = 0, keep_on_device: bool = False):
    """Same as ``sranet.runtime.preprocess.preprocess`` (-> Prepared) with resample + normalise on GPU ``device``.

    volume: Volume with ``hu`` (D, H, W). Returns Prepared with ``.input`` and ``.hu`` (S, S, S) float32 as numpy,
    or as CuPy arrays with ``keep_on_device=True`` (to feed a GPU backend without a round trip).
    ``timings_ms`` has plan, upload+resample, normalize and download stages, measured with the GPU synchronised.
    """
    from sranet.runtime import preprocess as cpu
    from sranet.runtime.cuda_buffers import import_cupy

    cp = import_cupy()
    timings: dict[str, float] = {}
    with cp.cuda.Device(device):
        t = time.perf_counter()
        plan = cpu.plan_resample(volume, cfg, roi)
        timings["plan"] = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        hu = resample_xp(np.asarray(volume.hu), plan, cfg, cp)
        cp.cuda.get_current_stream().synchronize()
        timings["resample_gpu"] = (time.perf_counter() - t) * 1e3
        qc = cpu.preprocess_qc(volume, plan, roi, hu)  # the CPU path's checks and flags, before normalising
        t = time.perf_counter()
        net_input = normalize_xp(hu, cfg, cp)
        cp.cuda.get_current_stream().synchronize()
        timings["normalize_gpu"] = (time.perf_counter() - t) * 1e3
        if not keep_on_device:
            t = time.perf_counter()
            hu, net_input = cp.asnumpy(hu), cp.asnumpy(net_input)
            timings["download"] = (time.perf_counter() - t) * 1e3
    return cpu.Prepared(net_input, hu, plan, qc, timings)


__all__ = ["axis_taps", "input_window", "normalize_xp", "preprocess_gpu", "resample_xp"]
