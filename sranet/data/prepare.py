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

The work on one case (its files written, and checked on a rerun) is ``sranet.data.prepare_case``'s; this module
runs it over a manifest and writes the cache's cache.json, cases.csv and failures.jsonl.
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from sranet.config import ModelConfig, PreprocessConfig
from sranet.data.masks import BoneMaskParams
from sranet.data.prepare_case import auto_roi, cached_row, prepare_case, run_job
from sranet.errors import InputError
from sranet.runtime.files import atomic_write
from sranet.runtime.limits import check_threads, volume_budget_gib
from sranet.runtime.manifest import Case, read_manifest

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
            for outcomes in map(run_job, jobs):
                for case, row, failure in outcomes:
                    _collect(result, rows, case, row, failure, bar)
        else:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=workers) as pool:
                for outcomes in pool.map(run_job, jobs):
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
        row, damaged = cached_row(case, out)
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


__all__ = ["CASE_COLUMNS", "PrepareResult", "prepare_cache", "prepare_case", "write_cases_csv"]
