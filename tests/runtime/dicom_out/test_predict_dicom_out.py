"""`sranet predict --dicom-out DIR`: a folder per DICOM input named by its key, objects that pass dciodvfy and say
what the records say; a note for a NIfTI/.npy input; a failure to write recorded while the batch goes on."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from sranet.cli.main import app
from sranet.runtime.results import case_key
from tests.helpers import PATIENT_ID, PATIENT_NAME, write_pelvis_study
from tests.runtime.dicom_out.builders import sr_hips
from tests.runtime.dicom_out.conftest import run_tool
from tests.runtime.dicom_out.test_validation import EXPECTED_WARNINGS

pytest.importorskip("torch")  # the shared tiny_artifacts are exported from PyTorch
pytest.importorskip("highdicom")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    return {"pelvis": write_pelvis_study(root / "DOE^JANE_pelvis", 32, patient_position="FFS")[0],
            "screws": write_pelvis_study(root / "screws", 26, variant="screws", metal_side="R")[0],
            "abdomen": write_pelvis_study(root / "abdomen", 3, dicom=False, kind="abdomen")[0]}


@pytest.mark.integration
def test_dicom_out_per_input_valid_and_matching_the_records(tmp_path, tiny_artifacts, inputs):
    out, dicom = tmp_path / "r.jsonl", tmp_path / "dicom"
    blocked = dicom / case_key(None, inputs["screws"])  # a file where the screws study's folder would go
    dicom.mkdir()
    blocked.write_text("in the way")
    paths = [str(inputs[k]) for k in ("pelvis", "screws", "abdomen")]
    result = CliRunner().invoke(app, ["predict", str(tiny_artifacts[0]), *paths, "--out", str(out),
                                      "--dicom-out", str(dicom), "--heatmaps", str(tmp_path / "maps")])
    assert result.exit_code == 0, result.output
    assert "DICOM results of 1 inputs" in result.output and "1 could not be written" in result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    by_input: dict[str, list[dict]] = {}
    for r in records:
        by_input.setdefault(r["input"], []).append(r)
    pelvis, screws, abdomen = (by_input[case_key(None, inputs[k])] for k in ("pelvis", "screws", "abdomen"))

    # the DICOM study: SR, both maps, the overview capture, in a folder named by its key
    written = pelvis[0]["dicom_out"]
    assert all(r["dicom_out"] == written for r in pelvis)
    assert written["files"] == ["sr.dcm", "attention_right.dcm", "attention_left.dcm", "overview.dcm"]
    folder = dicom / pelvis[0]["input"]
    assert written["folder"] == str(folder) and sorted(p.name for p in folder.iterdir()) == sorted(written["files"])
    names = " ".join(str(p.relative_to(tmp_path)) for p in dicom.rglob("*"))
    assert "DOE" not in names and PATIENT_NAME not in names and PATIENT_ID not in names
    for name in written["files"]:
        check = run_tool("dciodvfy", str(folder / name))
        lines = [line.strip() for line in (check.stdout + check.stderr).splitlines() if line.strip()]
        assert not [line for line in lines if line.startswith("Error")], (name, lines)
        assert {line for line in lines if line.startswith("Warning")} <= EXPECTED_WARNINGS
    hips = sr_hips(folder / "sr.dcm")
    for r in pelvis:
        assert hips[r["side"]]["probability"] == pytest.approx(r["probability"], abs=1e-6)
        assert hips[r["side"]]["decision"] is r["decision"] and hips[r["side"]]["threshold"] == r["threshold"]
    source = pydicom.dcmread(next(inputs["pelvis"].glob("*.dcm")), stop_before_pixels=True)
    sr = pydicom.dcmread(folder / "sr.dcm")
    assert sr.StudyInstanceUID == source.StudyInstanceUID and sr.SeriesInstanceUID != source.SeriesInstanceUID

    # writing failed for the screws study: recorded on its records, its prediction stands
    for r in screws:
        assert r["dicom_out"]["error"] in ("FileExistsError", "NotADirectoryError")
        if "error" not in r:
            assert "probability" in r and r["qc"][-1].startswith("dicom_out_failed: ")
    assert blocked.read_text() == "in the way"

    # a .npy input: a note, not a failure
    for r in abdomen:
        assert r["error"] == "NoFemoralHeadError" and "DICOM source" in r["dicom_out"]["note"]


@pytest.mark.integration
def test_a_rerun_replaces_the_folder_objects(tmp_path, tiny_artifacts, inputs):
    """--retry-failed predicts a refused study again: its folder then holds that run's objects only."""
    out, dicom = tmp_path / "r.jsonl", tmp_path / "dicom"
    args = ["predict", str(tiny_artifacts[0]), str(inputs["screws"]), "--out", str(out), "--dicom-out", str(dicom)]
    assert CliRunner().invoke(app, args).exit_code == 0
    folder = dicom / case_key(None, inputs["screws"])
    first = {p.name: pydicom.dcmread(p).SOPInstanceUID for p in folder.iterdir()}
    assert sorted(first) == ["attention_left.dcm", "sr.dcm"]  # the right hip refused for metal: no map
    stale = folder / "attention_right.dcm"  # as if an earlier run had assessed the right hip
    stale.write_bytes((folder / "attention_left.dcm").read_bytes())
    result = CliRunner().invoke(app, [*args, "--retry-failed"])
    assert result.exit_code == 0, result.output
    second = {p.name: pydicom.dcmread(p).SOPInstanceUID for p in folder.iterdir()}
    assert sorted(second) == ["attention_left.dcm", "sr.dcm"]
    assert not set(first.values()) & set(second.values())  # new objects, new UIDs
    assert np.all([r["dicom_out"]["files"] == ["sr.dcm", "attention_left.dcm"]
                   for r in map(json.loads, out.read_text().splitlines()[-2:])])
