"""One Comprehensive 3D SR per study: a TID 1500 Measurement Report with every hip's finding.

Content tree (all coordinates SCOORD3D in the source series' frame of reference, LPS mm):

    Imaging Measurement Report (TID 1500), observer: the SRANet device, procedure: CT
    per assessed hip, a TID 1411 volumetric measurement group
        tracking identifier "<side> hip AVNFH" + UID; finding: Necrosis; finding site: Femoral head, laterality
        volume surface: the ROI box as its six faces (closed planar POLYGONs)
        algorithm identification (TID 4019): name, version, parameters "model_sha256=...", "artifact=..."
        Probability (DCM 122157, unit 1) and Threshold Value (DCM 122411, unit 1)
        qualitative evaluation: Necrosis = Present | Absent (the decision at the threshold)
        TEXT Quality Finding (DCM 111052) per QC flag
    per hip with a localised head: a group "<side> femoral head (localiser)", volume surface an ELLIPSOID (the
        sphere), Radius (mm) and the localisation confidence
    per top attention patch: a group "<side> hip attention patch k", volume surface the patch's box (six faces
        along the attention map's axes), Saliency (DCM 130404, unit 1) = the patch's attention weight
    per hip not assessed: a TID 1501 group with finding site and laterality and its reasons as Quality Finding text

Codes come from DCM, SCT and LOINC as pydicom's code dictionary carries them; the one concept none of them has
(the localiser's confidence) uses the private scheme ``99SRANET``, declared in the Coding Scheme Identification
Sequence. TID 1501 allows text answers to coded questions, which highdicom's templates do not expose: the QC text
items are highdicom ``TextContentItem`` objects appended to the group's content.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sranet.runtime.dicom_out.finding import AlgorithmInfo, AttentionPatch, HipFinding
from sranet.runtime.dicom_out.source import SourceSeries

PRIVATE_SCHEME = "99SRANET"


def box_faces(centre: np.ndarray, half_axes: np.ndarray) -> list[np.ndarray]:
    """The six faces of a box as closed polygons: (6) arrays of (5, 3) LPS points.

    centre     (3,) LPS mm; half_axes (3, 3): row a is the half edge vector along the box's axis a.
    """
    faces = []
    for a in range(3):
        u, v = half_axes[(a + 1) % 3], half_axes[(a + 2) % 3]
        for sign in (-1.0, 1.0):
            c = centre + sign * half_axes[a]
            ring = np.array([c - u - v, c + u - v, c + u + v, c - u + v, c - u - v])
            faces.append(ring)
    return faces


def _roi_faces(roi_mm) -> list[np.ndarray]:
    lo = np.array([r[0] for r in roi_mm], dtype=float)
    hi = np.array([r[1] for r in roi_mm], dtype=float)
    return box_faces((lo + hi) / 2, np.diag((hi - lo) / 2))


def _patch_faces(patch: AttentionPatch, axes: np.ndarray) -> list[np.ndarray]:
    half = (axes * (np.asarray(patch.size_mm) / 2)[None, :]).T  # row a: half edge along map axis a
    return box_faces(np.asarray(patch.centre_mm), half)


def _codes():
    from highdicom.sr import CodedConcept
    from pydicom.sr.codedict import codes

    return {
        "necrosis": codes.SCT.Necrosis,
        "femoral_head": codes.SCT.FemoralHead,
        "L": codes.SCT.Left,
        "R": codes.SCT.Right,
        "present": codes.SCT.Present,
        "absent": codes.SCT.Absent,
        "probability": codes.DCM.Probability,
        "threshold": codes.DCM.ThresholdValue,
        "saliency": codes.DCM.Saliency,
        "radius": codes.SCT.Radius,
        "quality_finding": codes.DCM.QualityFinding,
        "no_units": codes.UCUM.NoUnits,
        "mm": codes.UCUM.Millimeter,
        "procedure": codes.LN.CTUnspecifiedBodyRegion,
        "confidence": CodedConcept("LOCCONF", PRIVATE_SCHEME, "Femoral head localisation confidence"),
    }


def device_uid(algorithm: AlgorithmInfo) -> str:
    """A UID for the SRANet device observer, the same for every report made with the same model: a name-based
    UUID (RFC 4122 version 5) of the model's digest under the 2.25 arc (PS3.5 B.2)."""
    import uuid

    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, 'sranet device observer ' + algorithm.model_sha256).int}"


