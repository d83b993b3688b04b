"""The library call behind ``--dicom-out``: a study's findings as DICOM objects in the source study.

``build_dicom_outputs`` makes the objects in memory (pydicom Datasets built by highdicom); ``write_dicom_outputs``
also writes them. Every object gets a new series and new UIDs in the source study (same Study Instance UID),
references the source series and instances, and copies the patient and study modules from the source as DICOM
requires; nothing else identifying is added (no institution, no operator, no station name). File names carry only
the object's role (``sr.dcm``, ``attention_right.dcm``, ``attention_left.dcm``, ``overview.dcm``), never a tag's value.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sranet.errors import DependencyMissingError, InputError
from sranet.runtime.dicom_out.finding import AlgorithmInfo, HipFinding
from sranet.runtime.dicom_out.source import SourceSeries

SERIES_NUMBERS = {"sr": 9000, "attention_right": 9001, "attention_left": 9002, "overview": 9003}


@dataclass(frozen=True, eq=False)
class DicomOutput:
    """One object: its role (also its file stem) and the dataset."""

    role: str
    dataset: object  # a pydicom Dataset (a highdicom SOP class instance)

    @property
    def file_name(self) -> str:
        return f"{self.role}.dcm"


def require_highdicom() -> None:
    """Raise DependencyMissingError naming the extra when highdicom is not installed."""
    try:
        import highdicom  # noqa: F401
    except ImportError as exc:
        raise DependencyMissingError("writing DICOM outputs needs the highdicom package.",
                                     hint="Install it with: pip install 'sranet[dicom-node]'.") from exc


def _check_findings(findings: Sequence[HipFinding]) -> list[HipFinding]:
    findings = list(findings)
    if not findings:
        raise InputError("no findings were given; a study's report holds one finding per hip (assessed or not).",
                         hint="Pass a HipFinding per side, with probability=None and a QC reason for a hip not "
                              "assessed.")
    for f in findings:
        if not isinstance(f, HipFinding):
            raise InputError(f"findings must be HipFinding objects, got {type(f).__name__}.")
    sides = [f.side for f in findings]
    if len(set(sides)) != len(sides):
        raise InputError(f"findings name the same side twice ({sides}); one finding per hip.")
    return sorted(findings, key=lambda f: f.side != "R")  # right hip first, as a radiologist reads the image


def build_dicom_outputs(source: SourceSeries, findings: Sequence[HipFinding], algorithm: AlgorithmInfo, *,
                        overview_png: str | os.PathLike | None = None) -> list[DicomOutput]:
    """The study's DICOM objects: the Comprehensive 3D SR, one Parametric Map per hip with an attention map, and a
    Secondary Capture of ``overview_png`` when given. Nothing is written to disk.

    source        the CT series the findings were made on (``SourceSeries.from_datasets`` / ``read_source_series``).
    findings      one ``HipFinding`` per hip (at most one per side).
    algorithm     the model's identification (name, version, SHA-256, artifact file name).
    Raises InputError for inconsistent findings, EmptyRoiError for a map outside the series.
    """
    require_highdicom()
    import highdicom as hd

    from sranet.runtime.dicom_out.capture import build_secondary_capture, read_png_rgb
    from sranet.runtime.dicom_out.pmap import build_parametric_map
    from sranet.runtime.dicom_out.resample import resample_to_source
    from sranet.runtime.dicom_out.sr import build_sr

    if not isinstance(source, SourceSeries):
        raise InputError(f"source must be a SourceSeries, got {type(source).__name__}.",
                         hint="Build it with SourceSeries.from_datasets(headers) or read_source_series(folder).")
    if not isinstance(algorithm, AlgorithmInfo):
        raise InputError(f"algorithm must be an AlgorithmInfo, got {type(algorithm).__name__}.")
    findings = _check_findings(findings)
    outputs = [DicomOutput("sr", build_sr(source, findings, algorithm, series_uid=hd.UID(), sop_uid=hd.UID(),
                                          series_number=SERIES_NUMBERS["sr"]))]
    for f in findings:
        if f.attention is None:
            continue
        role = f"attention_{f.side_name}"
        on_source = resample_to_source(f.attention, source)
        outputs.append(DicomOutput(role, build_parametric_map(
            source, f, on_source, algorithm, series_uid=hd.UID(), sop_uid=hd.UID(),
            series_number=SERIES_NUMBERS[role])))
    if overview_png is not None:
        outputs.append(DicomOutput("overview", build_secondary_capture(
            source, read_png_rgb(overview_png), algorithm, series_uid=hd.UID(), sop_uid=hd.UID(),
            series_number=SERIES_NUMBERS["overview"])))
    return outputs


def save_dataset(dataset, path: str | os.PathLike) -> Path:
    """Write one dataset as a DICOM file atomically (``atomic_write``: a temporary name in the same folder, fsync,
    rename, fsync of the folder: the node records a round as processed only after its results are durable)."""
    from sranet.runtime.files import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda f: dataset.save_as(f, enforce_file_format=True), fsync_dir=True)


def write_dicom_outputs(source: SourceSeries, findings: Sequence[HipFinding], algorithm: AlgorithmInfo,
                        out_dir: str | os.PathLike, *, overview_png: str | os.PathLike | None = None,
                        overwrite: bool = False) -> list[Path]:
    """``build_dicom_outputs``, then write each object to ``out_dir/<role>.dcm``; returns the paths (SR first).

    out_dir is one study's folder. An existing output there is an error unless ``overwrite`` (a second run
    would otherwise mix two runs' objects with different UIDs in one folder).
    """
    out_dir = Path(out_dir)
    outputs = build_dicom_outputs(source, findings, algorithm, overview_png=overview_png)
    if not overwrite:
        clash = [o.file_name for o in outputs if (out_dir / o.file_name).exists()]
        if clash:
            raise InputError(f"{', '.join(clash)} already exist in this folder.", path=out_dir,
                             hint="Choose an empty folder per study, or pass overwrite=True.")
    return [save_dataset(o.dataset, out_dir / o.file_name) for o in outputs]
