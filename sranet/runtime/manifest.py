"""Manifest CSV: which cases exist, where they are, and their labels. Torch-free; strict about its columns.

Read here (prediction, preparation, calibration); ``sranet.data.manifest.write_manifest`` writes one.

Columns (docs/CONTRACTS.md): ``case_id`` (required, unique), ``path`` (required; a DICOM series folder, a NIfTI or
an .npy file; relative paths are resolved against the CSV's folder), ``label`` (0/1) and/or ``stage`` (ARCO 0-4;
label = stage > 0), ``split`` (train/val/test), ``roi`` (``"d0:d1,h0:h1,w0:w1"`` voxels or ``"mm:x0:x1,y0:y1,z0:z1"``),
``side`` (L/R), ``lesion_mask`` (.npy, (D, H, W) 0/1 on the loaded volume's grid), ``lesion_box`` (the full-series
voxel box ``"d0:d1,h0:h1,w0:w1"`` where a ``lesion_mask`` that is a crop sits; its shape is the box's),
``confidence`` (0-1) and ``qc`` (``;``-separated flags): what ``sranet locate`` says about the box it found, for the
person checking it; no reader acts on those two. Empty cells mean "not given".
Unknown columns are an error (with the nearest known name), never ignored. Every error names the file and the row.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from sranet.errors import InputError, ManifestError, suggest
from sranet.runtime import results
from sranet.runtime.roi import parse_roi

COLUMNS = ("case_id", "path", "label", "stage", "split", "roi", "side", "lesion_mask", "lesion_box", "confidence", "qc")
REQUIRED = ("case_id", "path")
SPLITS = ("train", "val", "test")
SIDES = ("L", "R")


def safe_name(case_id: str) -> str:
    """A case id made safe for a file name: ``sranet.runtime.results.safe_name``, the one rule ``predict`` keys and
    ``prepare`` file names share (only ``A-Z a-z 0-9 . _ -``, no leading dot, at most 100 characters); an id with
    nothing usable left is a ManifestError."""
    try:
        return results.safe_name(case_id)
    except InputError as exc:
        raise ManifestError(exc.message) from None


@dataclass(frozen=True)
class Case:
    """One manifest row, validated. ``path``/``lesion_mask`` are absolute; ``name`` is the sanitised case id."""

    case_id: str
    path: Path
    label: int | None = None
    stage: int | None = None
    split: str | None = None
    roi: str | None = None
    side: str | None = None
    lesion_mask: Path | None = None
    row: int = 0
    lesion_box: str | None = None
    confidence: float | None = None
    qc: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return safe_name(self.case_id)


def _int_value(text: str, column: str, allowed: range, where: str, fix: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value not in allowed or text.strip() != str(value):
        raise ManifestError(f"{where}: {column}={text!r} is not one of {', '.join(map(str, allowed))}. {fix}")
    return value


def read_manifest(path: str | os.PathLike, *, require_labels: bool = False) -> list[Case]:
    """Read and validate a manifest CSV. Returns the cases in file order.

    require_labels  every row must have a label or stage (training, evaluation).
    Raises ManifestError (file missing, unknown/missing column, duplicate id, bad value), naming file, row and fix.
    """
    path = Path(path)
    rows = _read_rows(path)
    header = [h.strip() for h in rows[0]]
    _check_header(header, path, require_labels=require_labels)
    base = path.resolve().parent
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for line, raw in enumerate(rows[1:], start=2):
        where = f"{path}, line {line}"
        if len(raw) != len(header):
            raise ManifestError(f"{where}: has {len(raw)} cells but the header has {len(header)}. Check quoting and commas.")
        case = _case(dict(zip(header, (v.strip() for v in raw), strict=True)), base, where, line,
                     require_labels=require_labels)
        if case.name in seen:
            raise ManifestError(
                f"{where}: case id {case.case_id!r} duplicates the one on line {seen[case.name]} "
                "(ids must be unique, also after making them file-name safe). Rename one of them."
            )
        seen[case.name] = line
        cases.append(case)
    if not cases:
        raise ManifestError("manifest has a header but no cases.", path=path)
    return cases


def _read_rows(path: Path) -> list[list[str]]:
    """The CSV's non-empty rows (header first); a missing, unreadable or empty file is a ManifestError."""
    if not path.is_file():
        raise ManifestError(
            "manifest not found." if not path.exists() else "manifest is not a file.",
            path=path,
            hint="Pass the CSV written by `sranet synth` or your own with columns " + ", ".join(COLUMNS) + ".",
        )
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(f"cannot read the manifest as UTF-8 CSV ({exc}).", path=path) from exc
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise ManifestError("manifest is empty; the first line must be the header " + ",".join(COLUMNS) + ".", path=path)
    return rows


