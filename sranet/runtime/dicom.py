"""DICOM series folders and single DICOM files -> ``Volume`` (HU, geometry, QC), the way a careful radiology
loader does it.

1. Read every file's header only: the common file (preamble, little endian, plain values) from its bytes
   (``dicom_scan``, which gives what pydicom gives), any other with pydicom (``stop_before_pixels``). Files that
   are not DICOM or whose header is damaged are skipped and reported in ``volume.meta["skipped"]`` (file name and reason) with QC flag ``files_skipped``.
2. Drop objects that are not CT image slices, each with a reason: other modalities, non-image SOP classes,
   localizers/scouts (ImageType LOCALIZER), multi-frame objects inside a folder, slices without geometry.
3. Group by SeriesInstanceUID. One candidate series is used; several raise ``NoUsableSeriesError`` listing them
   (UID suffix, series number, slice count and thickness: nothing identifying) unless ``series=`` names one.
4. Sort by the projection of ImagePositionPatient on the slice normal; check tilt, spacing, gaps and duplicates
   (``dicom_geometry.plan_stack``) under the ``policy`` ("resample" corrects and flags, "strict" refuses).
5. Decode pixels of only the slices the ROI needs (uncompressed 16-bit slices read straight from their files,
   ``dicom_pixels``; compressed syntaxes through pydicom and the pylibjpeg plugins), apply each slice's
   RescaleSlope/Intercept, fix the JPEG 2000 sign mismatch, refuse noise (``CorruptPixelDataError``).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from sranet.errors import (
    CorruptPixelDataError,
    GeometryError,
    InputError,
    NoPixelDataError,
    NoUsableSeriesError,
    SranetError,
    WrongModalityError,
)
from sranet.runtime.dicom_decode import CT_SOP_CLASSES, SliceHeader
from sranet.runtime.dicom_scan import read_header
from sranet.runtime.dicom_stack import build_volume
from sranet.runtime.roi import Roi
from sranet.runtime.volume import Volume

_DAMAGED = ("UnreadableFileError", "NotDicomError", "CorruptPixelDataError", "NoPixelDataError")
_SKIP_NAMES = {"DICOMDIR", "LOCKFILE", "VERSION", ".DS_Store", "Thumbs.db"}


def list_files(folder: Path) -> list[Path]:
    """Every regular file under ``folder`` (recursively, sorted), except hidden files and DICOMDIR indexes."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                  and p.name not in _SKIP_NAMES)


def _reject_reason(h: SliceHeader) -> str | None:
    """Why a header cannot be a slice of a CT volume, or None if it can."""
    if h.modality != "CT":
        return f"modality {h.modality or 'missing'}, not CT"
    if h.sop_class and h.sop_class not in CT_SOP_CLASSES:
        return f"SOP class {h.sop_class} is not a CT image"
    if not h.rows or not h.columns:
        return "not an image (no Rows/Columns)"
    if "LOCALIZER" in h.image_type:
        return "localizer (scout) image"
    if h.enhanced or h.frames > 1:
        return "multi-frame object; load this file on its own"
    if h.geometry_problem:
        return h.geometry_problem
    missing = [name for name, value in (("ImagePositionPatient", h.position), ("ImageOrientationPatient",
                                                                              h.orientation),
                                        ("PixelSpacing", h.pixel_spacing)) if value is None]
    if missing:
        return f"no {'/'.join(missing)}"
    return None


def _series_label(uid: str, hs: list[SliceHeader]) -> str:
    """UID suffix, series number, slice count and thickness. Never SeriesDescription: it is free text that the DICOM
    de-identification profile removes, since exports sometimes put names in it."""
    thickness = f", {hs[0].slice_thickness:g} mm" if hs[0].slice_thickness else ""
    return f"...{uid[-8:] or '(no UID)'} #{hs[0].series_number or '?'} ({len(hs)} slices{thickness})"


def _choose(groups: dict[str, list[SliceHeader]], series: str | None, where: Path, skipped) -> tuple[str, list]:
    if series is not None:
        key = str(series).strip()
        hits = [u for u in groups if u == key or (len(key) >= 4 and u.endswith(key))
                or groups[u][0].series_number == key]
        if len(hits) != 1:
            listing = "; ".join(_series_label(u, hs) for u, hs in groups.items()) or "none"
            raise NoUsableSeriesError(
                f"series={key!r} matches {len(hits)} of the usable series ({listing}).", path=where,
                hint="Give the full SeriesInstanceUID, a unique suffix of it, or the series number.")
        return hits[0], groups[hits[0]]
    if len(groups) == 1:
        uid = next(iter(groups))
        return uid, groups[uid]
    if not groups:
        reasons = "; ".join(f"{name}: {why}" for name, why in skipped[:8]) or "the folder is empty"
        more = f" (+{len(skipped) - 8} more)" if len(skipped) > 8 else ""
        raise NoUsableSeriesError(f"no CT image series found. Skipped: {reasons}{more}.", path=where,
                                  hint="Point to the folder of an axial CT series.")
    listing = "; ".join(_series_label(u, hs) for u, hs in sorted(groups.items(), key=lambda kv: -len(kv[1])))
    raise NoUsableSeriesError(f"{len(groups)} CT series found: {listing}.", path=where,
                              hint="Choose one with series=<UID suffix or series number> (CLI: --series).")


