"""From a study's in-memory predictions to HipFindings (sranet.runtime.dicom_out.from_results): the same numbers as
the records, the ROI, head and patches in LPS mm, the attention map on the prepared grid with its affine, refusals
as hips not assessed, and a Parametric Map that lands on the CT grid where the model looked."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from sranet.runtime.predictor import Prediction
from sranet.runtime.roi import parse_roi
from tests.helpers import write_pelvis_study
from tests.runtime.dicom_out.builders import pixel_positions, sr_hips

pytest.importorskip("torch")  # the shared tiny_artifacts are exported from PyTorch
pytest.importorskip("highdicom")


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("studies")
    return {"pelvis": write_pelvis_study(root / "pelvis", 32, patient_position="FFS", stages={"L": 2, "R": 0}),
            "screws": write_pelvis_study(root / "screws", 26, variant="screws", metal_side="R"),
            "abdomen": write_pelvis_study(root / "abdomen", 3, dicom=False, kind="abdomen")}


@pytest.fixture(scope="module")
def pelvis(predictor, studies):
    from sranet.runtime.dicom_out import study_findings
    from sranet.runtime.study import predict_study_outcome

    outcome = predict_study_outcome(predictor, studies["pelvis"][0], case_id="S")
    return outcome, study_findings(outcome.prediction)


def _strip(records):
    return [{k: v for k, v in r.items() if k != "timings_ms"} for r in records]


@pytest.mark.integration
def test_outcome_records_are_predict_studys(predictor, studies, pelvis):
    from sranet.runtime.study import predict_study

    outcome, _ = pelvis
    assert _strip(outcome.records) == _strip(predict_study(predictor, studies["pelvis"][0], case_id="S"))
    assert all(isinstance(p, Prediction) for p in outcome.prediction.sides.values())


def test_findings_carry_the_records_numbers_in_lps_mm(predictor, pelvis):
    outcome, findings = pelvis
    records = {r["side"]: r for r in outcome.records}
    assert [f.side for f in findings] == ["L", "R"]
    size, grid = predictor.info.model.input_size, predictor.info.model.grid
    for f in findings:
        r, prediction = records[f.side], outcome.prediction.sides[f.side]
        assert f.probability == pytest.approx(r["probability"], abs=1e-6) and f.threshold == r["threshold"]
        assert f.decision == r["decision"] and list(f.qc) == r["qc"]
        roi = parse_roi(r["roi"])
        assert np.allclose(np.array(f.roi_mm), np.c_[roi.lo, roi.hi], atol=0.01)
        assert np.allclose(f.head.centre_mm, r["localiser"]["centre_mm"], atol=0.01)
        assert f.head.radius_mm == pytest.approx(r["localiser"]["radius_mm"], abs=0.01)
        assert f.head.confidence == pytest.approx(r["localiser"]["confidence"], abs=1e-3)
        # the map: the grid spread over the prepared volume, placed by the plan
        amap = f.attention
        assert amap.weights.shape == (size,) * 3
        assert np.allclose(amap.affine, prediction.prepared.plan.output_to_patient(prediction.volume))
        p = size // grid
        assert np.allclose(amap.weights[::p, ::p, ::p][amap.weights[::p, ::p, ::p] > 0],
                           prediction.attention[amap.weights[::p, ::p, ::p] > 0])
        # the top patches: the records' patches at full precision, edges of S/P prepared voxels
        assert len(f.top_patches) == len(r["top_patches"]) == predictor.top_k
        voxel_mm = np.linalg.norm(amap.affine[:3, :3], axis=0)
        for patch, rec in zip(f.top_patches, r["top_patches"], strict=True):
            assert np.allclose(patch.centre_mm, rec["patient_mm"], atol=0.01)
            assert patch.weight == pytest.approx(rec["weight"], abs=1e-6)
            assert np.allclose(patch.size_mm, voxel_mm * p)
            # the map holds the patch's weight at its centre
            inverse = np.linalg.inv(amap.affine)
            idx = np.rint(inverse[:3, :3] @ patch.centre_mm + inverse[:3, 3]).astype(int)
            assert amap.weights[tuple(idx)] == pytest.approx(patch.weight, abs=1e-6)
            # and the patch lies in the ROI box (its centre at least)
            assert np.all(np.array(patch.centre_mm) >= roi.lo) and np.all(np.array(patch.centre_mm) <= roi.hi)


def test_refused_hips_are_not_assessed_with_their_reasons(predictor, studies):
    from sranet.errors import InputError
    from sranet.runtime.dicom_out import study_findings
    from sranet.runtime.study import predict_study_outcome

    screws = predict_study_outcome(predictor, studies["screws"][0])
    by_side = {f.side: f for f in study_findings(screws.prediction)}
    record = {r["side"]: r for r in screws.records}["R"]
    right = by_side["R"]
    assert right.probability is None and right.attention is None and not right.top_patches
    assert right.qc[0] == f"MetalNearHeadError: {record['message']}" and "metal_near_head" in right.qc
    assert by_side["L"].probability is not None

    abdomen = predict_study_outcome(predictor, studies["abdomen"][0])
    for f, r in zip(study_findings(abdomen.prediction), abdomen.records, strict=True):
        assert f.probability is None and f.qc == (f"NoFemoralHeadError: {r['message']}",)

    unreadable = predict_study_outcome(predictor, studies["abdomen"][0].parent / "missing.npy")
    assert isinstance(unreadable.prediction, Exception) and all("error" in r for r in unreadable.records)
    with pytest.raises(InputError, match="could not be read"):
        study_findings(unreadable.prediction)


def test_parametric_maps_land_on_the_ct_grid_where_the_model_looked(predictor, studies, pelvis):
    from sranet.runtime.dicom_out import algorithm_info, build_dicom_outputs, read_source_series

    outcome, findings = pelvis
    folder = studies["pelvis"][0]
    outputs = build_dicom_outputs(read_source_series(folder), findings, algorithm_info(predictor))
    assert [o.role for o in outputs] == ["sr", "attention_right", "attention_left"]
    hips = sr_hips(outputs[0].dataset)
    for r in outcome.records:
        assert hips[r["side"]]["probability"] == pytest.approx(r["probability"], abs=1e-6)
        assert hips[r["side"]]["decision"] == r["decision"]
    ct = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(folder.glob("*.dcm"))]
    ct_z = {round(float(ds.ImagePositionPatient[2]), 3) for ds in ct}
    by_side = {f.side: f for f in findings}
    for output in outputs[1:]:
        pm = output.dataset
        finding = by_side[pm.Laterality]
        positions, values = pixel_positions(pm)
        shared = pm.SharedFunctionalGroupsSequence[0]
        assert np.allclose(shared.PlaneOrientationSequence[0].ImageOrientationPatient, ct[0].ImageOrientationPatient)
        assert np.allclose(shared.PixelMeasuresSequence[0].PixelSpacing, ct[0].PixelSpacing)
        assert {round(float(z), 3) for z in positions[:, 0, 0, 2]} <= ct_z  # every frame on a CT slice
        # the CT pixel nearest the top patch's centre carries that patch's weight
        top = finding.top_patches[0]
        nearest = np.unravel_index(np.argmin(np.linalg.norm(positions - np.array(top.centre_mm), axis=-1)),
                                   values.shape)
        assert values[nearest] == pytest.approx(top.weight, abs=1e-6)
        assert values.max() == pytest.approx(float(finding.attention.weights.max()), abs=1e-6)
