"""One case of ``prepare_cache``: its cached files written, and checked on a rerun.

``prepare_case`` reads a case and writes its network input, bone mask, lesion mask and meta file (the layout of
``sranet.data.prepare``); ``prepare_study`` does so for the auto-ROI rows of one whole study, read and located once;
``run_job`` runs one unit of work and turns a failure into a record; ``cached_row`` gives the cases.csv row of a case
a previous run finished, when its manifest row is unchanged and its files still have their recorded size and SHA-256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from sranet.config import PreprocessConfig
from sranet.data.masks import BoneMaskParams, bone_mask
from sranet.errors import SranetError, VolumeError
from sranet.runtime.files import atomic_write
from sranet.runtime.manifest import Case
from sranet.runtime.volume import Volume


def atomic_save(path: Path, array: np.ndarray) -> None:
    """``np.save`` through ``atomic_write``: a crash never leaves half an array."""
    atomic_write(path, lambda f: np.save(f, array))


def _paths(out: Path, name: str) -> dict[str, Path]:
    return {
        "volume": out / "volumes" / f"{name}.npy",
        "mask": out / "masks" / f"{name}.npy",
        "lesion": out / "lesions" / f"{name}.npy",
        "meta": out / "meta" / f"{name}.json",
    }


def _load_lesion(case: Case, shape: tuple[int, int, int]) -> np.ndarray:
    """The manifest's lesion mask, checked to be (D, H, W) == the loaded volume's shape and 0/1."""
    path = case.lesion_mask
    try:
        lesion = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise VolumeError(f"cannot read the lesion mask ({exc}).", path=path,
                          hint="Give an .npy array (D, H, W) of 0/1 on the volume's grid.") from exc
    if lesion.shape != tuple(shape):
        raise VolumeError(
            f"lesion mask has shape {lesion.shape}, but case {case.case_id!r} loads as {tuple(shape)} (D, H, W).",
            path=path, hint="The mask must be on exactly the grid load_volume returns for the case.")
    if not np.isin(np.unique(lesion), (0, 1)).all():
        raise VolumeError("lesion mask holds values other than 0 and 1.", path=path, hint="Store it as 0/1 (uint8).")
    return lesion


def prepare_case(case: Case, out_dir: Path, cfg: PreprocessConfig, mask_params: BoneMaskParams, *,
                 max_gib: float | None = None) -> dict:
    """Prepare one case into ``out_dir`` (files as in the module docstring). Returns its cases.csv row.
    ``max_gib``: the case's memory budget (``load_volume``)."""
    from sranet.runtime.io import load_volume
    from sranet.runtime.roi import parse_roi

    t0 = time.perf_counter()
    roi = parse_roi(case.roi, side=case.side) if case.roi else None
    # with a lesion mask on the whole grid, load the whole series so the mask's grid can be checked exactly; else
    # only the ROI (as inference does)
    volume = load_volume(case.path, roi=None if case.lesion_mask and not case.lesion_box else roi, max_gib=max_gib)
    return _prepare_loaded(case, volume, roi, out_dir, cfg, mask_params, t0)


