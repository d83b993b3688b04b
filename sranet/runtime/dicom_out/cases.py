"""``sranet predict --dicom-out DIR``: each input's DICOM objects in ``DIR/<input key>/``, and what the records say
about them.

One input (a whole study, or a case with a ROI and a side) gives one folder named by its key (the case id, or
``path-<12 hex>`` of the input path: never a tag's value) holding ``sr.dcm``, ``attention_right.dcm`` /
``attention_left.dcm`` for each assessed hip and, when the run writes heatmaps, ``overview.dcm`` (a Secondary
Capture of the input's heatmap PNG). Every record of the input gets a ``dicom_out`` field:

    {"folder": "DIR/<key>", "files": ["sr.dcm", ...]}     written
    {"note": "..."}                                      nothing to write: not a DICOM input, no side, the study
                                                         could not be read (its records say why)
    {"error": "<type>", "message": "..."}                writing failed (the prediction stands; the batch goes on)

A rerun that predicts an input again (``--retry-failed``) replaces its folder's objects: new files first, then the
files of roles this run did not write are removed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sranet.errors import SranetError
from sranet.runtime.dicom_out.writer import SERIES_NUMBERS

NOT_DICOM = "DICOM outputs need a DICOM source (a series folder or file); this input is {kind}"


def _dicom_source(source: Any) -> tuple[bool, str]:
    """(is a DICOM input, what it is in words), by ``load_volume``'s dispatch: a folder is a DICOM series, .nii /
    .nii.gz NIfTI, .npy an array, any other file a DICOM file."""
    from sranet.runtime.volume import Volume

    if isinstance(source, Volume):
        return False, "a volume in memory"
    path = Path(source)
    name = path.name.lower()
    if path.is_dir():
        return True, "a DICOM folder"
    if name.endswith((".nii", ".nii.gz")):
        return False, "NIfTI"
    if name.endswith(".npy"):
        return False, "a .npy array"
    return True, "a DICOM file"


def case_findings(case: Any, result: Any) -> list:
    """The findings of one input's outcome: a ``StudyPrediction`` -> one per side; a ``Prediction`` with a side ->
    its one hip. Raises InputError where there is nothing the writers can place (no side)."""
    from sranet.errors import InputError
    from sranet.runtime.dicom_out.from_results import prediction_finding, study_findings
    from sranet.runtime.predictor import Prediction
    from sranet.runtime.study import StudyPrediction

    if isinstance(result, StudyPrediction):
        return study_findings(result)
    if isinstance(result, Prediction):
        if result.side not in ("L", "R"):
            raise InputError("DICOM outputs need the hip's side; this case has a ROI without one.",
                             hint="Give the side (a manifest row's side column, or no --roi: the localiser finds "
                                  "each hip).")
        return [prediction_finding(result.side, result)]
    raise InputError("no findings to write.")


def _series_read(result: Any) -> str | None:
    """The series ``load_volume`` chose (the UID's last 8 digits its volume's meta keeps), from any hip's crop."""
    from sranet.runtime.predictor import Prediction

    outcomes = result.sides.values() if hasattr(result, "sides") else [result]
    for outcome in outcomes:
        if isinstance(outcome, Prediction) and outcome.volume is not None:
            suffix = outcome.volume.meta.get("series_uid_suffix")
            if suffix:
                return str(suffix)
    return None


def write_case_outputs(case: Any, result: Any, records: list[dict[str, Any]], predictor: Any,
                       out_dir: str | os.PathLike) -> dict[str, Any]:
    """Write one input's DICOM objects under ``out_dir/<case.key>/``; returns its records' ``dicom_out`` value.

    result   what ``predict_cases`` yielded for the input (``StudyPrediction``, ``Prediction`` or an exception).
    records  the input's records (a heatmap PNG among them becomes the overview capture).
    Never raises for the input's content: a failure is returned as ``{"error", "message"}``; a missing package
    (DependencyMissingError) does raise.
    """
    from sranet.errors import DependencyMissingError
    from sranet.runtime.dicom_out.from_results import algorithm_info
    from sranet.runtime.dicom_out.source import read_source_series
    from sranet.runtime.dicom_out.writer import write_dicom_outputs

    is_dicom, kind = _dicom_source(case.source)
    if not is_dicom:
        return {"note": NOT_DICOM.format(kind=kind)}
    if isinstance(result, BaseException):
        return {"note": "no DICOM outputs: the input could not be predicted (see the record's error)"}
    folder = Path(out_dir) / case.key
    try:
        findings = case_findings(case, result)
        source = read_source_series(case.source, series_uid=case.series or _series_read(result))
        png = next((r["heatmaps"]["png"] for r in records if (r.get("heatmaps") or {}).get("png")), None)
        paths = write_dicom_outputs(source, findings, algorithm_info(predictor), folder, overview_png=png,
                                    overwrite=True)
    except DependencyMissingError:
        raise
    except (SranetError, OSError, ValueError) as exc:  # this input's outputs; the batch goes on
        return {"error": type(exc).__name__, "message": str(exc) if isinstance(exc, SranetError) else
                f"{type(exc).__name__} while writing the DICOM objects"}
    written = {p.name for p in paths}
    for role in SERIES_NUMBERS:  # a rerun's folder holds this run's objects only
        stale = folder / f"{role}.dcm"
        if stale.name not in written:
            stale.unlink(missing_ok=True)
    return {"folder": str(folder), "files": [p.name for p in paths]}


__all__ = ["case_findings", "write_case_outputs"]
