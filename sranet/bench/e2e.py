"""End-to-end latency for one case, each stage timed on its own with the runtime's own functions.

Stages, in order: ``load`` (``load_volume``: file read, pixel decode and HU conversion) or, for a DICOM folder
holding one series and no ROI, the loader's own steps one by one: ``scan`` (header-only read, ``scan_folder``),
``read`` (``read_dataset``), ``decode`` (``decode_pixels``), ``hu`` (``to_hu``), ``stack`` (``build_volume``
and the QC flags ``load_volume`` adds); then ``plan``
(``plan_resample``: ROI crop and resampling plan), ``resample``, ``normalize``, ``batch`` (building the contiguous
(1, 1, S, S, S) float32 input in host memory), ``infer`` (``Backend.infer``: host-to-device, inference and
device-to-host; split into ``infer.h2d``/``infer.compute``/``infer.d2h`` when the backend reports
``last_timings_ms``), and ``postprocess`` (as ``Predictor``: decision at the stored threshold, top patches mapped to source voxels and patient mm).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

STAGES = ("load", "plan", "resample", "normalize", "batch", "infer", "postprocess")
DICOM_STAGES = ("scan", "read", "decode", "hu", "stack")


def single_series_folder(case: Path) -> bool:
    """True when ``case`` is a folder whose DICOM files form exactly one usable series."""
    if not Path(case).is_dir():
        return False
    from sranet.runtime.dicom import scan_folder

    groups, _ = scan_folder(Path(case))
    return len(groups) == 1


def load_dicom_by_stage(folder: Path, t: dict[str, float]) -> Any:
    """What ``load_volume(folder)`` does for a one-series folder, timed step by step into ``t`` (ms)."""
    from sranet.runtime.dicom import scan_folder
    from sranet.runtime.dicom_decode import decode_pixels, read_dataset, to_hu
    from sranet.runtime.dicom_stack import build_volume
    from sranet.runtime.qc import qc_flags

    clock = time.perf_counter
    t0 = clock()
    groups, _ = scan_folder(folder)
    hs = next(iter(groups.values()))
    t1 = clock()
    dss = [read_dataset(h.path, header_only=False) for h in hs]
    t2 = clock()
    arrs = [decode_pixels(ds, h.path) for ds, h in zip(dss, hs, strict=True)]
    t3 = clock()
    hus = [to_hu(a, ds.get("RescaleSlope"), ds.get("RescaleIntercept"), h.path, ds.get("PixelPaddingValue"))
           for a, ds, h in zip(arrs, dss, hs, strict=True)]
    t4 = clock()
    volume = build_volume(hs, where=folder, roi=None, policy="resample", decode=lambda i: hus[i])
    volume.source = str(folder)
    volume.qc.extend(f for f in qc_flags(volume) if f not in volume.qc)
    t5 = clock()
    for name, a, b in zip(DICOM_STAGES, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5), strict=True):
        t[f"{name}_ms"] = (b - a) * 1e3
    return volume


def synthetic_case(folder: str | Path, shape: tuple[int, int, int] = (160, 256, 256),
                   spacing_mm: tuple[float, float, float] = (1.0, 0.7, 0.7)) -> tuple[Path, tuple[float, float, float]]:
    """Write a (D, H, W) int16 HU phantom (soft tissue, two femoral-head-like bone spheres) as .npy.

    Returns (path, spacing_mm); load it with ``load_volume(path, spacing_mm=spacing_mm)``."""
    D, H, W = shape
    d, h, w = np.ogrid[:D, :H, :W]
    hu = np.full(shape, -1000, dtype=np.int16)
    body = ((h - H / 2) / (0.45 * H)) ** 2 + ((w - W / 2) / (0.48 * W)) ** 2 <= 1
    hu[np.broadcast_to(body, shape)] = 40
    for cw in (0.3 * W, 0.7 * W):
        r = 0.12 * min(H, W)
        sphere = ((d - D / 2) * spacing_mm[0]) ** 2 + ((h - H / 2) * spacing_mm[1]) ** 2 + ((w - cw) * spacing_mm[2]) ** 2
        hu[sphere <= (r * spacing_mm[1]) ** 2] = 700
    path = Path(folder) / "synthetic_phantom.npy"
    np.save(path, hu)
    return path, spacing_mm


def postprocess(out: dict[str, np.ndarray], backend: Any, plan: Any, volume: Any, top_k: int = 3) -> dict[str, Any]:
    """What ``Predictor`` does after inference: decision at the artifact's threshold, the (P, P, P) attention grid,
    and the top patches' centres in source voxels and LPS mm (``sranet.runtime.predictor.top_patches``)."""
    from sranet.runtime.predictor import top_patches

    info = backend.info
    prob = float(out["prob"][0])
    P = info.model.grid
    grid = np.asarray(out["attention"][0], dtype=np.float32).reshape(P, P, P)  # (i, j, k) along (D, H, W)
    return {"prob": prob, "positive": prob >= info.threshold,
            "top": top_patches(grid, top_k, info.model.input_size, plan, volume)}


