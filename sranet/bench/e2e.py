"""End-to-end latency for one case, each stage timed on its own with the runtime's own functions.

Three paths, as ``sranet predict`` takes them (``roi``):

- a whole study (no ROI, the default): the study is read once, its femoral heads found, and every hip found is
  predicted, all hips in one backend call (as ``sranet.runtime.study``);
- a ROI (``"d0:d1,..."`` / ``"mm:..."``): the ROI-limited read, then that crop;
- ``"whole"``: the whole volume is the crop.

Stages, in order: ``load`` (``load_volume``: file read, pixel decode and HU conversion) or, for a DICOM folder
holding one series read whole, the loader's own steps one by one: ``scan`` (header-only read, ``scan_folder``),
``read`` (``read_dataset``), ``decode`` (``decode_pixels``), ``hu`` (``to_hu``), ``stack`` (``build_volume``
and the QC flags ``load_volume`` adds); for a whole study ``locate`` (``locate_femoral_heads``) and ``crop``
(each hip cut out of the study, ``crop_roi``); then ``plan`` (``plan_resample``: ROI box and resampling plan),
``resample``, ``normalize`` (summed over the hips), ``batch`` (building the contiguous (B, 1, S, S, S) float32
input in host memory, B = 1 or the hips found), ``infer`` (``Backend.infer``: host-to-device, inference and
device-to-host; split into ``infer.h2d``/``infer.compute``/``infer.d2h`` when the backend reports
``last_timings_ms``), and ``postprocess`` (as ``Predictor``: decision at the stored threshold, top patches mapped to
source voxels and patient mm).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

STAGES = ("load", "plan", "resample", "normalize", "batch", "infer", "postprocess")
STUDY_STAGES = ("load", "locate", "crop", "plan", "resample", "normalize", "batch", "infer", "postprocess")
DICOM_STAGES = ("scan", "read", "decode", "hu", "stack")
WHOLE = "whole"  # roi=WHOLE: the whole volume is the crop (no localisation)


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
                   seed: int = 5) -> tuple[Path, None]:
    """Write a whole-pelvis phantom study (``sranet.data.synthetic_pelvis``, head first supine, both hips in view)
    of ``shape`` (D, H, W; H = W = 256 or 512) as int16 .npy with a JSON geometry sidecar. Its slices are
    240 / D mm apart (1-3 mm), so the scan covers the pelvis. Returns (path, None): the sidecar holds the spacing.
    """
    import json

    from sranet.data.synthetic_pelvis import generate_pelvis_study
    from sranet.errors import InputError

    D, H, W = (int(n) for n in shape)
    if H != W or str(H) not in ("256", "512") or D < 1:
        raise InputError(f"synthetic shape {tuple(shape)}: the pelvis phantom is D x 256 x 256 or D x 512 x 512.")
    study = generate_pelvis_study(seed, preset=str(H), patient_position="HFS", slices=D,
                                  slice_mm=float(np.clip(240.0 / D, 1.0, 3.0)))
    path = Path(folder) / "synthetic_pelvis.npy"
    np.save(path, study.hu.astype(np.int16))
    path.with_suffix(".json").write_text(json.dumps({
        "spacing_mm": [float(v) for v in study.spacing_mm], "origin_mm": [float(v) for v in study.origin_mm],
        "direction": np.asarray(study.direction, dtype=float).tolist()}))
    return path, None


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
    """A call that runs the whole path for ``case`` once and returns ``{stage_ms: ...}`` per stage. ``roi``: None
    (a whole study: locate, then every hip found), ``WHOLE`` or a parsed Roi."""
    if roi is None:
        return _study_call(backend, case, spacing_mm=spacing_mm)
    if roi == WHOLE:
        roi = None
    from sranet.runtime.io import load_volume
    from sranet.runtime.preprocess import normalize, plan_resample, resample
    from sranet.runtime.roi_crop import crop_roi

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
        if roi is not None and roi.units == "mm":  # as Predictor.prepare_volume
            volume = crop_roi(volume, roi, cfg.pad_value_hu)[0]
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


def _load(case: Path, t: dict[str, float], spacing_mm=None, by_stage: bool = False) -> Any:
    """The whole series, by loader step into ``t`` for a one-series DICOM folder, else as one ``load`` stage."""
    from sranet.runtime.io import load_volume

    t0 = time.perf_counter()
    if by_stage:
        return load_dicom_by_stage(Path(case), t)
    volume = load_volume(case, **({} if spacing_mm is None else {"spacing_mm": spacing_mm}))
    t["load_ms"] = (time.perf_counter() - t0) * 1e3
    return volume


def _study_call(backend: Any, case: Path, *, spacing_mm=None) -> Callable[[], dict[str, float]]:
    """The whole-study path (``sranet.runtime.study``): read once, locate, crop each hip, one batch of the hips."""
    from sranet.runtime.localise import locate_femoral_heads
    from sranet.runtime.preprocess import normalize, plan_resample, resample
    from sranet.runtime.roi_crop import crop_roi

    cfg = backend.info.preprocess
    by_stage = single_series_folder(case)
    chunk = backend.max_batch or 2

    def call() -> dict[str, float]:
        t: dict[str, float] = {}
        clock = time.perf_counter
        volume = _load(case, t, spacing_mm, by_stage)
        t0 = clock()
        heads = locate_femoral_heads(volume, preprocess=cfg).heads
        t1 = clock()
        crops = [crop_roi(volume, h.roi, cfg.pad_value_hu)[0] for h in heads.values()]
        t2 = clock()
        plans = [plan_resample(c, cfg, roi=h.roi) for c, h in zip(crops, heads.values(), strict=True)]
        t3 = clock()
        hus = [resample(c.hu, p, cfg) for c, p in zip(crops, plans, strict=True)]
        t4 = clock()
        xs = [normalize(hu, cfg) for hu in hus]
        t5 = clock()
        batch = np.ascontiguousarray(np.stack(xs)[:, None], dtype=np.float32)  # (hips, 1, S, S, S)
        t6 = clock()
        outs = [backend.infer(batch[i:i + chunk]) for i in range(0, len(batch), chunk)]
        t7 = clock()
        n = 0
        for out in outs:
            for i in range(len(out["prob"])):
                postprocess({k: v[i:i + 1] for k, v in out.items()}, backend, plans[n], crops[n])
                n += 1
        t8 = clock()
        stops = (t0, t1, t2, t3, t4, t5, t6, t7, t8)
        for name, a, b in zip(STUDY_STAGES[1:], stops[:-1], stops[1:], strict=True):
            t[f"{name}_ms"] = (b - a) * 1e3
        for key, value in (getattr(backend, "last_timings_ms", None) or {}).items():
            t[f"infer.{key}_ms"] = float(value)
        return t

    return call


def preprocess_once(case: Path, cfg: Any, *, spacing_mm=None, roi=None) -> tuple[np.ndarray, dict[str, Any]]:
    """Load and preprocess ``case`` once: ((1, 1, S, S, S) float32 input, small description of the case). ``roi``
    None: a whole study, the first hip found (InputError when the localiser finds none); ``WHOLE``: the volume."""
    from sranet.runtime.io import load_volume
    from sranet.runtime.preprocess import normalize, plan_resample, resample

    kwargs: dict[str, Any] = {"roi": None if roi in (None, WHOLE) else roi}
    if spacing_mm is not None:
        kwargs["spacing_mm"] = spacing_mm
    volume = load_volume(case, **kwargs)
    desc = {"shape": list(volume.shape), "spacing_mm": [round(float(s), 4) for s in volume.spacing_mm],
            "dtype": str(volume.hu.dtype), "qc": list(volume.qc)}
    crop = volume
    if roi is None:
        from sranet.errors import InputError
        from sranet.runtime.localise import locate_femoral_heads
        from sranet.runtime.roi_crop import crop_roi

        loc = locate_femoral_heads(volume, preprocess=cfg)
        if not loc.heads:
            raise InputError(f"no femoral head found in {case} ({loc.reasons.get('L', '')}); the end-to-end run "
                             "times a whole study through to its hips.",
                             hint="Give --roi (a box around the head) or --roi whole (the volume is the crop).")
        desc["roi_source"] = "auto"
        desc["heads"] = {side: h.to_dict() for side, h in loc.heads.items()}
        roi = next(iter(loc.heads.values())).roi
        crop, _ = crop_roi(volume, roi, cfg.pad_value_hu)
    else:
        desc["roi_source"] = "whole" if roi == WHOLE else "manual"
        roi = None if roi == WHOLE else roi
        if roi is not None and roi.units == "mm":
            from sranet.runtime.roi_crop import crop_roi

            crop, _ = crop_roi(volume, roi, cfg.pad_value_hu)
    plan = plan_resample(crop, cfg, roi=roi)
    x = normalize(resample(crop.hu, plan, cfg), cfg)
    return np.ascontiguousarray(x[None, None], dtype=np.float32), desc
