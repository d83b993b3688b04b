"""The node with its default processor (a model artifact): a phantom pelvis study goes Orthanc -> sranet -> Orthanc,
and the SR, the attention maps and the overview that arrive say what `sranet predict` says about the same series."""

from __future__ import annotations

import io
import json

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from sranet.cli.main import app
from tests.helpers import PATIENT_ID, PATIENT_NAME
from tests.node.conftest import health, spool_is_clean, wait_until
from tests.node.study import pelvis_study
from tests.runtime.dicom_out.builders import pixel_positions, sr_hips

pytest.importorskip("torch")  # the shared tiny_artifacts are exported from PyTorch

SR_CLASS, PM_CLASS, SC_CLASS = "1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.30", "1.2.840.10008.5.1.4.1.1.7"


@pytest.fixture(scope="module")
def processor(tiny_artifacts):
    from sranet.runtime.node.model_processor import ModelProcessor

    with ModelProcessor(tiny_artifacts[0], workers=1, threads=1) as p:
        yield p


def results_in(orthanc, study: str) -> dict[str, list[pydicom.Dataset]]:
    """The objects of ``study`` in Orthanc that are not CT, by SOP class UID."""
    out: dict[str, list[pydicom.Dataset]] = {}
    for modality, group in orthanc.series_by_modality(study).items():
        if modality == "CT":
            continue
        for series in group:
            for instance in series["Instances"]:
                ds = pydicom.dcmread(io.BytesIO(orthanc.instance_file(instance)))
                out.setdefault(str(ds.SOPClassUID), []).append(ds)
    return out


def predict_records(artifact, folder, tmp_path) -> dict[str, dict]:
    out = tmp_path / "predict.jsonl"
    result = CliRunner().invoke(app, ["predict", str(artifact), str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return {r["side"]: r for r in map(json.loads, out.read_text().splitlines())}


@pytest.mark.integration
def test_orthanc_round_trip_with_the_model(start_node, orthanc, processor, tiny_artifacts, tmp_path, caplog):
    """Two CT series in the study (3 mm and a 6 mm copy): the node predicts on the 3 mm one; the right hip has
    screws (refused), the left is assessed."""
    caplog.set_level("INFO", logger="sranet.node")
    thin, thick = pelvis_study(tmp_path / "study", 26, thick_copy=True, variant="screws", metal_side="R")
    node = start_node(processor)
    files = sorted(thin.glob("*.dcm")) + sorted(thick.glob("*.dcm"))
    source = pydicom.dcmread(files[0], stop_before_pixels=True)
    study = orthanc.upload(files)
    orthanc.send_to_node(study)
    [line] = wait_until(lambda: health(node.spool.root), 60, "the health line")
    assert line["state"] == "sent", line
    got = wait_until(lambda: (r := results_in(orthanc, study)).get(SR_CLASS) and r.get(PM_CLASS) and r.get(SC_CLASS)
                     and r, 30, "SR, map and capture in Orthanc")
    assert [len(got[c]) for c in (SR_CLASS, PM_CLASS, SC_CLASS)] == [1, 1, 1]
    expected = predict_records(tiny_artifacts[0], thin, tmp_path)

    # the SR: the same sides, probabilities and refusal reasons as `sranet predict` on the 3 mm series
    [sr] = got[SR_CLASS]
    assert sr.StudyInstanceUID == source.StudyInstanceUID
    [evidence] = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
    assert evidence.SeriesInstanceUID == source.SeriesInstanceUID and len(evidence.ReferencedSOPSequence) == 80
    hips = sr_hips(sr)
    assert set(hips) == set(expected) == {"L", "R"}
    assert "error" not in expected["L"] and expected["R"]["error"] == "MetalNearHeadError"
    assert hips["L"]["probability"] == pytest.approx(expected["L"]["probability"], abs=1e-6)
    assert hips["L"]["decision"] is expected["L"]["decision"] and hips["L"]["qc"] == expected["L"]["qc"]
    assert hips["R"]["not_assessed"][0] == f"MetalNearHeadError: {expected['R']['message']}"
    assert line["summary"]["hips"]["L"]["probability"] == expected["L"]["probability"]
    assert line["summary"]["hips"]["R"] == {"not_assessed": "MetalNearHeadError"}
    assert line["summary"]["series"]["candidates"] == 2 and line["summary"]["series"]["slices"] == 80

    # the map: on the 3 mm series' grid, its peak where the model's top patch is
    [pm] = got[PM_CLASS]
    assert pm.Laterality == "L" and pm.FrameOfReferenceUID == source.FrameOfReferenceUID
    positions, values = pixel_positions(pm)
    shared = pm.SharedFunctionalGroupsSequence[0]
    assert np.allclose(shared.PlaneOrientationSequence[0].ImageOrientationPatient, source.ImageOrientationPatient)
    assert np.allclose(shared.PixelMeasuresSequence[0].PixelSpacing, source.PixelSpacing)
    ct = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(thin.glob("*.dcm"))]
    ct_positions = np.array([ds.ImagePositionPatient for ds in ct], dtype=float)
    normal = np.cross(*np.array(source.ImageOrientationPatient, dtype=float).reshape(2, 3))
    along = {round(float(p @ normal), 3) for p in ct_positions}
    assert {round(float(p @ normal), 3) for p in positions[:, 0, 0]} <= along  # each frame on a 3 mm slice
    top = expected["L"]["top_patches"][0]
    nearest = np.unravel_index(np.argmin(np.linalg.norm(positions - np.array(top["patient_mm"]), axis=-1)),
                               values.shape)
    assert values[nearest] == pytest.approx(top["weight"], abs=1e-6)

    # nothing identifying in the logs or the health line; the spool keeps nothing of the study
    log = caplog.text + (node.spool.root / "health.jsonl").read_text()
    for secret in (PATIENT_NAME, PATIENT_ID, source.StudyInstanceUID, source.SeriesInstanceUID):
        assert secret not in log
    wait_until(lambda: spool_is_clean(node.spool.root), 20, "a clean spool")


@pytest.mark.integration
def test_a_study_without_hips_is_answered_and_a_study_without_ct_fails(start_node, processor, tmp_path):
    """An abdomen (no femoral head): an SR saying both hips were not assessed and why. Two slices only: no series
    the model can read, a logged per-study failure with the instances kept."""
    from tests.node.study import send

    node = start_node(processor)
    abdomen, _ = pelvis_study(tmp_path / "abdomen", 3, kind="abdomen")
    files = sorted(abdomen.glob("*.dcm"))
    assert set(send(files, node.port)) == {0}
    [line] = wait_until(lambda: health(node.spool.root), 60, "the health line")
    assert line["state"] == "sent" and line["results"] == 2  # SR and overview, no map
    assert line["summary"]["hips"] == {"L": {"not_assessed": "NoFemoralHeadError"},
                                       "R": {"not_assessed": "NoFemoralHeadError"}}
    short, _ = pelvis_study(tmp_path / "short", 4, slices=8)
    assert set(send(sorted(short.glob("*.dcm")), node.port)) == {0}
    wait_until(lambda: len(health(node.spool.root)) == 2, 60, "the second health line")
    failed = health(node.spool.root)[1]
    assert failed["state"] == "failed" and "no CT series the model can read" in failed["error"]
    assert "fewer than 16" in failed["error"]
    [kept] = wait_until(lambda: list(node.spool.failed.iterdir()), 20, "the failed round")
    assert len(list((kept / "instances").glob("*.dcm"))) == 8
