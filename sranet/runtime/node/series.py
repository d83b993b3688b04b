"""Which CT series of a received study the node predicts on: one deliberate rule, the same for every study.

A study often holds several CT series (thin and thick reconstructions, bone and soft-tissue kernels, a scout). The
node predicts on one, and its outputs reference that one:

1. Candidates: CT Image or Enhanced CT Image objects (modality CT), not localizers (ImageType LOCALIZER), grouped by
   Series Instance UID; a group must have one consistent geometry (one orientation, pixel spacing and size, no
   two frames at one position: ``SourceSeries.from_datasets``), be axial (its slice normal within 30 degrees of
   the patient's head-feet axis: the model was trained on axial series) and hold at least 16 slices.
2. Among the candidates that span at least 80 mm along the slice normal (both femoral heads with the ROI's margin),
   the one with the thinnest slice spacing (rounded to 0.1 mm); ties go to the longer span, then to more slices,
   then to the finer pixel spacing, then to the Series Instance UID (so the choice never depends on arrival order).
   When no candidate spans 80 mm, the longest one.
3. No candidate: the study fails (``NoUsableSeriesError``) with each series' reason; its instances stay in the
   spool's ``failed/``.

The other series are not processed; the log and the health line say how many there were and what was chosen
(slice spacing, slices, span), never a UID.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sranet.errors import NoUsableSeriesError, SranetError
from sranet.runtime.dicom_out.source import (
    ENHANCED_CT_IMAGE_STORAGE,
    SourceSeries,
    is_ct_image,
    is_localizer,
    usable_ct,
)
from sranet.runtime.dicom_out.source import read_headers as source_headers

MIN_SLICES = 16
COVER_MM = 80.0
MAX_TILT_DEG = 30.0


@dataclass(frozen=True, eq=False)
class SeriesChoice:
    """The series chosen: its headers (``source``), what to load (``path``: the study's folder with ``series`` =
    the UID, or the one Enhanced CT file with ``series`` None), its numbers for the log, and why each other series
    was passed over ({n: reason}, numbered in the order of the ranking, nothing identifying)."""

    source: SourceSeries
    path: Path
    series: str | None
    slice_mm: float
    slices: int
    span_mm: float
    candidates: int
    passed_over: tuple[str, ...]

    def summary(self) -> dict:
        """The choice as the health line shows it (no UIDs)."""
        return {"candidates": self.candidates, "slices": self.slices, "slice_mm": round(self.slice_mm, 3),
                "span_mm": round(self.span_mm, 1), "passed_over": list(self.passed_over)}


def read_headers(folder: str | os.PathLike) -> list[tuple[Path, object]]:
    """(path, header) of every DICOM file in ``folder`` (``*.dcm``, flat, as the spool keeps a round)."""
    return source_headers(sorted(Path(folder).glob("*.dcm")))


def _describe(source: SourceSeries) -> tuple[float, float, int]:
    """(slice spacing mm, span mm along the normal, slices) of a series."""
    along = np.array([np.asarray(f.position_mm) @ source.normal for f in source.frames])
    spacing = float(np.median(np.diff(along))) if len(along) > 1 else 0.0
    return spacing, float(along[-1] - along[0]), len(along)


def choose_series(folder: str | os.PathLike, headers: list[tuple[Path, object]] | None = None) -> SeriesChoice:
    """Apply the module's rule to the instances in ``folder`` (headers read here unless given)."""
    folder = Path(folder)
    headers = read_headers(folder) if headers is None else headers
    groups: dict[str, list[tuple[Path, object]]] = {}
    passed: list[str] = []
    scouts = 0
    for path, ds in headers:
        if not usable_ct(ds):  # another kind of object (dose report, secondary capture), or a scout
            scouts += is_ct_image(ds) and is_localizer(ds)
            continue
        groups.setdefault(str(getattr(ds, "SeriesInstanceUID", "")), []).append((path, ds))
    if scouts:
        passed.append(f"{scouts} localizer (scout) objects")
    ranked = []
    for uid, members in groups.items():
        datasets = [ds for _, ds in members]
        try:
            source = SourceSeries.from_datasets(datasets)
        except SranetError as exc:
            passed.append(f"{len(members)} objects: {exc.message}")
            continue
        spacing, span, slices = _describe(source)
        tilt = float(np.degrees(np.arccos(min(1.0, abs(float(source.normal[2]))))))
        if tilt > MAX_TILT_DEG:
            passed.append(f"{slices} slices, not axial (slice normal {tilt:.0f} degrees from head-feet)")
            continue
        if slices < MIN_SLICES:
            passed.append(f"{slices} slices (fewer than {MIN_SLICES})")
            continue
        enhanced = str(datasets[0].SOPClassUID) == ENHANCED_CT_IMAGE_STORAGE
        pixel = float(min(source.pixel_spacing_mm))
        covers = span >= COVER_MM
        key = (not covers, round(spacing, 1) if covers else 0.0, -span, -slices, pixel, uid)
        path, series = (members[0][0], None) if enhanced else (folder, uid)
        ranked.append((key, source, path, series, spacing, slices, span))
    if not ranked:
        reasons = "; ".join(passed[:8]) or "no CT image objects"
        raise NoUsableSeriesError(f"no CT series the model can read in this study ({reasons}).",
                                  hint="Send an axial CT series of the pelvis of at least 16 slices.")
    ranked.sort(key=lambda r: r[0])
    _, source, path, series, spacing, slices, span = ranked[0]
    others = [f"{r[5]} slices of {r[4]:.2g} mm spanning {r[6]:.0f} mm (ranked lower)" for r in ranked[1:]]
    return SeriesChoice(source, path, series, spacing, slices, span, len(ranked), tuple(others + passed))


__all__ = ["COVER_MM", "MIN_SLICES", "SeriesChoice", "choose_series", "read_headers"]