def _check_header(header: list[str], path: Path, *, require_labels: bool) -> None:
    """Known columns only (with the nearest name for a typo), the required ones present, none twice."""
    for name in header:
        if name not in COLUMNS:
            raise ManifestError(
                f"unknown column {name!r}; known columns are {', '.join(COLUMNS)}.{suggest(name, COLUMNS)}",
                path=path,
                hint="Rename or remove the column (unknown columns are refused so that a typo never drops data).",
            )
    for name in REQUIRED:
        if name not in header:
            raise ManifestError(f"required column {name!r} is missing from the header {header}.", path=path)
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise ManifestError(f"column {duplicated[0]!r} appears more than once in the header.", path=path)
    if require_labels and "label" not in header and "stage" not in header:
        raise ManifestError("training needs labels: add a 'label' (0/1) or 'stage' (ARCO 0-4) column.", path=path)


def _case(cell: dict[str, str], base: Path, where: str, line: int, *, require_labels: bool) -> Case:
    """One row's cells (stripped) -> a validated Case; relative paths resolved against ``base``."""
    case_id = cell["case_id"]
    if not case_id:
        raise ManifestError(f"{where}: case_id is empty. Give every row a unique id.")
    safe_name(case_id)  # refuses an id with nothing usable in a file name
    if not cell["path"]:
        raise ManifestError(f"{where}: path is empty for case {case_id!r}. Give the DICOM folder, NIfTI or .npy file.")
    stage = cell.get("stage") or None
    label = cell.get("label") or None
    stage = None if stage is None else _int_value(stage, "stage", range(5), where, "Use the ARCO stage 0-4.")
    label = None if label is None else _int_value(label, "label", range(2), where, "Use 0 (no AVNFH) or 1 (AVNFH).")
    if stage is not None and label is not None and label != int(stage > 0):
        raise ManifestError(f"{where}: label={label} contradicts stage={stage} (label must be 1 exactly when stage > 0).")
    if label is None and stage is not None:
        label = int(stage > 0)
    if require_labels and label is None:
        raise ManifestError(f"{where}: case {case_id!r} has neither label nor stage; training needs one.")
    split = cell.get("split") or None
    if split is not None and split not in SPLITS:
        raise ManifestError(f"{where}: split={split!r} is not one of {', '.join(SPLITS)}.{suggest(split, SPLITS)}")
    side = (cell.get("side") or "").upper() or None
    if side is not None and side not in SIDES:
        raise ManifestError(f"{where}: side={cell['side']!r} must be 'L', 'R' or empty.")
    roi = cell.get("roi") or None
    if roi is not None:
        _check_roi(roi, where)
    lesion = cell.get("lesion_mask") or None
    lesion_box = cell.get("lesion_box") or None
    if lesion_box is not None:
        _check_lesion_box(lesion_box, lesion, where)
    confidence = cell.get("confidence") or None
    if confidence is not None:
        confidence = _confidence(confidence, where)
    qc = tuple(f.strip() for f in (cell.get("qc") or "").split(";") if f.strip())
    return Case(case_id=case_id, path=base / cell["path"], label=label, stage=stage, split=split, roi=roi, side=side,
                lesion_mask=None if lesion is None else base / lesion, row=line, lesion_box=lesion_box,
                confidence=confidence, qc=qc)


def _check_lesion_box(text: str, lesion: str | None, where: str) -> None:
    """A lesion_box is a voxel box and places a lesion_mask crop; without the mask it means nothing."""
    if lesion is None:
        raise ManifestError(f"{where}: lesion_box={text!r} is given without a lesion_mask; the box places the mask "
                            "(a crop) in the series. Add the mask or clear the box.")
    try:
        box = parse_roi(text)
    except Exception as exc:
        raise ManifestError(f"{where}: lesion_box={text!r} is not a valid voxel box d0:d1,h0:h1,w0:w1 ({exc}).") from exc
    if box.units != "voxel":
        raise ManifestError(f"{where}: lesion_box={text!r} must be in voxels (d0:d1,h0:h1,w0:w1), not millimetres.")


def _confidence(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise ManifestError(f"{where}: confidence={text!r} is not a number between 0 and 1.")
    return value


def _check_roi(text: str, where: str) -> None:
    """Validate the ROI text with the runtime's parser (the one inference uses)."""
    try:
        parse_roi(text)
    except Exception as exc:  # parse_roi raises InputError; re-raise naming the manifest row
        raise ManifestError(f"{where}: roi={text!r} is not a valid ROI ({exc}).") from exc


__all__ = ["COLUMNS", "REQUIRED", "SIDES", "SPLITS", "Case", "read_manifest", "safe_name"]
