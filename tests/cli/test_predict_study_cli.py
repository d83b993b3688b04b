"""`sranet predict` on whole studies (no --roi) and `sranet locate`: one record per hip with the localiser's
findings, refusals without a femoral head (phantom and real CT), `--predict-metal`, `--roi whole`, resume of a
per-hip study, the study heatmap, and the boxes CSV read back as a manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sranet.cli.main import app
from sranet.runtime.manifest import read_manifest
from sranet.runtime.roi import parse_roi
from tests.helpers import PATIENT_ID, PATIENT_NAME, REAL_CT, write_pelvis_study

pytest.importorskip("torch")  # the shared tiny_artifacts are exported from PyTorch

runner = CliRunner()


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """A DICOM study in a folder named after the patient, a study without hips (.npy), one with screws (.npy)."""
    root = tmp_path_factory.mktemp("studies")
    pelvis = write_pelvis_study(root / "DOE^JANE_pelvis", 32, patient_position="FFS", stages={"L": 2, "R": 0})
    abdomen = write_pelvis_study(root / "abdomen", 3, dicom=False, kind="abdomen")
    screws = write_pelvis_study(root / "screws", 26, dicom=False, variant="screws", metal_side="R")
    return {"pelvis": pelvis, "abdomen": abdomen, "screws": screws}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_whole_studies_give_one_record_per_hip_and_resume(tmp_path, tiny_artifacts, studies):
    (pelvis, truth), (abdomen, _) = studies["pelvis"], studies["abdomen"]
    out, maps = tmp_path / "r.jsonl", tmp_path / "maps"
    args = ["predict", str(tiny_artifacts[0]), str(pelvis), str(abdomen), "--out", str(out), "--heatmaps",
            str(maps), "--batch", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output  # refusals are answers, not failures
    assert "2 predicted, 0 failed, 2 refused" in result.output
    lines = _lines(out)
    assert [r["side"] for r in lines] == ["L", "R", "L", "R"]
    hips, refused = lines[:2], lines[2:]
    for r in hips:
        assert r["roi_source"] == "auto" and r["roi"].startswith("mm:") and 0 <= r["probability"] <= 1
        centre = truth.hips[r["side"]].centre_mm
        assert np.linalg.norm(np.subtract(r["localiser"]["centre_mm"], centre)) <= 5.0
        assert Path(r["heatmaps"]["png"]).name == f"{r['input']}_study.png"
        assert Path(r["heatmaps"]["nifti"]).name == f"{r['case']}_attention.nii.gz"
    for r in refused:
        assert r["error"] == "NoFemoralHeadError" and "probability" not in r and "no femoral head found" in r["message"]
    assert hips[0]["input"] == hips[1]["input"] != refused[0]["input"]
    names = " ".join(p.name for p in maps.iterdir())
    assert PATIENT_NAME not in names and "DOE" not in names and PATIENT_ID not in out.read_text()

    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "0 predicted, 0 failed, 2 already in r.jsonl (skipped)" in again.output

    # a crash in the middle of the abdomen study's write: its L line whole, its R line cut -> the study is redone
    data = out.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    out.write_bytes(data[: last + 30])
    resumed = runner.invoke(app, args)
    assert "dropped a partial last line" in resumed.output and "2 refused" in resumed.output
    latest = {r["case"]: r for r in _lines(out)}
    assert len(latest) == 4 and len(_lines(out)) == 5  # the redone L line supersedes the first


def test_metal_side_is_refused_unless_predict_metal(tmp_path, tiny_artifacts, studies):
    path, _ = studies["screws"]
    out = tmp_path / "r.jsonl"
    result = runner.invoke(app, ["predict", str(tiny_artifacts[0]), str(path), "--out", str(out)])
    assert result.exit_code == 0 and "1 predicted, 0 failed, 1 refused" in result.output, result.output
    right = next(r for r in _lines(out) if r["side"] == "R")
    assert right["error"] == "MetalNearHeadError" and "metal_near_head" in right["qc"]
    out2 = tmp_path / "r2.jsonl"
    forced = runner.invoke(app, ["predict", str(tiny_artifacts[0]), str(path), "--out", str(out2),
                                 "--predict-metal"])
    assert forced.exit_code == 0 and "2 predicted" in forced.output
    right = next(r for r in _lines(out2) if r["side"] == "R")
    assert "probability" in right and "metal_near_head" in right["qc"]


def test_roi_overrides_and_whole_is_flagged(tmp_path, tiny_artifacts, studies):
    pelvis, truth = studies["pelvis"]
    x, y, z = truth.hips["L"].centre_mm
    out = tmp_path / "r.jsonl"
    roi = f"mm:{x - 30}:{x + 30},{y - 30}:{y + 30},{z - 30}:{z + 30}"
    manual = runner.invoke(app, ["predict", str(tiny_artifacts[0]), str(pelvis), "--out", str(out), "--roi", roi])
    assert manual.exit_code == 0, manual.output
    (r,) = _lines(out)
    assert r["roi_source"] == "manual" and "localiser" not in r and "no_roi" not in r["qc"]
    given, used = parse_roi(roi), parse_roi(r["roi"])
    np.testing.assert_allclose([given.lo, given.hi], [used.lo, used.hi], atol=1e-3)
    out2 = tmp_path / "w.jsonl"
    whole = runner.invoke(app, ["predict", str(tiny_artifacts[0]), str(pelvis), "--out", str(out2), "--roi", "whole"])
    assert whole.exit_code == 0, whole.output
    (w,) = _lines(out2)
    assert w["roi_source"] == "whole" and w["roi"] is None and "no_roi" in w["qc"]


def test_manifest_rows_with_a_side_and_no_roi_are_located(tmp_path, tiny_artifacts, studies):
    pelvis, truth = studies["pelvis"]
    x, y, z = truth.hips["R"].centre_mm
    box = f"mm:{x - 30}:{x + 30},{y - 30}:{y + 30},{z - 30}:{z + 30}"
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"case_id,path,side,roi\nhipL,{pelvis},L,\nboxR,{pelvis},R,\"{box}\"\n")
    out = tmp_path / "r.jsonl"
    result = runner.invoke(app, ["predict", str(tiny_artifacts[0]), "--manifest", str(manifest), "--out", str(out)])
    assert result.exit_code == 0, result.output
    by_case = {r["case"]: r for r in _lines(out)}
    assert by_case["hipL"]["roi_source"] == "auto" and by_case["hipL"]["side"] == "L" and "localiser" in by_case["hipL"]
    assert by_case["boxR"]["roi_source"] == "manifest" and by_case["boxR"]["side"] == "R"


def test_real_abdomen_without_hips_gets_no_prediction(tmp_path, tiny_artifacts):
    """The TotalSegmentator abdominal CT (tests/data/realct/totalsegmentator, see its LICENSE): kidneys and lumbar
    spine, no femoral head. Without --roi it used to be answered with a probability; now each side is refused."""
    out = tmp_path / "r.jsonl"
    nii = REAL_CT / "totalsegmentator" / "example_ct_sm.nii.gz"
    result = runner.invoke(app, ["predict", str(tiny_artifacts[0]), str(nii), "--out", str(out)])
    assert result.exit_code == 0 and "0 predicted, 0 failed, 2 refused" in result.output, result.output
    lines = _lines(out)
    assert len(lines) == 2 and all(r["error"] == "NoFemoralHeadError" and "probability" not in r for r in lines)


@pytest.mark.integration
def test_locate_writes_boxes_that_read_back_as_a_manifest(tmp_path, studies):
    (pelvis, truth), (abdomen, _) = studies["pelvis"], studies["abdomen"]
    out = tmp_path / "boxes.csv"
    result = runner.invoke(app, ["locate", str(pelvis), str(abdomen), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 studies located: 2 box(es), 2 side(s) without one" in result.output
    assert "no femoral head found" in result.output
    cases = read_manifest(out)
    assert [c.side for c in cases] == ["L", "R"] and all(c.path == pelvis.resolve() for c in cases)
    for c in cases:
        box = np.array([[float(v) for v in part.split(":")] for part in c.roi[3:].split(",")])
        assert np.linalg.norm(box.mean(axis=1) - truth.hips[c.side].centre_mm) <= 5.0
        assert 0.6 <= c.confidence <= 1.0 and c.case_id.startswith("path-") and c.case_id.endswith(f"_{c.side}")
    overviews = sorted(p.name for p in (tmp_path / "boxes_overview").iterdir())
    assert len(overviews) == 2 and not any("DOE" in n for n in overviews)
    again = runner.invoke(app, ["locate", str(pelvis), "--out", str(out)])
    assert again.exit_code == 1 and "--overwrite" in again.output

    # the boxes as a manifest: labels added by hand, then predicted with their boxes (roi_source manifest)
    labelled = tmp_path / "labelled.csv"
    text = out.read_text().splitlines()
    labelled.write_text("\n".join([text[0] + ",label"] + [line + ",0" for line in text[1:]]) + "\n")
    assert [c.label for c in read_manifest(labelled, require_labels=True)] == [0, 0]


def test_locate_keeps_a_manifest_rows_columns(tmp_path, studies):
    pelvis, _ = studies["pelvis"]
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"case_id,path,stage,split,side\nh1,{pelvis},3,train,L\n")
    out = tmp_path / "boxes.csv"
    result = runner.invoke(app, ["locate", "--manifest", str(manifest), "--out", str(out), "--roi-margin-mm", "8"])
    assert result.exit_code == 0, result.output
    (case,) = read_manifest(out, require_labels=True)
    assert (case.case_id, case.stage, case.label, case.split, case.side) == ("h1", 3, 1, "train", "L")
    box = np.array([[float(v) for v in part.split(":")] for part in case.roi[3:].split(",")])
    assert np.ptp(box, axis=1).min() > 2 * (18 + 8)  # head radius (>= 18 mm) plus the 8 mm margin on each side