@dataclass(frozen=True)
class _Context:
    """What every measurement group of one report shares: codes, frame of reference, source series, algorithm."""

    codes: dict
    frame_uid: str
    source_series_uid: str
    algorithm_id: object  # highdicom AlgorithmIdentification


def _algorithm_id(algorithm: AlgorithmInfo):
    from highdicom.sr import AlgorithmIdentification

    return AlgorithmIdentification(
        name=algorithm.name, version=algorithm.version, manufacturer="sranet",
        parameters=[f"model_sha256={algorithm.model_sha256}", f"artifact={algorithm.artifact}"])


def _observer(algorithm: AlgorithmInfo):
    from highdicom.sr import DeviceObserverIdentifyingAttributes, ObserverContext
    from pydicom.sr.codedict import codes

    return ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=device_uid(algorithm), name=algorithm.name, manufacturer_name="sranet",
            model_name=f"{algorithm.name} {algorithm.version}"))


def _volume_surface(ctx: _Context, graphic_type: str, points):
    from highdicom.sr import SourceSeriesForSegmentation, VolumeSurface

    return VolumeSurface(graphic_type, points, ctx.frame_uid,
                         source_series=SourceSeriesForSegmentation(ctx.source_series_uid))


def _finding_sites(ctx: _Context, f: HipFinding):
    from highdicom.sr import FindingSite

    return [FindingSite(ctx.codes["femoral_head"], laterality=ctx.codes[f.side])]


def _tracking_id(identifier: str):
    import highdicom as hd
    from highdicom.sr import TrackingIdentifier

    return TrackingIdentifier(uid=hd.UID(), identifier=identifier)


def _add_quality_text(ctx: _Context, group, flags) -> None:
    from highdicom.sr import RelationshipTypeValues, TextContentItem

    for flag in flags:
        group[0].ContentSequence.append(TextContentItem(
            name=ctx.codes["quality_finding"], value=flag, relationship_type=RelationshipTypeValues.CONTAINS))


def _not_assessed_group(ctx: _Context, f: HipFinding):
    """TID 1501 group for a hip the model did not assess: finding site, laterality, QC reasons as text."""
    from highdicom.sr import MeasurementsAndQualitativeEvaluations

    group = MeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking_id(f"{f.side_name} hip not assessed"),
        finding_type=ctx.codes["necrosis"], finding_sites=_finding_sites(ctx, f), algorithm_id=ctx.algorithm_id)
    _add_quality_text(ctx, group, f.qc)
    return group


def _assessed_group(ctx: _Context, f: HipFinding):
    """TID 1411 group for an assessed hip: ROI box, probability, threshold, decision, QC flags as text."""
    from highdicom.sr import Measurement, QualitativeEvaluation, VolumetricROIMeasurementsAndQualitativeEvaluations

    c = ctx.codes
    group = VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking_id(f"{f.side_name} hip AVNFH"),
        referenced_volume_surface=_volume_surface(ctx, "POLYGON", _roi_faces(f.roi_mm)),
        finding_type=c["necrosis"], finding_sites=_finding_sites(ctx, f), algorithm_id=ctx.algorithm_id,
        measurements=[
            Measurement(c["probability"], round(f.probability, 6), c["no_units"]),
            Measurement(c["threshold"], round(f.threshold, 6), c["no_units"]),
        ],
        qualitative_evaluations=[
            QualitativeEvaluation(c["necrosis"], c["present"] if f.decision else c["absent"])])
    _add_quality_text(ctx, group, f.qc)
    return group


