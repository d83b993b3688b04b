"""Batch prediction as a library: inputs and manifests -> cases -> a resumable JSON Lines file of records.

``sranet predict`` and ``sranet demo`` both run through here, so they write the same records:

- a success record is ``Prediction.to_record()`` (plus ``heatmaps`` where they were written);
- a failure record is ``failure_record(case, error, model_sha256=...)``;
- a whole study (no ROI given: ``roi_source="auto"``) yields one record per hip, success or failure
  (``sranet.runtime.study.study_records``), a side without a femoral head or with metal near it a refusal;
- ``annotate(case)`` may add fields to all of them (the demo adds the manifest's ``label``).

The schemas are in docs/CONTRACTS.md. ``predict_batch`` appends to the results file with ``ResultsWriter`` (one
atomic append per input, the file locked against a second run), skips inputs already recorded, records a failing
case and goes on. Writing a record never stops a batch: a record that cannot be written as JSON (a NaN from an
``annotate`` or a result) is replaced by the case's failure record(s). The work per input is ``records_for``: it
returns a list, since an input may yield several records (one per hip); the records of one input are appended in
one write, and resume skips an input once its records are in the file (``input``, else ``case``). Cases are read,
located where they are whole studies, and preprocessed by ``sranet.runtime.study.predict_cases``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sranet.errors import InputError, SranetError
from sranet.runtime.limits import check_batch, volume_budget_gib
from sranet.runtime.predictor import CaseInput, Predictor, display_source
from sranet.runtime.results import ResultsWriter

WHOLE = "whole"  # ``roi=WHOLE``: the whole volume is the crop (data that are already crops), flagged no_roi


def cases_from(inputs: Iterable[str | os.PathLike] = (), *, manifest: str | os.PathLike | None = None,
               roi: Any = None, series: str | None = None,
               spacing_mm: tuple[float, float, float] | None = None,
               split: str | None = None, max_gib: float | None = None) -> list[CaseInput]:
    """The cases to predict: each input path, then each manifest row (of ``split`` only, when given).

    ``roi`` (text or ``Roi``; text is parsed here, so a malformed one stops the run before any case) applies to every
    input and to manifest rows without their own: None, each is a whole study whose femoral heads are found and each
    hip predicted ("auto"; a manifest row's ``side`` keeps to that hip); ``WHOLE`` ("whole"), the whole volume is
    the crop (flagged ``no_roi``); else the ROI ("manual"). A manifest row's own ``roi`` is "manifest". ``series``
    applies only to DICOM folders and ``spacing_mm`` only to .npy files (other inputs in the same run carry their
    own); ``max_gib`` is each case's memory budget (``sranet.runtime.limits``). Raises InputError when there is no
    case or two cases share a key, ManifestError for a bad manifest.
    """
    if isinstance(roi, str) and roi.strip().lower() != WHOLE:
        from sranet.runtime.roi import parse_roi

        roi = parse_roi(roi)
    max_gib = volume_budget_gib(max_gib) if max_gib is not None else None
    cases = [_input_case(p, None, roi, None, series, spacing_mm, max_gib) for p in inputs]
    if manifest is not None:
        from sranet.runtime.manifest import read_manifest
        from sranet.runtime.roi import parse_roi

        for c in read_manifest(manifest):
            if split is not None and c.split != split:
                continue
            if c.roi:
                cases.append(CaseInput(c.path, case_id=c.case_id, roi=parse_roi(c.roi, c.side),
                                       series=_folders_only(c.path, series), spacing_mm=_npy_only(c.path, spacing_mm),
                                       roi_source="manifest", max_gib=max_gib))
            else:
                cases.append(_input_case(c.path, c.case_id, roi, c.side, series, spacing_mm, max_gib))
    if not cases:
        raise InputError("no inputs given.", hint="Pass DICOM folders / NIfTI / .npy paths, or --manifest CSV.")
    dupes = sorted(k for k, n in Counter(c.key for c in cases).items() if n > 1)
    if dupes:
        raise InputError(f"several inputs map to the same case key {dupes[0]!r}; each case must appear once.")
    return cases


def _input_case(path, case_id, roi, side, series, spacing_mm, max_gib) -> CaseInput:
    """A case whose ROI comes from the run's ``roi`` (None: found by the localiser; WHOLE: none)."""
    if isinstance(roi, str) and roi.strip().lower() == WHOLE:
        roi_source, roi, side = "whole", None, None
    else:
        roi_source = "auto" if roi is None else "manual"
        side = side if roi is None else None
    return CaseInput(path, case_id=case_id, roi=roi, series=_folders_only(path, series),
                     spacing_mm=_npy_only(path, spacing_mm), roi_source=roi_source, side=side, max_gib=max_gib)


def _folders_only(path, series):
    """--series chooses among the series of a DICOM folder; files in the same run (NIfTI, .npy, one DICOM) hold one."""
    return series if Path(path).is_dir() else None


def _npy_only(path, spacing):
    """--spacing-mm is for .npy inputs; DICOM and NIfTI inputs in the same run carry their own spacing."""
    return spacing if str(path).lower().endswith(".npy") else None


def failure_record(case: CaseInput, error: BaseException, *, model_sha256: str) -> dict[str, Any]:
    """The one record of a case that could not be predicted (docs/CONTRACTS.md). No patient identifiers: the key
    and source are the case id or input path the user gave."""
    from sranet import __version__

    return {
        "case": case.key,
        "source": display_source(case.source),
        "side": getattr(case.roi, "side", None),
        "error": type(error).__name__,
        "message": str(error),
        "model_sha256": model_sha256,
        "sranet_version": __version__,
    }


def records_for(case: CaseInput, result: Any, predictor: Predictor, *,
                heatmaps: Path | None = None) -> list[dict[str, Any]]:
    """The records one input yields: its success record (with heatmaps written to ``heatmaps`` when given; a
    heatmap that fails is a QC note, the prediction still stands) or its failure record; for a whole study
    (``StudyPrediction``, or the error reading it raised) one record per hip (``study_records``)."""
    from sranet.runtime.study import StudyPrediction, study_records

    if isinstance(result, StudyPrediction) or (case.roi_source == "auto" and case.roi is None):
        return study_records(result, case, predictor, heatmaps=heatmaps)
    if isinstance(result, Exception):
        return [failure_record(case, result, model_sha256=predictor.model_sha256)]
    record = result.to_record()
    if heatmaps is not None:
        from sranet.runtime.heatmap import write_heatmaps

        try:
            record["heatmaps"] = write_heatmaps(result, heatmaps, predictor.info.model.input_size)
        except (SranetError, OSError) as exc:
            record["qc"].append(f"heatmap_failed: {exc}")
    return [record]


@dataclass
class BatchSummary:
    """What one ``predict_batch`` run did, counted in records (one per case, or per hip of a whole study):
    ``predicted`` findings, ``refused`` sides without a femoral head or with metal near it (not errors: the answer
    is that there is none to give), ``failed`` errors; ``skipped`` inputs already recorded. ``truncated_bytes``: a
    partial last line an interrupted run had left, dropped before appending."""

    results: Path
    predicted: int = 0
    failed: int = 0
    skipped: int = 0
    truncated_bytes: int = 0
    refused: int = 0
    dicom_written: int = 0  # inputs whose DICOM objects were written (``dicom_out``)
    dicom_failed: int = 0  # inputs whose DICOM objects could not be written (their records say why)

    def count(self, records: list[dict[str, Any]]) -> None:
        from sranet.runtime.study import REFUSALS

        for r in records:
            if "error" not in r:
                self.predicted += 1
            elif r["error"] in REFUSALS:
                self.refused += 1
            else:
                self.failed += 1


def check_heatmaps_dir(heatmaps: Path | None) -> None:
    """``heatmaps`` names a folder (made when missing); an existing file there is an InputError."""
    if heatmaps is not None and heatmaps.exists() and not heatmaps.is_dir():
        raise InputError(f"--heatmaps {heatmaps} is a file; it names a folder for the PNG and NIfTI maps.",
                         hint="Give a folder path (it is created if missing).")


def predict_batch(predictor: Predictor, cases: list[CaseInput], out: str | os.PathLike, *, batch: int = 1,
                  retry_failed: bool = False, heatmaps: Path | None = None, heatmap_limit: int | None = None,
                  annotate: Callable[[CaseInput], dict[str, Any]] | None = None,
                  progress: bool = False, predict_metal: bool = False,
                  dicom_out: Path | None = None, prefetch: int = 0) -> BatchSummary:
    """Predict ``cases`` into the JSON Lines file ``out``; return what was done.

    Inputs already recorded in ``out`` are skipped (with ``retry_failed``, those recorded with an error are tried
    again; the new record supersedes the old). ``heatmaps``: folder for each success's overlay PNG and NIfTI map
    (a whole study: one PNG with its overview and both hips), for the first ``heatmap_limit`` successes of this run
    (None: all). ``batch``: cases (or hips) per backend call (at most ``limits.MAX_BATCH``). ``predict_metal``:
    predict a hip with metal near its head too (flagged ``metal_near_head``) instead of refusing it. ``dicom_out``:
    folder for each DICOM input's SR and attention maps (``sranet.runtime.dicom_out.cases``; a failure there is
    recorded in the input's records and the batch goes on). ``prefetch``: inputs read ahead while the backend
    infers (``sranet.runtime.study.predict_cases``). InputError when ``out`` is locked by another run or is not a
    regular file.
    """
    from sranet.runtime.study import predict_cases

    check_batch(batch)
    heatmaps = Path(heatmaps) if heatmaps is not None else None
    check_heatmaps_dir(heatmaps)
    with ResultsWriter(out, retry_failed=retry_failed) as writer:
        todo = [c for c in cases if c.key not in writer.done]
        summary = BatchSummary(Path(out), skipped=len(cases) - len(todo), truncated_bytes=writer.truncated_bytes)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), unit="case", desc="predict")
        try:
            for case, result in predict_cases(predictor, todo, batch=batch, predict_metal=predict_metal,
                                              overview=heatmaps is not None, prefetch=prefetch):
                want_maps = heatmap_limit is None or summary.predicted < heatmap_limit
                records = records_for(case, result, predictor, heatmaps=heatmaps if want_maps else None)
                for record in records:
                    record.update(annotate(case) if annotate is not None else {})
                if dicom_out is not None:
                    _add_dicom_outputs(case, result, records, predictor, dicom_out, summary)
                try:
                    writer.encode(records)
                except InputError as exc:  # never stop the batch on one record: the case is recorded as failed
                    result = exc
                    records = records_for(case, exc, predictor)
                writer.write(records)
                summary.count(records)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
    return summary


def _add_dicom_outputs(case: CaseInput, result: Any, records: list[dict[str, Any]], predictor: Predictor,
                       folder: Path, summary: BatchSummary) -> None:
    """The ``dicom_out`` hook: write the input's DICOM objects and say so in each of its records."""
    from sranet.runtime.dicom_out.cases import write_case_outputs

    written = write_case_outputs(case, result, records, predictor, folder)
    for record in records:
        record["dicom_out"] = written
        if "error" in written and "qc" in record and "error" not in record:
            record["qc"].append(f"dicom_out_failed: {written['error']}")
    summary.dicom_written += "files" in written
    summary.dicom_failed += "error" in written


__all__ = ["WHOLE", "BatchSummary", "cases_from", "check_heatmaps_dir", "failure_record", "predict_batch", "records_for"]