def make_case_call(backend: Any, case: Path, *, spacing_mm=None, roi=None) -> Callable[[], dict[str, float]]:
    """A call that runs the whole path for ``case`` once and returns ``{stage_ms: ...}`` per stage."""
    from sranet.runtime.io import load_volume
    from sranet.runtime.preprocess import normalize, plan_resample, resample

    cfg = backend.info.preprocess
    kwargs: dict[str, Any] = {"roi": roi}
    if spacing_mm is not None:
        kwargs["spacing_mm"] = spacing_mm

    by_stage = roi is None and single_series_folder(case)

    def call() -> dict[str, float]:
        t: dict[str, float] = {}
        clock = time.perf_counter
        t0 = clock()
        if by_stage:
            volume = load_dicom_by_stage(Path(case), t)
        else:
            volume = load_volume(case, **kwargs)  # as Predictor does: the ROI may limit which slices are decoded
        t1 = clock()
        plan = plan_resample(volume, cfg, roi=roi)
        t2 = clock()
        hu = resample(volume.hu, plan, cfg)
        t3 = clock()
        x = normalize(hu, cfg)
        t4 = clock()
        batch = np.ascontiguousarray(x[None, None], dtype=np.float32)  # (1, 1, S, S, S)
        t5 = clock()
        out = backend.infer(batch)
        t6 = clock()
        postprocess(out, backend, plan, volume)
        t7 = clock()
        for name, a, b in zip(STAGES, (t0, t1, t2, t3, t4, t5, t6), (t1, t2, t3, t4, t5, t6, t7), strict=True):
            if not (by_stage and name == "load"):
                t[f"{name}_ms"] = (b - a) * 1e3
        for key, value in (volume.meta.get("timings_ms") or {}).items():
            t[f"load.{key}_ms"] = float(value)
        for key, value in (getattr(backend, "last_timings_ms", None) or {}).items():
            t[f"infer.{key}_ms"] = float(value)
        return t

    return call


def preprocess_once(case: Path, cfg: Any, *, spacing_mm=None, roi=None) -> tuple[np.ndarray, dict[str, Any]]:
    """Load and preprocess ``case`` once: ((1, 1, S, S, S) float32 input, small description of the case)."""
    from sranet.runtime.io import load_volume
    from sranet.runtime.preprocess import normalize, plan_resample, resample

    kwargs: dict[str, Any] = {"roi": roi}
    if spacing_mm is not None:
        kwargs["spacing_mm"] = spacing_mm
    volume = load_volume(case, **kwargs)
    plan = plan_resample(volume, cfg, roi=roi)
    x = normalize(resample(volume.hu, plan, cfg), cfg)
    desc = {"shape": list(volume.shape), "spacing_mm": [round(float(s), 4) for s in volume.spacing_mm],
            "dtype": str(volume.hu.dtype), "qc": list(volume.qc)}
    return np.ascontiguousarray(x[None, None], dtype=np.float32), desc
