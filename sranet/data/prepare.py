"""``prepare_cache``: manifest -> prepared cache (docs/CONTRACTS.md) with the same preprocessing code as inference.

Per case: ``sranet.runtime.io.load_volume`` -> ``sranet.runtime.preprocess.preprocess`` (crop ROI, resample to
S^3, normalise) -> bone mask from the resampled HU (``sranet.data.masks``) -> lesion mask resampled with nearest
neighbour through the same ``ResamplePlan``. A ROI in millimetres is cut out as prediction cuts it
(``sranet.runtime.roi_crop``: padded where it reaches past the scan).

Automatic ROIs: a manifest row with a ``side`` and no ``roi`` is a hip of a whole study. The study is read once for
all its rows, its femoral heads found (``sranet.runtime.study.locate_study``, the ROI margin of the cache's
``PreprocessConfig``), and each row's hip cropped as ``sranet predict`` crops it; the row's ``qc`` in cases.csv
gets ``roi_auto`` (plus the localiser's flags) and its meta file the ROI and the head found. A side without a
femoral head, or with metal near it (unless ``include_metal``), is a failure with the localiser's reason. A row
with neither ``roi`` nor ``side`` is a crop: the whole volume is used.

A lesion mask is either on the loaded volume's whole grid, or a crop placed by the row's ``lesion_box`` (its voxel
box in the full series; ``sranet synth --anatomy pelvis`` writes these). Layout:

```
CACHE/cache.json          {"preprocess": {...}, "mask": {...}, "grid": 4}
CACHE/cases.csv           case_id,label,stage,split,volume,mask,lesion,qc   (paths relative to CACHE)
CACHE/volumes/<case>.npy  float32 (S,S,S) network input
CACHE/masks/<case>.npy    uint8 (S,S,S) 0/255 bone mask
CACHE/lesions/<case>.npy  uint8 (S,S,S) 0/1 (only where the manifest has a lesion mask)
CACHE/meta/<case>.json    qc flags, source, timings, each file's size and SHA-256; written last, it marks the case done
CACHE/failures.jsonl      one line per case that failed in the latest run: case_id, path, error type, message
```
Every file is written to a temporary name and renamed, so an interrupted run leaves no half-written array; a rerun
skips cases whose meta file exists, whose manifest row (path, roi, side, lesion mask) is unchanged and whose cached
files still have the size and SHA-256 recorded in the meta file (a truncated or edited one is prepared again and
counted in ``PrepareResult.rebuilt``). A failing case is recorded and the run goes on; a case whose volume cannot be
vouched for (non-finite voxels, unknown spacing, ...) is never cached. ``<case>`` is the sanitised id (the rule
``sranet predict`` keys follow too: ``sranet.runtime.results.safe_name``).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sranet.config import ModelConfig, PreprocessConfig
from sranet.data.masks import BoneMaskParams, bone_mask
from sranet.errors import InputError, SranetError, VolumeError
from sranet.runtime.files import atomic_write
from sranet.runtime.limits import check_threads, volume_budget_gib
from sranet.runtime.manifest import Case, read_manifest
from sranet.runtime.volume import Volume

CASE_COLUMNS = ("case_id", "label", "stage", "split", "volume", "mask", "lesion", "qc")


@dataclass
class PrepareResult:
    """What a ``prepare_cache`` run did. ``failures``: dicts with case_id, path, error, message. ``rebuilt``: cases
    prepared again because their cached files no longer matched their recorded size and SHA-256 (also in ``done``)."""

    out_dir: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    auto_roi: list[str] = field(default_factory=list)  # cases (done or cached) whose ROI the localiser found

    @property
    def ok(self) -> bool:
        return not self.failures


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


def _cached_row(case: Case, out_dir: Path) -> tuple[dict | None, bool]:
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


def _run_job(job: tuple) -> list[tuple[Case, dict | None, dict | None]]:
    """One unit of work: a case (``_run_one``), or the auto-ROI rows of one study (``prepare_study``)."""
    cases, out_dir, cfg, mask_params, include_metal, max_gib = job
    if len(cases) == 1 and not auto_roi(cases[0]):
        return [_run_one((cases[0], out_dir, cfg, mask_params, max_gib))]
    return prepare_study(cases, out_dir, cfg, mask_params, include_metal=include_metal, max_gib=max_gib)


def _jobs(todo: list[Case], out: Path, cfg: PreprocessConfig, mask_params: BoneMaskParams,
          include_metal: bool, max_gib: float | None) -> list[tuple]:
    """The work in manifest order: one job per case, except that the auto-ROI rows of one study share a job (the
    study is read and located once)."""
    groups: dict[tuple, list[Case]] = {}
    for case in todo:
        key = ("study", str(case.path)) if auto_roi(case) else ("case", case.case_id)
        groups.setdefault(key, []).append(case)
    return [(cases, out, cfg, mask_params, include_metal, max_gib) for cases in groups.values()]


def _check_cache_json(out: Path, description: dict) -> None:
    path = out / "cache.json"
    if path.is_file():
        try:
            existing = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            existing = None
        if existing != description:
            raise InputError(
                f"{out} already holds a cache made with other settings ({path}).",
                hint="Use a new --out folder, or delete the old cache to rebuild it with these settings.")
    atomic_write(path, json.dumps(description, indent=1, sort_keys=True))


def prepare_cache(
    manifest_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    preprocess_config: PreprocessConfig,
    *,
    grid: int = ModelConfig().grid,
    mask_params: BoneMaskParams | None = None,
    workers: int = 1,
    progress: bool = False,
    include_metal: bool = False,
    max_gib: float | None = None,
) -> PrepareResult:
    """Prepare every case of a manifest into ``out_dir``; skip cases already cached; record failures and go on.

    preprocess_config  the artifact-to-be's preprocessing (output_size must equal the model's input_size).
    grid               patches per axis of the model (stored in cache.json for the regulariser targets).
    include_metal      rows with automatic ROIs: prepare a hip with metal near its head too (flagged
                       ``metal_near_head``) instead of failing it.
    workers            processes (at most ``sranet.runtime.limits.max_threads()``).
    max_gib            memory budget per case (``load_volume``; None: its default).
    Raises ManifestError / InputError before any case is touched; per-case errors end up in failures.jsonl.
    """
    check_threads(workers, "--workers", hint="Pass --workers N with N >= 1 (the number of CPUs is usually best).")
    max_gib = volume_budget_gib(max_gib) if max_gib is not None else None
    if grid < 1 or preprocess_config.output_size % grid:
        raise InputError(f"output size {preprocess_config.output_size} is not divisible into a {grid}^3 patch grid.")
    t0 = time.perf_counter()
    mask_params = mask_params or BoneMaskParams()
    cases = read_manifest(manifest_path, require_labels=True)
    out = _open_cache(Path(out_dir), {"preprocess": preprocess_config.to_dict(), "mask": mask_params.to_dict(),
                                      "grid": grid})
    result = PrepareResult(out)
    rows: dict[str, dict] = {}
    todo = _cases_to_prepare(cases, out, result, rows)
    jobs = _jobs(todo, out, preprocess_config, mask_params, include_metal, max_gib)
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc="prepare", unit="case", disable=not progress)
    try:
        if workers == 1 or len(jobs) <= 1:
            for outcomes in map(_run_job, jobs):
                for case, row, failure in outcomes:
                    _collect(result, rows, case, row, failure, bar)
        else:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=workers) as pool:
                for outcomes in pool.map(_run_job, jobs):
                    for case, row, failure in outcomes:
                        _collect(result, rows, case, row, failure, bar)
    finally:
        bar.close()
        _write_index(out, cases, rows, result.failures)
    result.auto_roi = [c.case_id for c in cases if c.case_id in rows and "roi_auto" in rows[c.case_id]["qc"].split(";")]
    result.rebuilt = [c for c in result.rebuilt if c in set(result.done)]
    result.seconds = time.perf_counter() - t0
    return result


def _open_cache(out: Path, settings: dict) -> Path:
    """The cache folder with its subfolders, created if missing; refused when its cache.json holds other settings."""
    if out.exists() and not out.is_dir():
        raise InputError(f"cache folder {out} is not a folder.", hint="Give a folder path for --out (created if missing).")
    for sub in ("volumes", "masks", "lesions", "meta"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    _check_cache_json(out, settings)
    return out


def _cases_to_prepare(cases: list[Case], out: Path, result: PrepareResult, rows: dict) -> list[Case]:
    """Cases without a complete cached entry (a damaged one is counted as rebuilt); the others go into ``rows`` and
    ``result.skipped``."""
    todo = []
    for case in cases:
        row, damaged = _cached_row(case, out)
        if row is None:
            todo.append(case)
            if damaged:
                result.rebuilt.append(case.case_id)
        else:
            rows[case.case_id] = row
            result.skipped.append(case.case_id)
    return todo


def _collect(result: PrepareResult, rows: dict, case: Case, row, failure, bar) -> None:
    if failure is None:
        rows[case.case_id] = row
        result.done.append(case.case_id)
    else:
        result.failures.append(failure)
    bar.update(1)


def _write_index(out: Path, cases: list[Case], rows: dict[str, dict], failures: list[dict]) -> None:
    """cases.csv (manifest order, cached cases only) and failures.jsonl, both written atomically."""
    write_cases_csv(out, [rows[case.case_id] for case in cases if case.case_id in rows])
    atomic_write(out / "failures.jsonl", "".join(json.dumps(f) + "\n" for f in failures))


def write_cases_csv(out: str | os.PathLike, rows: list[dict]) -> Path:
    """``out/cases.csv``: one row per cached case, columns CASE_COLUMNS (paths relative to ``out``), atomically.
    Every key of a row must be a column; a missing one is written empty."""
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CASE_COLUMNS, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write(Path(out) / "cases.csv", buf.getvalue())