def scan_folder(folder: Path) -> tuple[dict[str, list[SliceHeader]], list[tuple[str, str]]]:
    """Header-only scan: usable CT slices grouped by SeriesInstanceUID, and (relative name, reason) for the rest."""
    groups: dict[str, list[SliceHeader]] = defaultdict(list)
    skipped: list[tuple[str, str]] = []
    for p in list_files(folder):
        name = str(p.relative_to(folder))
        try:
            h = read_header(p)
        except SranetError as exc:
            skipped.append((name, f"{type(exc).__name__}: {exc.message}"))
            continue
        why = _reject_reason(h)
        if why:
            skipped.append((name, why))
        else:
            groups[h.series_uid].append(h)
    return dict(groups), skipped


def load_dicom_folder(folder: Path, *, roi: Roi | None = None, series: str | None = None,
                      policy: str = "resample", max_gib: float | None = None, compact: bool = False) -> Volume:
    """A folder holding one or more DICOM series -> Volume of the chosen CT series. See the module docstring.

    A slice whose pixel data is corrupt, truncated or missing is dropped and reported like a damaged header (at
    most 10 % of the series); the geometry check then applies the policy to the hole it may leave, and a hole it
    refuses is reported as the unreadable slices that made it (CorruptPixelDataError). ``max_gib``: memory budget
    (``sranet.runtime.limits``). ``compact``: int16 HU where exact (``load_volume``).
    """
    groups, skipped = scan_folder(folder)
    uid, hs = _choose(groups, series, folder, skipped)
    dropped: list[str] = []
    while True:
        damaged = [s for s in skipped if s[1].startswith(_DAMAGED)]
        qc = ["files_skipped"] if damaged else []
        extra = {"skipped": [{"file": n, "reason": r} for n, r in skipped]} if skipped else {}
        try:
            return build_volume(hs, where=folder, roi=roi, policy=policy, extra_meta=extra, qc=qc, max_gib=max_gib,
                                compact=compact)
        except (CorruptPixelDataError, NoPixelDataError) as exc:
            # A slice whose pixels cannot be used is dropped like a damaged header, so long as few are; the
            # geometry check then decides (under the policy) whether the series is still whole.
            bad = Path(exc.path) if exc.path else None
            if bad is None or len(dropped) >= max(1, len(hs) // 10) or all(h.path != bad for h in hs):
                raise
            hs = [h for h in hs if h.path != bad]
            if not hs:
                raise
            dropped.append(str(bad.relative_to(folder)))
            skipped.append((dropped[-1], f"{type(exc).__name__}: {exc.message}"))
        except GeometryError as exc:
            if not dropped:
                raise
            raise CorruptPixelDataError(
                f"{len(dropped)} slice(s) have unreadable pixel data ({', '.join(dropped)}), and without them the "
                f"series cannot be stacked: {exc.message}", path=folder,
                hint="Re-export the damaged files (their reasons are listed per file when fewer are damaged).") from exc


def load_dicom_file(path: Path, *, roi: Roi | None = None, policy: str = "resample",
                    max_gib: float | None = None) -> Volume:
    """One DICOM file: a single CT slice (a (1, H, W) volume) or an enhanced multi-frame CT object."""
    h = read_header(path)
    if h.modality != "CT":
        raise WrongModalityError(f"modality is {h.modality or 'missing'}; sranet reads CT only.", path=path,
                                 hint="Point to a CT series.")
    if h.enhanced:
        from sranet.runtime.dicom_enhanced import load_enhanced

        return load_enhanced(path, h, roi=roi, policy=policy, max_gib=max_gib)
    why = _reject_reason(h)
    if why:
        error = NoPixelDataError if "not an image" in why or "SOP class" in why else NoUsableSeriesError
        raise error(f"cannot be used as a CT slice: {why}.", path=path, hint="Point to an axial CT image.")
    return build_volume([h], where=path, roi=roi, policy=policy, max_gib=max_gib)


def check_policy(policy: str) -> str:
    from sranet.runtime.dicom_geometry import POLICIES

    if policy not in POLICIES:
        from sranet.errors import suggest

        raise InputError(f"policy={policy!r} is not one of {POLICIES}.{suggest(str(policy), POLICIES)}",
                         hint="'resample' corrects tilt/irregular spacing (flagged in qc); 'strict' refuses.")
    return policy