def _prepare_loaded(case: Case, volume: Volume, roi, out_dir: Path, cfg: PreprocessConfig,
                    mask_params: BoneMaskParams, t0: float, *, extra_qc: tuple[str, ...] = (),
                    extra_meta: dict | None = None) -> dict:
    """Everything after the read: crop (mm ROI), preprocess, bone mask, lesion, meta. Returns the cases.csv row."""
    from sranet.runtime.preprocess import preprocess, resample

    paths = _paths(out_dir, case.name)
    lesion_full = _load_lesion(case, volume.shape) if case.lesion_mask and not case.lesion_box else None
    grid = volume
    if roi is not None and roi.units == "mm":  # as Predictor.prepare_volume: padded past the scan's edge
        from sranet.runtime.roi_crop import crop_roi

        grid, _ = crop_roi(volume, roi, cfg.pad_value_hu)
    lesion = None
    if case.lesion_mask:
        lesion = (_lesion_crop(case) if case.lesion_box else (lesion_full, volume.index_offset))
        lesion = _place(*lesion, grid.shape, grid.index_offset)
    prepared = preprocess(grid, cfg, roi=roi)
    mask = bone_mask(prepared.hu, mask_params)
    atomic_save(paths["volume"], np.ascontiguousarray(prepared.input, dtype=np.float32))
    atomic_save(paths["mask"], mask)
    if lesion is not None:
        nearest = dataclasses.replace(cfg, interpolation="nearest", pad_value_hu=0.0)
        resampled = resample(lesion.astype(np.float32), prepared.plan, nearest)
        atomic_save(paths["lesion"], (resampled > 0.5).astype(np.uint8))
    qc = list(dict.fromkeys([*grid.qc, *prepared.qc, *extra_qc]))
    files = {k: _fingerprint(paths[k]) for k in ("volume", "mask", "lesion") if k != "lesion" or lesion is not None}
    meta = {"case_id": case.case_id, "inputs": _inputs(case), "qc": qc, "shape_loaded": list(volume.shape),
            "spacing_mm": [float(s) for s in volume.spacing_mm], "lesion": lesion is not None, "files": files,
            **(extra_meta or {}), "seconds": round(time.perf_counter() - t0, 3)}
    atomic_write(paths["meta"], json.dumps(meta))
    return _row(case, out_dir, qc, lesion is not None)


def _lesion_crop(case: Case) -> tuple[np.ndarray, tuple[int, int, int]]:
    """A lesion mask given as a crop and its ``lesion_box``: (mask, full-series index of its voxel (0, 0, 0))."""
    from sranet.runtime.roi import parse_roi

    box = parse_roi(case.lesion_box)
    shape = tuple(int(h - lo) for lo, h in zip(box.lo, box.hi, strict=True))
    return _load_lesion(case, shape), tuple(int(v) for v in box.lo)


