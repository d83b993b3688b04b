"""From a study's predictions to what the DICOM writers encode: one ``HipFinding`` per hip, and the model's
``AlgorithmInfo``. Torch-free; the one conversion ``sranet predict --dicom-out`` and ``sranet serve`` share.

The input is the in-memory result (``sranet.runtime.study.predict_study_outcome(...).prediction``, a
``StudyPrediction``), not the JSON records: the attention map needs the grid of weights, the ``ResamplePlan`` and
the hip's crop, which a record does not carry.

Per side of the study:

- a ``Prediction`` -> an assessed finding: probability, threshold and decision as the model gave them; the ROI box
  in LPS mm (the localiser's box, or a manual or manifest ROI's box); the localiser's head (centre, radius,
  confidence); the top attention patches (centre and edge lengths in mm along the map's axes, weight); the QC
  flags; and the attention map: the (P, P, P) grid spread over the prepared (S, S, S) volume (each patch a block of
  (S/P)^3 voxels), with the voxel -> LPS affine ``plan.output_to_patient(crop)``. Voxels the model saw as padding
  (outside the ROI's box in the crop: ``ResamplePlan.box``) get weight 0, as in the NIfTI heatmap.
- a refusal or an error -> a finding not assessed, whose QC text is the reason (the refusal's name and message:
  "NoFemoralHeadError: no femoral head found: ...") followed by the localiser's flags where it found a head (metal).
  Another library's error is named by its type only (its message may quote a tag's value).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from sranet.errors import InputError, SranetError
from sranet.runtime.dicom_out.finding import (
    MAX_QC_TEXT,
    AlgorithmInfo,
    AttentionMap,
    AttentionPatch,
    HeadLocation,
    HipFinding,
)

if TYPE_CHECKING:
    from sranet.runtime.predictor import Prediction, Predictor
    from sranet.runtime.study import StudyPrediction



def algorithm_info(predictor: Predictor) -> AlgorithmInfo:
    """The model's identification for the SR and every object's equipment module: SHA-256 of the artifact file
    (``Predictor.model_sha256``), the artifact's file name (no folders) and the sranet version."""
    from pathlib import Path

    return AlgorithmInfo(model_sha256=predictor.model_sha256, artifact=Path(predictor.backend.path).name)


def attention_map(prediction: Prediction) -> AttentionMap:
    """The prediction's attention as an (S, S, S) float32 volume on its prepared grid, with the (4, 4) voxel ->
    LPS mm affine of that grid (``ResamplePlan.output_to_patient`` of the hip's crop). Patch n of the (P, P, P)
    grid fills its (S/P)^3 block; voxels sampled outside the ROI's box (padding) are 0."""
    plan, volume = prediction.prepared.plan, prediction.volume
    grid = np.asarray(prediction.attention, dtype=np.float32)  # (P, P, P)
    size = int(plan.out_shape[0])
    p = size // grid.shape[0]
    weights = np.kron(grid, np.ones((p, p, p), np.float32))  # (S, S, S): patch [i, j, k] on its block
    inside = []
    for axis in range(3):
        x = plan.sample_positions(axis)  # input index sampled by each output voxel along this axis
        lo, hi = plan.box[axis]
        inside.append((x >= lo - 0.5) & (x <= hi - 0.5))
    weights[~(inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :])] = 0.0
    return AttentionMap(weights, plan.output_to_patient(volume))


def top_attention_patches(prediction: Prediction, affine: np.ndarray) -> tuple[AttentionPatch, ...]:
    """The prediction's top patches (its ``top_patches``, highest first) with centre and edge lengths in mm, at
    full precision from the map's ``affine`` (the records round to 0.01 mm)."""
    from sranet.runtime.patches import patch_centres

    grid = prediction.attention.shape[0]
    size = int(prediction.prepared.plan.out_shape[0])
    centres = patch_centres(grid, size)  # (P^3, 3) prepared voxels
    edge_mm = (size / grid) * np.linalg.norm(affine[:3, :3], axis=0)  # a patch's edge along each map axis
    flat = np.asarray(prediction.attention, dtype=float).reshape(-1)
    out = []
    for patch in prediction.top_patches:
        n = int(patch["patch"])
        centre = affine[:3, :3] @ centres[n] + affine[:3, 3]
        out.append(AttentionPatch(tuple(centre), tuple(edge_mm), float(np.clip(flat[n], 0.0, 1.0))))
    return tuple(out)


