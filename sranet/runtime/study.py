"""Whole study in, one finding per hip out: read the study once, find the femoral heads, predict each hip.

``predict_study(predictor, source)`` does it for one study and returns its result records (the function a DICOM
node's processor calls); ``predict_cases`` does it for many inputs, batching the hips of several studies into one
backend call, and is what ``sranet.runtime.batch.predict_batch`` (``sranet predict``) runs. Torch-free.

Per whole study (a ``CaseInput`` with ``roi_source="auto"`` and no ROI):

1. **read**: ``load_volume`` once. Every slice is decoded once: the localiser reads most of a series (every k-th
   slice for its coarse copy, then full-resolution neighbourhoods of a dozen candidate spheres spread over the
   pelvis), so a second, ROI-limited read would decode most slices twice; each hip is cut out of the study in
   memory instead.
2. **locate**: ``locate_femoral_heads`` with the artifact's ``PreprocessConfig`` (its ``roi_margin_mm`` sizes each
   hip's ROI as training cropped it).
3. **per side** (both, or the one a manifest row names): no head -> a ``NoFemoralHeadError`` refusal carrying the
   localiser's reason; metal near the head -> a ``MetalNearHeadError`` refusal unless ``predict_metal``; otherwise
   the hip's ROI is cut out of the study in memory (``sranet.runtime.roi_crop``: padded where it reaches past the
   scan, flagged ``roi_truncated``) and preprocessed.
4. **infer** the hips, with other inputs' hips up to ``batch`` per backend call, and post-process.

Each side gives one record (``study_records``): a success record (``roi_source`` "auto", ``roi`` in mm, the
localiser's centre, radius, confidence and flags under ``localiser``) or a failure record whose ``error`` names the
refusal or the error. Records of one study carry its key as ``input``; a hip's ``case`` is ``<input>_<side>`` (a
manifest row that names its side keeps its own id). Schemas: docs/CONTRACTS.md.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sranet.config import PreprocessConfig
from sranet.errors import InputError, MetalNearHeadError, NoFemoralHeadError, SranetError
from sranet.runtime.limits import check_prefetch
from sranet.runtime.localise import SIDE_NAMES, SIDES, Localisation, LocaliserSettings, locate_femoral_heads
from sranet.runtime.localise_roi import FemoralHead
from sranet.runtime.predictor import CaseInput, Prediction, Predictor, PreparedCase, display_source
from sranet.runtime.prefetch import read_ahead
from sranet.runtime.volume import Volume

REFUSALS = (NoFemoralHeadError.__name__, MetalNearHeadError.__name__)


# -- reading and locating ---------------------------------------------------------------------------------------
@dataclass
class LocatedStudy:
    """A whole study read once, and its femoral heads. ``timings_ms``: "read" and "locate"."""

    volume: Volume
    localisation: Localisation
    timings_ms: dict[str, float]


def locate_study(source: str | os.PathLike | Volume, *, series: str | None = None,
                 spacing_mm: tuple[float, float, float] | None = None, preprocess: PreprocessConfig | None = None,
                 settings: LocaliserSettings | None = None, max_gib: float | None = None) -> LocatedStudy:
    """Read ``source`` (DICOM folder or file, NIfTI, .npy, or a Volume in memory) whole and find its femoral heads;
    ``preprocess`` gives each head's ROI margin, ``max_gib`` the read's memory budget (``load_volume``). Raises
    what ``load_volume`` raises; a study without a head is not an error (``localisation.reasons`` says why)."""
    t0 = time.perf_counter()
    if isinstance(source, Volume):
        volume = source
    else:
        from sranet.runtime.io import load_volume

        volume = load_volume(source, series=series, spacing_mm=spacing_mm, max_gib=max_gib)
    t1 = time.perf_counter()
    loc = locate_femoral_heads(volume, settings=settings, preprocess=preprocess)
    return LocatedStudy(volume, loc, {"read": (t1 - t0) * 1e3, "locate": (time.perf_counter() - t1) * 1e3})


@dataclass(frozen=True)
class HipChoice:
    """One side of a located study: its head, and why it is not predicted (``refusal``) where it is not; a side
    refused for metal near its head has both."""

    side: str
    head: FemoralHead | None
    refusal: SranetError | None


def choose_hips(loc: Localisation, sides: Iterable[str] = SIDES, *, predict_metal: bool = False) -> list[HipChoice]:
    """Which of ``sides`` to predict: a side without a head is refused with the localiser's reason
    (NoFemoralHeadError); one with metal near its head (``metal_near_head``) is refused (MetalNearHeadError)
    unless ``predict_metal``."""
    out = []
    for side in sides:
        head = loc.heads.get(side)
        if head is None:
            reason = loc.reasons.get(side) or f"no femoral head found on the {SIDE_NAMES[side]}"
            out.append(HipChoice(side, None, NoFemoralHeadError(reason)))
        elif "metal_near_head" in head.qc and not predict_metal:
            out.append(HipChoice(side, head, MetalNearHeadError(
                f"metal (a prosthesis or screws) in or next to the {SIDE_NAMES[side]} femoral head: not predicted, "
                "since HU near metal are unreliable.",
                hint="Use it anyway with sranet predict --predict-metal (sranet prepare and sranet locate: "
                     "--include-metal); the result keeps the metal_near_head flag.")))
        else:
            out.append(HipChoice(side, head, None))
    return out


def locate_rows(case: CaseInput, located: LocatedStudy, *, include_metal: bool = False,
                base: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """What ``sranet locate`` writes for one study: manifest rows (``sranet.runtime.manifest.COLUMNS``) for the
    heads found, each with ``case_id`` (``hip_key``), ``side``, ``roi`` (mm), ``confidence`` and ``qc``; and
    {side: why there is no row} for the others (no head; metal near it unless ``include_metal``). ``base``: the
    other columns of each row (path, and a manifest row's own columns)."""
    rows, notes = [], {}
    for choice in choose_hips(located.localisation, (case.side,) if case.side else SIDES,
                              predict_metal=include_metal):
        if choice.refusal is not None:
            notes[choice.side] = choice.refusal.message
            continue
        head = choice.head
        rows.append({**(base or {}), "case_id": hip_key(case, choice.side), "side": choice.side,
                     "roi": head.roi.text(), "confidence": round(head.confidence, 3), "qc": ";".join(head.qc)})
    return rows, notes


def hip_key(case: CaseInput, side: str) -> str:
    """The ``case`` of one hip's record: a manifest row that names its side keeps its id; else ``<input>_<side>``."""
    return case.key if case.side is not None else f"{case.key}_{side}"


def localiser_fields(head: FemoralHead) -> dict[str, Any]:
    """The head as a record shows it under ``localiser``."""
    d = head.to_dict()
    return {"centre_mm": d["centre_mm"], "radius_mm": d["radius_mm"], "confidence": d["confidence"], "qc": d["qc"]}


# -- predicting ---------------------------------------------------------------------------------------------------
@dataclass
class StudyPrediction:
    """What one whole study gave. ``sides``: per side asked for (patient L, R order), a ``Prediction``, or the
    refusal or error that stands instead; ``heads`` the localiser's heads (also those not predicted);
    ``overview`` a coronal slice for the heatmap (``sranet.runtime.heatmap.Overview``) when asked for."""

    case: CaseInput
    localisation: Localisation
    sides: dict[str, Prediction | Exception]
    timings_ms: dict[str, float]
    overview: Any = None
    pending: dict[str, PreparedCase] = field(default_factory=dict, repr=False)  # hips read, not yet inferred
    located: LocatedStudy | None = field(default=None, repr=False)  # until inferred, for the study's next row

    @property
    def heads(self) -> dict[str, FemoralHead]:
        return self.localisation.heads


def read_study(predictor: Predictor, case: CaseInput, *, predict_metal: bool = False,
               settings: LocaliserSettings | None = None, overview: bool = False,
               located: LocatedStudy | None = None) -> StudyPrediction:
    """Steps 1-3 of the module docstring for one whole study: the hips to infer are in ``pending``, the refusals
    already in ``sides``. ``located``: the study already read and located (another row of it). Raises what reading
    the study raises."""
    cfg = predictor.info.preprocess
    if located is None:
        located = locate_study(case.source, series=case.series, spacing_mm=case.spacing_mm, preprocess=cfg,
                               settings=settings, max_gib=case.max_gib)
    loc, volume = located.localisation, located.volume
    study = StudyPrediction(case, loc, {}, dict(located.timings_ms), located=located)
    if overview:
        from sranet.runtime.heatmap import study_overview

        study.overview = study_overview(volume, loc)
    for choice in choose_hips(loc, (case.side,) if case.side else SIDES, predict_metal=predict_metal):
        if choice.refusal is not None:
            study.sides[choice.side] = choice.refusal
            continue
        head = choice.head
        hip_case = CaseInput(case.source, case_id=hip_key(case, choice.side), roi=head.roi, series=case.series,
                             spacing_mm=case.spacing_mm, roi_source="auto", side=choice.side, max_gib=case.max_gib)
        try:  # the hip is cut out of the study in memory (sranet.runtime.roi_crop), padded past the scan's edge
            prepared = predictor.prepare_volume(hip_case, volume, head.roi, dict(located.timings_ms))
        except ImportError:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded against this side; the other hip goes on
            study.sides[choice.side] = exc
            continue
        prepared.extra_qc = list(head.qc)
        prepared.localiser = localiser_fields(head)
        prepared.input = case.key
        study.pending[choice.side] = prepared
    return study


def predict_cases(predictor: Predictor, cases: Iterable[CaseInput], *, batch: int = 1, predict_metal: bool = False,
                  settings: LocaliserSettings | None = None, overview: bool = False,
                  prefetch: int = 0) -> Iterator[tuple[CaseInput, Prediction | StudyPrediction | Exception]]:
    """Yield ``(case, outcome)`` in input order; up to ``batch`` hips or cases per backend call.

    A case with a ROI, or "whole", gives a ``Prediction`` or the exception it raised (as ``predict_many``); a whole
    study (``roi_source="auto"``, no ROI) a ``StudyPrediction`` (or the exception reading it raised). Consecutive
    cases of the same study (manifest rows of its two hips) share one read. A missing package (ImportError) stops
    the run. ``overview``: keep a coronal slice of each study for its heatmap.

    ``prefetch``: read and preprocess up to this many cases ahead on one background thread while the backend infers
    the current batch (0: one after the other). File reading, decompression and numpy release the GIL, and so does
    the backend, so the two overlap; each case read ahead holds its volume (a whole study: all of it) until its
    hips are inferred, so memory grows by about ``prefetch`` cases. Outcomes and their order do not change.
    """
    if not isinstance(batch, int) or batch < 1:
        raise InputError(f"batch={batch!r} must be a positive integer.")
    check_prefetch(prefetch)
    read = _CaseReader(predictor, predict_metal=predict_metal, settings=settings, overview=overview)
    units: list[tuple[CaseInput, Any]] = []
    items: list[PreparedCase] = []
    for case, unit in read_ahead(read, cases, prefetch):
        units.append((case, unit))
        if isinstance(unit, StudyPrediction):
            items.extend(unit.pending.values())
        elif isinstance(unit, PreparedCase):
            items.append(unit)
        if len(items) >= batch or not items:
            yield from _finish(predictor, units, items, batch)
            units, items = [], []
    yield from _finish(predictor, units, items, batch)


class _CaseReader:
    """Read and preprocess one case (a whole study: read, locate, cut out its hips); a failure is returned as the
    exception, except ImportError. Calls must come in input order (one thread): consecutive rows of the same study
    reuse the study read last."""

    def __init__(self, predictor: Predictor, *, predict_metal: bool, settings: LocaliserSettings | None,
                 overview: bool):
        self.predictor, self.predict_metal, self.settings, self.overview = predictor, predict_metal, settings, overview
        self.last: tuple[Any, LocatedStudy] | None = None

    def __call__(self, case: CaseInput) -> StudyPrediction | PreparedCase | Exception:
        try:
            if case.roi_source == "auto" and case.roi is None:
                same = _study_id(case)
                last = self.last
                located = last[1] if last is not None and same is not None and last[0] == same else None
                unit = read_study(self.predictor, case, predict_metal=self.predict_metal, settings=self.settings,
                                  overview=self.overview, located=located)
                self.last = (same, unit.located) if same is not None else None
                return unit
            return self.predictor.prepare(case)
        except ImportError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure is recorded against its case; the run goes on
            return exc


def _study_id(case: CaseInput) -> tuple | None:
    """What identifies a study on disk (path, series, spacing); None for a Volume in memory."""
    if isinstance(case.source, Volume):
        return None
    return (os.path.abspath(os.fspath(case.source)), case.series, case.spacing_mm, case.max_gib)


def _finish(predictor: Predictor, units: list, items: list[PreparedCase], batch: int) -> Iterator[tuple]:
    """Infer ``items`` and hand each unit its outcome, in order."""
    done: dict[int, Prediction | Exception] = {}
    if items:
        results = [r for _, r in predictor.predict_prepared(((p.case, p) for p in items), batch=batch)]
        done = {id(p): r for p, r in zip(items, results, strict=True)}
    for case, unit in units:
        if isinstance(unit, StudyPrediction):
            outcomes = {**unit.sides, **{side: done[id(p)] for side, p in unit.pending.items()}}
            unit.sides = {side: outcomes[side] for side in SIDES if side in outcomes}
            unit.pending, unit.located = {}, None
            yield case, unit
        elif isinstance(unit, PreparedCase):
            yield case, done[id(unit)]
        else:
            yield case, unit


# -- records ------------------------------------------------------------------------------------------------------
def side_failure_record(case: CaseInput, side: str, error: BaseException, *, model_sha256: str,
                        head: FemoralHead | None = None) -> dict[str, Any]:
    """The record of one side of a whole study that has no prediction: a refusal (``NoFemoralHeadError``,
    ``MetalNearHeadError``) or an error. With the head the localiser found (metal), its ROI, flags and numbers."""
    from sranet import __version__

    record: dict[str, Any] = {"case": hip_key(case, side), "input": case.key, "source": display_source(case.source),
                              "side": side, "roi_source": "auto"}
    if head is not None:
        record.update(roi=head.roi.text() if head.roi else None, localiser=localiser_fields(head), qc=list(head.qc))
    record.update(error=type(error).__name__, message=str(error), model_sha256=model_sha256,
                  sranet_version=__version__)
    return record


def study_records(study: StudyPrediction | Exception, case: CaseInput, predictor: Predictor, *,
                  heatmaps: Path | None = None) -> list[dict[str, Any]]:
    """One record per side asked for (docs/CONTRACTS.md). A study that could not be read gives each side a failure
    record with that error, so a rerun with ``--retry-failed`` supersedes them all. ``heatmaps``: folder for the
    study's PNG (overview with both boxes, then each hip's attention) and each hip's attention NIfTI; a heatmap that
    fails is a QC note on the predictions."""
    sha = predictor.model_sha256
    if isinstance(study, Exception):
        records = [side_failure_record(case, side, study, model_sha256=sha)
                   for side in ((case.side,) if case.side else SIDES)]
        return [{**r, "input_records": len(records)} for r in records]
    maps: dict[str, dict[str, str]] = {}
    note = None
    if heatmaps is not None:
        from sranet.runtime.heatmap import write_study_heatmaps

        try:
            maps = write_study_heatmaps(study, heatmaps, predictor.info.model.input_size)
        except (SranetError, OSError) as exc:
            note = f"heatmap_failed: {exc}"
    records = []
    for side, outcome in study.sides.items():
        if isinstance(outcome, Prediction):
            record = outcome.to_record()
            if note:
                record["qc"].append(note)
        else:
            record = side_failure_record(case, side, outcome, model_sha256=sha, head=study.heads.get(side))
        if side in maps:
            record["heatmaps"] = maps[side]
        records.append(record)
    for record in records:  # resume: the study is done when all of them are in the file
        record["input_records"] = len(records)
    return records


def predict_study(predictor: Predictor, source: str | os.PathLike | Volume, *, case_id: str | None = None,
                  series: str | None = None, spacing_mm: tuple[float, float, float] | None = None,
                  side: str | None = None, predict_metal: bool = False, heatmaps: str | os.PathLike | None = None,
                  settings: LocaliserSettings | None = None) -> list[dict[str, Any]]:
    """One whole study -> one record per hip (both sides, or ``side`` only): its finding, or why there is none.

    source      a DICOM series folder (or file), NIfTI, .npy (with ``spacing_mm``) or a Volume in memory.
    case_id     the key records use (``<case_id>_<side>``); default a hash of the path (never a DICOM tag).
    heatmaps    folder for the study's PNG and each hip's attention NIfTI (paths in the records' ``heatmaps``).
    Never raises for what the study holds: an unreadable study, a side without a femoral head or with metal near
    it, each gives a failure record naming the reason. A missing package (ImportError) does raise.
    """
    case = CaseInput(source, case_id=case_id, series=series, spacing_mm=spacing_mm, roi_source="auto", side=side)
    folder = Path(heatmaps) if heatmaps is not None else None
    records: list[dict[str, Any]] = []
    for c, outcome in predict_cases(predictor, [case], batch=2, predict_metal=predict_metal, settings=settings,
                                    overview=folder is not None):
        records.extend(study_records(outcome, c, predictor, heatmaps=folder))
    return records


@dataclass
class StudyOutcome:
    """``predict_study``'s records and the in-memory result they were made from.

    records     what ``predict_study`` returns: one record per side (JSON-able, schemas in docs/CONTRACTS.md).
    prediction  the ``StudyPrediction`` (per side a ``Prediction``, with its attention grid, ``ResamplePlan`` and
                the hip's crop, or the refusal or error standing instead), or the exception reading the study
                raised. What the DICOM writers need (``sranet.runtime.dicom_out.study_findings``) without a trip
                through JSON.
    """

    records: list[dict[str, Any]]
    prediction: StudyPrediction | Exception


def predict_study_outcome(predictor: Predictor, source: str | os.PathLike | Volume, *, case_id: str | None = None,
                          series: str | None = None, spacing_mm: tuple[float, float, float] | None = None,
                          side: str | None = None, predict_metal: bool = False,
                          heatmaps: str | os.PathLike | None = None, settings: LocaliserSettings | None = None,
                          max_gib: float | None = None) -> StudyOutcome:
    """``predict_study`` (same arguments, same records), keeping the in-memory result next to the records; a
    study's coronal overview is kept too when ``heatmaps`` is given. ``max_gib``: the read's memory budget."""
    case = CaseInput(source, case_id=case_id, series=series, spacing_mm=spacing_mm, roi_source="auto", side=side,
                     max_gib=max_gib)
    folder = Path(heatmaps) if heatmaps is not None else None
    [(c, outcome)] = list(predict_cases(predictor, [case], batch=2, predict_metal=predict_metal, settings=settings,
                                        overview=folder is not None))
    return StudyOutcome(study_records(outcome, c, predictor, heatmaps=folder), outcome)


__all__ = ["REFUSALS", "HipChoice", "LocatedStudy", "StudyOutcome", "StudyPrediction", "choose_hips", "hip_key",
           "locate_rows", "locate_study", "predict_cases", "predict_study", "predict_study_outcome", "read_study",
           "side_failure_record", "study_records"]