def _place(lesion: np.ndarray, offset, shape, grid_offset) -> np.ndarray:
    """``lesion`` (its voxel (0, 0, 0) at full-series index ``offset``) on a grid of ``shape`` whose voxel (0, 0, 0)
    is at ``grid_offset``: zeros wherever the mask does not reach."""
    out = np.zeros(tuple(shape), np.uint8)
    start = np.asarray(offset) - np.asarray(grid_offset)
    lo = np.clip(start, 0, shape)
    hi = np.clip(start + np.asarray(lesion.shape), 0, shape)
    if np.all(hi > lo):
        src = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start, strict=True))
        out[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = lesion[src]
    return out


def prepare_study(cases: list[Case], out_dir: Path, cfg: PreprocessConfig, mask_params: BoneMaskParams, *,
                  include_metal: bool = False,
                  max_gib: float | None = None) -> list[tuple[Case, dict | None, dict | None]]:
    """Prepare the hips of one whole study (manifest rows sharing a path, each with a side and no roi): read it
    once (``max_gib``: its memory budget), find its femoral heads, prepare each row's hip. Returns (case, row,
    failure) per case."""
    from sranet.runtime.study import choose_hips, locate_study

    t0 = time.perf_counter()
    try:
        located = locate_study(cases[0].path, preprocess=cfg, max_gib=max_gib)
    except Exception as exc:  # noqa: BLE001 - the study's every row fails with it; the run goes on
        return [(case, None, _failure(case, exc)) for case in cases]
    out = []
    for case in cases:
        choice = choose_hips(located.localisation, (case.side,), predict_metal=include_metal)[0]
        try:
            if choice.refusal is not None:
                raise choice.refusal
            head = choice.head
            meta = {"roi": {"source": "auto", "roi": head.roi.text(), "localiser": head.to_dict(),
                            "read_locate_ms": {k: round(v, 1) for k, v in located.timings_ms.items()}}}
            row = _prepare_loaded(case, located.volume, head.roi, out_dir, cfg, mask_params, t0,
                                  extra_qc=("roi_auto", *head.qc), extra_meta=meta)
            out.append((case, row, None))
        except Exception as exc:  # noqa: BLE001 - recorded against this row; the study's other hip goes on
            out.append((case, None, _failure(case, exc)))
    return out


def _failure(case: Case, exc: BaseException) -> dict:
    message = str(exc) if isinstance(exc, SranetError) else (str(exc) or repr(exc))
    return {"case_id": case.case_id, "path": str(case.path), "error": type(exc).__name__, "message": message}


def auto_roi(case: Case) -> bool:
    """A row whose ROI the localiser finds: it names a side and gives no roi."""
    return not case.roi and case.side is not None


def _inputs(case: Case) -> dict:
    """What a cached case was made from; a rerun whose manifest row changed any of it prepares the case again."""
    inputs = {"path": str(case.path), "roi": case.roi or "", "side": case.side or "",
              "lesion_mask": str(case.lesion_mask or "")}
    if case.lesion_box:
        inputs["lesion_box"] = case.lesion_box
    return inputs


def _row(case: Case, out_dir: Path, qc: list[str], has_lesion: bool) -> dict:
    rel = {k: p.relative_to(out_dir).as_posix() for k, p in _paths(out_dir, case.name).items()}
    return {"case_id": case.case_id, "label": "" if case.label is None else case.label,
            "stage": "" if case.stage is None else case.stage, "split": case.split or "",
            "volume": rel["volume"], "mask": rel["mask"], "lesion": rel["lesion"] if has_lesion else "",
            "qc": ";".join(qc)}


def _fingerprint(path: Path) -> dict:
    """{"bytes", "sha256"} of a cached file, recorded in its case's meta file and checked on every rerun."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def cached_row(case: Case, out_dir: Path) -> tuple[dict | None, bool]:
    """(the row of a case a previous run finished, or None; True when cached files exist but no longer match the
    size and SHA-256 their meta file records, so the case must be prepared again)."""
    paths = _paths(out_dir, case.name)
    if not paths["meta"].is_file():
        return None, False
    try:
        meta = json.loads(paths["meta"].read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None, True
    if not isinstance(meta, dict) or meta.get("case_id") != case.case_id or meta.get("inputs") != _inputs(case):
        return None, False  # another case, or the manifest row now points at other data / another ROI
    wanted = ("volume", "mask", "lesion") if case.lesion_mask else ("volume", "mask")
    files = meta.get("files")
    if not isinstance(files, dict) or set(files) != set(wanted):
        return None, True  # written without fingerprints, or they are damaged: nothing vouches for the files
    for key in wanted:
        path = paths[key]
        try:
            if not path.is_file() or path.stat().st_size != files[key].get("bytes") or \
                    _fingerprint(path)["sha256"] != files[key].get("sha256"):
                return None, True
        except (OSError, AttributeError):
            return None, True
    return _row(case, out_dir, list(meta.get("qc", [])), bool(case.lesion_mask)), False


def _run_one(job: tuple) -> tuple[Case, dict | None, dict | None]:
    case, out_dir, cfg, mask_params, max_gib = job
    try:
        return case, prepare_case(case, out_dir, cfg, mask_params, max_gib=max_gib), None
    except SranetError as exc:
        failure = {"error": type(exc).__name__, "message": str(exc)}
    except Exception as exc:  # noqa: BLE001 - anything else one bad case raises is recorded; the run goes on
        failure = {"error": type(exc).__name__, "message": str(exc) or repr(exc)}
    return case, None, {"case_id": case.case_id, "path": str(case.path), **failure}


def run_job(job: tuple) -> list[tuple[Case, dict | None, dict | None]]:
    """One unit of work: a case (``_run_one``), or the auto-ROI rows of one study (``prepare_study``)."""
    cases, out_dir, cfg, mask_params, include_metal, max_gib = job
    if len(cases) == 1 and not auto_roi(cases[0]):
        return [_run_one((cases[0], out_dir, cfg, mask_params, max_gib))]
    return prepare_study(cases, out_dir, cfg, mask_params, include_metal=include_metal, max_gib=max_gib)