def _roi_mm(prediction: Prediction, head: Any) -> tuple | None:
    """The ROI as an LPS box: the head's mm ROI; else the prediction's ROI text (mm, or voxels mapped through the
    crop's geometry to the box their outer faces span)."""
    roi = getattr(head, "roi", None)
    if roi is None and prediction.roi is not None:
        from sranet.runtime.roi import parse_roi

        roi = parse_roi(prediction.roi)
    if roi is None:
        return None
    if roi.units == "mm":
        return tuple((float(lo), float(hi)) for lo, hi in zip(roi.lo, roi.hi, strict=True))
    volume = prediction.volume  # voxel ROIs are in full-series indices; the crop starts at index_offset
    lo = np.asarray(roi.lo, float) - np.asarray(volume.index_offset, float) - 0.5
    hi = np.asarray(roi.hi, float) - np.asarray(volume.index_offset, float) - 0.5
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
    mm = volume.index_to_patient(corners)
    return tuple((float(mm[:, a].min()), float(mm[:, a].max())) for a in range(3))


def _head(head: Any, localiser: dict[str, Any] | None) -> HeadLocation | None:
    if head is not None:
        return HeadLocation(tuple(head.centre_mm), head.radius_mm, min(1.0, max(0.0, head.confidence)))
    if localiser:
        return HeadLocation(tuple(localiser["centre_mm"]), localiser["radius_mm"],
                            min(1.0, max(0.0, localiser["confidence"])))
    return None


def _text(flag: str) -> str:
    flag = " ".join(str(flag).split())
    return flag if len(flag) <= MAX_QC_TEXT else flag[:MAX_QC_TEXT - 3] + "..."


def prediction_finding(side: str, prediction: Prediction, *, head: Any = None) -> HipFinding:
    """An assessed hip: ``prediction`` (a ``Prediction``) on ``side`` ("L" / "R"); ``head`` the localiser's
    ``FemoralHead`` where the ROI came from it (else the prediction's own ``localiser`` fields, if any)."""
    amap = attention_map(prediction)
    return HipFinding(
        side=side, probability=float(prediction.probability), threshold=float(prediction.threshold),
        decision=bool(prediction.decision), roi_mm=_roi_mm(prediction, head),
        head=_head(head, prediction.localiser), top_patches=top_attention_patches(prediction, amap.affine),
        qc=tuple(_text(f) for f in prediction.qc), attention=amap)


def refusal_finding(side: str, error: BaseException, *, head: Any = None) -> HipFinding:
    """A hip not assessed: its reason (``<Error>: <message>`` for sranet's own errors, the type for another
    library's, whose message may quote a tag) and the localiser's flags where it found a head."""
    reason = f"{type(error).__name__}: {error}" if isinstance(error, SranetError) else \
        f"{type(error).__name__} while processing this hip"
    flags = [_text(reason), *(_text(f) for f in getattr(head, "qc", ()) or ())]
    return HipFinding(side=side, probability=None, threshold=None, decision=None, qc=tuple(dict.fromkeys(flags)))


def study_findings(study: StudyPrediction) -> list[HipFinding]:
    """One ``HipFinding`` per side of a whole study (``StudyPrediction.sides``, patient L then R): assessed hips
    with their maps, refused or failed sides not assessed with their reasons. A study that could not be read at all
    (an exception instead of a ``StudyPrediction``) has no findings: raise it, or record it, instead."""
    from sranet.runtime.predictor import Prediction

    if isinstance(study, BaseException):
        raise InputError(f"the study could not be read ({type(study).__name__}); there are no findings to write.")
    findings = []
    for side, outcome in study.sides.items():
        head = study.heads.get(side)
        if isinstance(outcome, Prediction):
            findings.append(prediction_finding(side, outcome, head=head))
        else:
            findings.append(refusal_finding(side, outcome, head=head))
    return findings


__all__ = ["algorithm_info", "attention_map", "prediction_finding", "refusal_finding", "study_findings",
           "top_attention_patches"]
