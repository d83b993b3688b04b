"""The source CT series as the DICOM writers need it: its headers and the exact position of every frame.

``SourceSeries.from_datasets`` takes pydicom datasets (headers are enough: read with ``stop_before_pixels=True``)
of one CT series: single-frame CT Image Storage instances, or one Enhanced CT (multi-frame) instance. It keeps the
datasets (highdicom copies the patient and study modules from them and references them as evidence) and the
geometry: orientation, pixel spacing, rows, columns and every frame's ImagePositionPatient, sorted along the slice
normal. Pixel (row r, column c) of a frame lies at ``position + c * column_spacing * row_dir + r * row_spacing *
col_dir`` (DICOM PS3.3 C.7.6.2.1.1).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sranet.errors import GeometryError, InputError, NoUsableSeriesError, WrongModalityError

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
CT_STORAGE_CLASSES = (CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE)


@dataclass(frozen=True)
class SourceFrame:
    """One frame of the source series: which dataset holds it, its 1-based frame number in that dataset (None for
    a single-frame instance) and its ImagePositionPatient (LPS mm)."""

    dataset_index: int
    frame_number: int | None
    position_mm: tuple[float, float, float]


@dataclass(frozen=True, eq=False)
class SourceSeries:
    """One CT series' headers and geometry. Build with ``from_datasets`` or ``read_source_series``."""

    datasets: tuple  # pydicom Datasets, in the order ``frames`` refers to
    frames: tuple[SourceFrame, ...]  # sorted along ``normal``
    row_dir: np.ndarray  # (3,) LPS direction of increasing column index (first half of ImageOrientationPatient)
    col_dir: np.ndarray  # (3,) LPS direction of increasing row index (second half)
    pixel_spacing_mm: tuple[float, float]  # (between rows, between columns), as in PixelSpacing
    rows: int
    columns: int

    @property
    def first(self):
        return self.datasets[0]

    @property
    def study_uid(self) -> str:
        return str(self.first.StudyInstanceUID)

    @property
    def series_uid(self) -> str:
        return str(self.first.SeriesInstanceUID)

    @property
    def frame_of_reference_uid(self) -> str:
        return str(self.first.FrameOfReferenceUID)

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_dir, self.col_dir)

    @property
    def orientation(self) -> list[float]:
        return [*map(float, self.row_dir), *map(float, self.col_dir)]

    def pixel_to_patient(self, frame: int, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """LPS mm of pixel (row, column) of ``frames[frame]``; fractional indices allowed; broadcasts -> (..., 3)."""
        origin = np.asarray(self.frames[frame].position_mm, dtype=float)
        rs, cs = self.pixel_spacing_mm
        rows = np.asarray(rows, dtype=float)[..., None]
        columns = np.asarray(columns, dtype=float)[..., None]
        return origin + columns * cs * self.row_dir + rows * rs * self.col_dir

    @classmethod
    def from_datasets(cls, datasets: Sequence) -> SourceSeries:
        """Check and summarise the headers of one CT series (single-frame instances or one Enhanced CT instance).

        Raises InputError for an empty list, WrongModalityError for non-CT objects, NoUsableSeriesError when the
        datasets come from several series or studies, GeometryError for missing or inconsistent geometry.
        """
        datasets = list(datasets)
        if not datasets:
            raise InputError("no source datasets were given; the DICOM outputs reference the CT series they describe.")
        for ds in datasets:
            sop_class = str(getattr(ds, "SOPClassUID", ""))
            if sop_class not in CT_STORAGE_CLASSES or str(getattr(ds, "Modality", "")) != "CT":
                raise WrongModalityError(f"a source object has SOP class {sop_class or 'none'} and modality "
                                         f"{getattr(ds, 'Modality', 'none')}; CT Image or Enhanced CT Image was expected.")
            for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
                if not str(getattr(ds, keyword, "")):
                    raise GeometryError(f"a source CT object has no {keyword}; the outputs could not reference it.")
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
            values = {str(getattr(ds, keyword)) for ds in datasets}
            if len(values) > 1:
                raise NoUsableSeriesError(f"the source datasets have {len(values)} different {keyword} values; the "
                                          "DICOM outputs describe one CT series.", hint="Pass the chosen series only.")
        sop_uids = [str(ds.SOPInstanceUID) for ds in datasets]
        if len(set(sop_uids)) != len(sop_uids):
            raise GeometryError("the source datasets hold the same SOPInstanceUID twice.",
                                hint="Pass each instance once.")
        enhanced = [ds for ds in datasets if str(ds.SOPClassUID) == ENHANCED_CT_IMAGE_STORAGE]
        if enhanced and len(datasets) > 1:
            raise NoUsableSeriesError("an Enhanced CT instance came with other instances; its series is one "
                                      "multi-frame object.", hint="Pass the Enhanced CT instance alone.")
        planes = _enhanced_planes(datasets[0]) if enhanced else [_plane(ds, i) for i, ds in enumerate(datasets)]
        return cls._from_planes(datasets, planes)

    @classmethod
    def _from_planes(cls, datasets: list, planes: list[tuple]) -> SourceSeries:
        # planes: (dataset index, frame number, position, orientation (6,), spacing (2,), rows, columns)
        ref = planes[0]
        for p in planes[1:]:
            if not np.allclose(p[3], ref[3], atol=1e-4):
                raise GeometryError("the source frames have different ImageOrientationPatient values; the outputs "
                                    "need one orientation for the series.")
            if not np.allclose(p[4], ref[4], atol=1e-6) or p[5:7] != ref[5:7]:
                raise GeometryError("the source frames differ in PixelSpacing, Rows or Columns.")
        row_dir, col_dir = np.asarray(ref[3][:3], dtype=float), np.asarray(ref[3][3:], dtype=float)
        row_dir, col_dir = row_dir / np.linalg.norm(row_dir), col_dir / np.linalg.norm(col_dir)
        if abs(float(row_dir @ col_dir)) > 1e-3:
            raise GeometryError(f"ImageOrientationPatient {list(ref[3])} is not orthogonal.")
        normal = np.cross(row_dir, col_dir)
        order = sorted(range(len(planes)), key=lambda n: float(np.asarray(planes[n][2]) @ normal))
        along = [float(np.asarray(planes[n][2]) @ normal) for n in order]
        if any(b - a < 1e-3 for a, b in zip(along, along[1:], strict=False)):
            raise GeometryError("two source frames share a slice position; a series with duplicate positions "
                                "cannot carry an overlay.", hint="Pass one frame per position.")
        frames = tuple(SourceFrame(planes[n][0], planes[n][1], tuple(float(v) for v in planes[n][2])) for n in order)
        return cls(tuple(datasets), frames, row_dir, col_dir, (float(ref[4][0]), float(ref[4][1])),
                   int(ref[5]), int(ref[6]))


def _floats(ds, keyword: str, n: int, where: str) -> tuple[float, ...]:
    value = getattr(ds, keyword, None)
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        out = ()
    if len(out) != n or not np.isfinite(out).all():
        raise GeometryError(f"{where} has no usable {keyword} ({n} numbers expected); the outputs need the geometry.")
    return out


def _plane(ds, index: int) -> tuple:
    where = "a source CT instance"
    spacing = _floats(ds, "PixelSpacing", 2, where)
    if min(spacing) <= 0:
        raise GeometryError(f"{where} has PixelSpacing {list(spacing)}; positive spacings were expected.")
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames != 1:
        raise GeometryError(f"{where} of SOP class CT Image has {frames} frames; one was expected.")
    return (index, None, _floats(ds, "ImagePositionPatient", 3, where), _floats(ds, "ImageOrientationPatient", 6, where),
            spacing, int(ds.Rows), int(ds.Columns))


def _group(frame, shared, sequence: str, keyword: str):
    for groups in (frame, shared):
        seq = getattr(groups, sequence, None) if groups is not None else None
        if seq:
            value = getattr(seq[0], keyword, None)
            if value is not None:
                return value
    return None


def _enhanced_planes(ds) -> list[tuple]:
    where = "the Enhanced CT instance"
    per_frame = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    shared_seq = getattr(ds, "SharedFunctionalGroupsSequence", None)
    shared = shared_seq[0] if shared_seq else None
    n = int(getattr(ds, "NumberOfFrames", 0) or 0)
    if not per_frame or len(per_frame) != n:
        raise GeometryError(f"{where} has {n} frames but {len(per_frame or [])} per-frame functional groups.")
    planes = []
    for f, frame in enumerate(per_frame):
        values = {}
        for seq, key, count in (("PlanePositionSequence", "ImagePositionPatient", 3),
                                ("PlaneOrientationSequence", "ImageOrientationPatient", 6),
                                ("PixelMeasuresSequence", "PixelSpacing", 2)):
            raw = _group(frame, shared, seq, key)
            try:
                values[key] = tuple(float(v) for v in raw)
            except (TypeError, ValueError):
                values[key] = ()
            if len(values[key]) != count or not np.isfinite(values[key]).all():
                raise GeometryError(f"frame {f + 1} of {where} has no usable {key}.")
        planes.append((0, f + 1, values["ImagePositionPatient"], values["ImageOrientationPatient"],
                       values["PixelSpacing"], int(ds.Rows), int(ds.Columns)))
    return planes


def usable_ct(ds) -> bool:
    """A CT image object the outputs can reference: CT storage class and modality, not a localizer (scout)."""
    return is_ct_image(ds) and not is_localizer(ds)


def is_ct_image(ds) -> bool:
    """CT Image or Enhanced CT Image storage, modality CT."""
    return str(getattr(ds, "SOPClassUID", "")) in CT_STORAGE_CLASSES and str(getattr(ds, "Modality", "")) == "CT"


def is_localizer(ds) -> bool:
    """ImageType holds LOCALIZER (a scout)."""
    return "LOCALIZER" in [str(v).upper() for v in (getattr(ds, "ImageType", None) or [])]


def read_headers(files: Iterable[Path]) -> list[tuple[Path, object]]:
    """(path, pydicom header) of every file that reads as DICOM; a file that does not, or whose header is damaged
    (``dicom_decode.read_dataset``'s typed errors, or a value pydicom converts only when it is used), is left out,
    as ``load_volume`` leaves it out of a series."""
    from sranet.runtime.dicom_decode import read_dataset

    out = []
    for path in files:
        try:  # SranetError from read_dataset; anything pydicom raises converting a damaged value on first use
            ds = read_dataset(Path(path), header_only=True)
            _ = is_ct_image(ds), is_localizer(ds), str(getattr(ds, "SeriesInstanceUID", ""))
        except Exception:  # noqa: BLE001 - the file is left out, as load_volume leaves it out
            continue
        out.append((Path(path), ds))
    return out


def _matches(uid: str, number: str, key: str) -> bool:
    """``load_volume(series=)``'s rule: the full UID, a unique suffix of at least 4 characters, or the number."""
    return uid == key or (len(key) >= 4 and uid.endswith(key)) or (bool(number) and number == key)


def read_source_series(paths: str | os.PathLike | Iterable[str | os.PathLike], *,
                       series_uid: str | None = None) -> SourceSeries:
    """Read the headers (no pixels) of a CT series: a folder (searched recursively) or a list of files.

    series_uid  the series to use when the files hold several CT series (required then: the error says how many),
                chosen as ``load_volume(series=)`` chooses: the full SeriesInstanceUID, a unique suffix of it (at
                least 4 characters) or the series number.
    Files that are not DICOM, not CT or localizers (scouts), and hidden files, are passed over.
    """
    if isinstance(paths, (str, os.PathLike)):
        root = Path(paths)
        files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")) \
            if root.is_dir() else [root]
    else:
        files = [Path(p) for p in paths]
    by_series: dict[str, list] = {}
    for _, ds in read_headers(files):
        if usable_ct(ds):
            by_series.setdefault(str(getattr(ds, "SeriesInstanceUID", "")), []).append(ds)
    if series_uid is not None:
        key = str(series_uid).strip()
        hits = [uid for uid, group in by_series.items()
                if _matches(uid, str(getattr(group[0], "SeriesNumber", "") or ""), key)]
        if len(hits) != 1:
            raise NoUsableSeriesError(f"the given series matches {len(hits)} of the {len(by_series)} CT series read.",
                                      hint="Give the full SeriesInstanceUID, a unique suffix of it, or the series "
                                           "number.")
        return SourceSeries.from_datasets(by_series[hits[0]])
    if len(by_series) != 1:
        raise NoUsableSeriesError(f"found {len(by_series)} CT series; exactly one was expected.",
                                  hint="Pass series_uid= to choose one." if by_series else "Check the path.")
    return SourceSeries.from_datasets(next(iter(by_series.values())))