def _head_group(ctx: _Context, f: HipFinding):
    """The localised femoral head: an ELLIPSOID (the sphere), its radius and the localisation confidence."""
    from highdicom.sr import Measurement, VolumetricROIMeasurementsAndQualitativeEvaluations

    c = ctx.codes
    centre, r = np.asarray(f.head.centre_mm), f.head.radius_mm
    axes = np.eye(3) * r
    ellipsoid = np.array([centre - axes[0], centre + axes[0], centre - axes[1], centre + axes[1],
                          centre - axes[2], centre + axes[2]])
    return VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking_id(f"{f.side_name} femoral head (localiser)"),
        referenced_volume_surface=_volume_surface(ctx, "ELLIPSOID", ellipsoid),
        finding_type=c["femoral_head"], finding_sites=_finding_sites(ctx, f), algorithm_id=ctx.algorithm_id,
        measurements=[Measurement(c["radius"], round(r, 3), c["mm"]),
                      Measurement(c["confidence"], round(f.head.confidence, 6), c["no_units"])])


def _patch_groups(ctx: _Context, f: HipFinding) -> list:
    """One group per top attention patch: the patch's box and its attention weight as Saliency."""
    from highdicom.sr import Measurement, VolumetricROIMeasurementsAndQualitativeEvaluations

    axes = f.attention.axes if f.attention is not None else np.eye(3)
    return [VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking_id(f"{f.side_name} hip attention patch {k}"),
        referenced_volume_surface=_volume_surface(ctx, "POLYGON", _patch_faces(patch, axes)),
        finding_sites=_finding_sites(ctx, f), algorithm_id=ctx.algorithm_id,
        measurements=[Measurement(ctx.codes["saliency"], round(patch.weight, 6), ctx.codes["no_units"])])
        for k, patch in enumerate(f.top_patches, start=1)]


def _finding_groups(ctx: _Context, f: HipFinding) -> list:
    """The measurement groups one hip contributes, in report order."""
    if f.probability is None:
        return [_not_assessed_group(ctx, f)]
    groups = [_assessed_group(ctx, f)]
    if f.head is not None:
        groups.append(_head_group(ctx, f))
    groups.extend(_patch_groups(ctx, f))
    return groups


def build_sr(source: SourceSeries, findings: list[HipFinding], algorithm: AlgorithmInfo, *,
             series_uid: str, sop_uid: str, series_number: int, now=None):
    """Build the Comprehensive 3D SR (a highdicom ``Comprehensive3DSR``, i.e. a pydicom Dataset)."""
    from highdicom.coding_schemes import CodingSchemeIdentificationItem
    from highdicom.sr import Comprehensive3DSR, MeasurementReport, ObservationContext

    ctx = _Context(codes=_codes(), frame_uid=source.frame_of_reference_uid,
                   source_series_uid=source.series_uid, algorithm_id=_algorithm_id(algorithm))
    groups = [group for f in findings for group in _finding_groups(ctx, f)]
    report = MeasurementReport(
        observation_context=ObservationContext(observer_device_context=_observer(algorithm)),
        procedure_reported=ctx.codes["procedure"], imaging_measurements=groups)
    return Comprehensive3DSR(
        evidence=list(source.datasets), content=report[0], series_instance_uid=series_uid,
        series_number=series_number, sop_instance_uid=sop_uid, instance_number=1, manufacturer="sranet",
        is_complete=True, is_final=False, is_verified=False,
        series_description=f"{algorithm.name} AVNFH findings", manufacturer_model_name=algorithm.name,
        software_versions=algorithm.version,
        coding_schemes=[CodingSchemeIdentificationItem(
            designator=PRIVATE_SCHEME, name="sranet private codes", responsible_organization="sranet")],
        content_date=now.date() if now else None, content_time=now.time() if now else None)
