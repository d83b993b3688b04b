"""Whole study in, one record per hip out (sranet.runtime.study): sides from the truth, refusals without a femoral
head or with metal, a hip out of view, a head cut by the scan's edge padded, hips of several studies batched, and
crops that match a ROI-limited read."""

from __future__ import annotations

import numpy as np
import pytest

from sranet.runtime.io import load_volume
from sranet.runtime.predictor import CaseInput
from sranet.runtime.preprocess import preprocess
from sranet.runtime.roi import parse_roi
from sranet.runtime.roi_crop import crop_roi
from sranet.runtime.study import predict_cases, predict_study, study_records
from tests.helpers import write_pelvis_study

pytest.importorskip("torch")  # the shared tiny_artifacts are exported from PyTorch


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """Whole-pelvis phantoms as .npy + geometry sidecar: {name: (path, PelvisStudy)}."""
    root = tmp_path_factory.mktemp("studies")
    specs = {"normal": dict(seed=31, patient_position="HFS", stages={"L": 4, "R": 0}),
             "abdomen": dict(seed=3, kind="abdomen"),
             "screws": dict(seed=26, variant="screws", metal_side="L"),
             "one_hip": dict(seed=41, variant="hip_out_of_fov"),
             "head_cut": dict(seed=60, variant="head_cut")}
    return {name: write_pelvis_study(root / name, dicom=False, **kw) for name, kw in specs.items()}


def _by_side(records):
    return {r["side"]: r for r in records}


def test_both_hips_predicted_with_the_localiser_fields(predictor, studies):
    path, study = studies["normal"]
    records = predict_study(predictor, path, case_id="S1")
    assert [r["case"] for r in records] == ["S1_L", "S1_R"] and {r["input"] for r in records} == {"S1"}
    for side, r in _by_side(records).items():
        assert "error" not in r and 0.0 <= r["probability"] <= 1.0 and r["input_records"] == 2
        assert r["roi_source"] == "auto" and r["roi"].startswith("mm:") and parse_roi(r["roi"]).side is None
        assert np.linalg.norm(np.subtract(r["localiser"]["centre_mm"], study.hips[side].centre_mm)) <= 5.0
        assert 0.6 <= r["localiser"]["confidence"] <= 1.0 and r["localiser"]["qc"] == []
        assert {"read", "locate", "preprocess", "infer", "post"} == set(r["timings_ms"])
        assert "no_roi" not in r["qc"]
    # each hip's top patch lies in its own ROI, on its own side of the patient
    for r in records:
        x = r["top_patches"][0]["patient_mm"][0]
        lo, hi = parse_roi(r["roi"]).lo[0], parse_roi(r["roi"]).hi[0]
        assert lo - 1 <= x <= hi + 1


def test_a_study_without_hips_yields_no_probability(predictor, studies):
    records = predict_study(predictor, studies["abdomen"][0], case_id="A")
    assert [r["side"] for r in records] == ["L", "R"]
    for r in records:
        assert r["error"] == "NoFemoralHeadError" and "probability" not in r
        assert r["message"].startswith("no femoral head found: ")


def test_metal_side_is_skipped_unless_asked_for(predictor, studies):
    path, _ = studies["screws"]
    default = _by_side(predict_study(predictor, path))
    assert default["L"]["error"] == "MetalNearHeadError" and "metal_near_head" in default["L"]["qc"]
    assert "--predict-metal" in default["L"]["message"] and "probability" not in default["L"]
    assert "probability" in default["R"] and "metal_near_head" not in default["R"]["qc"]
    forced = _by_side(predict_study(predictor, path, predict_metal=True))
    assert "probability" in forced["L"] and "metal_near_head" in forced["L"]["qc"]
    assert forced["L"]["localiser"]["qc"] == default["L"]["localiser"]["qc"]


def test_one_hip_out_of_view_gives_one_result_and_one_refusal(predictor, studies):
    path, study = studies["one_hip"]
    seen = next(side for side, h in study.hips.items() if h.visibility == "full")
    records = _by_side(predict_study(predictor, path))
    assert "probability" in records[seen]
    other = records["R" if seen == "L" else "L"]
    assert other["error"] == "NoFemoralHeadError" and other["message"].startswith("no femoral head found")
    # a manifest row that names the missing side gets just that refusal
    only = predict_study(predictor, path, case_id="row7", side="R" if seen == "L" else "L")
    assert [r["case"] for r in only] == ["row7"] and only[0]["error"] == "NoFemoralHeadError"


def test_a_head_cut_by_the_edge_is_predicted_padded_and_flagged(predictor, studies):
    path, study = studies["head_cut"]
    cases = [CaseInput(path, roi_source="auto")]
    (_, outcome), = list(predict_cases(predictor, cases))
    cut = [side for side, p in outcome.sides.items() if hasattr(p, "probability") and "roi_truncated" in p.qc]
    assert cut
    for side in cut:
        pred = outcome.sides[side]
        roi = parse_roi(pred.roi)
        extent = np.asarray(pred.volume.shape) * np.asarray(pred.volume.spacing_mm)
        assert np.all(extent >= np.subtract(roi.hi, roi.lo).min() - 3.0)  # the crop spans the whole ROI
        start = np.asarray(pred.volume.index_offset)
        stop = start + pred.volume.shape
        outside = np.zeros(pred.volume.shape, bool)  # crop voxels beyond the series: padding
        for a in range(3):
            idx = np.arange(start[a], stop[a])
            shape = [1, 1, 1]
            shape[a] = -1
            outside |= ((idx < 0) | (idx >= study.hu.shape[a])).reshape(shape)
        assert outside.any() and np.all(pred.volume.hu[outside] == predictor.info.preprocess.pad_value_hu)


def test_hips_of_several_studies_share_batches_and_keep_their_order(predictor, studies):
    names = ["normal", "abdomen", "screws"]
    cases = [CaseInput(studies[n][0], case_id=n, roi_source="auto") for n in names]
    one = [study_records(o, c, predictor) for c, o in predict_cases(predictor, cases, batch=1)]
    four = [study_records(o, c, predictor) for c, o in predict_cases(predictor, cases, batch=4)]
    assert [[r["case"] for r in rs] for rs in four] == [[f"{n}_L", f"{n}_R"] for n in names]
    for a, b in zip(one, four, strict=True):
        for ra, rb in zip(a, b, strict=True):
            assert ("probability" in ra) == ("probability" in rb)
            if "probability" in ra:
                assert ra["probability"] == pytest.approx(rb["probability"], abs=1e-5)
    assert max(r.get("batch_size", 0) for rs in four for r in rs) > 1


def test_an_unreadable_study_fails_each_side(predictor, tmp_path):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not an array")
    records = predict_study(predictor, bad, case_id="B")
    assert [r["case"] for r in records] == ["B_L", "B_R"]
    assert all(r["error"] == "UnsupportedFormatError" and r["input_records"] == 2 for r in records)


def test_a_crop_inside_the_scan_is_what_a_roi_limited_read_gives(studies, predictor):
    path, study = studies["normal"]
    cfg = predictor.info.preprocess
    x, y, z = study.hips["L"].centre_mm
    roi = parse_roi(f"mm:{x - 30}:{x + 30},{y - 30}:{y + 30},{z - 30}:{z + 30}")
    whole = load_volume(path)
    crop, truncated = crop_roi(whole, roi, cfg.pad_value_hu)
    limited = load_volume(path, roi=roi)
    assert not truncated and crop.shape == limited.shape and crop.index_offset == limited.index_offset
    np.testing.assert_array_equal(crop.hu, limited.hu)
    np.testing.assert_allclose(preprocess(crop, cfg, roi).input, preprocess(whole, cfg, roi).input, atol=1e-5)
    # reaching past the scan: padded to the ROI's full extent, flagged
    top = whole.index_to_patient(np.array([0.0, 0.0, 0.0]))
    past = parse_roi(f"mm:{top[0] - 20}:{top[0] + 40},{top[1] - 20}:{top[1] + 40},{top[2] - 30}:{top[2] + 30}")
    padded, truncated = crop_roi(whole, past, -1000.0)
    assert truncated and "roi_truncated" in padded.qc and min(padded.index_offset) < 0


def test_manifest_rows_of_one_study_share_its_read(predictor, studies, monkeypatch):
    import sranet.runtime.io as io

    path, _ = studies["normal"]
    reads = []
    real = io.load_volume
    monkeypatch.setattr(io, "load_volume", lambda p, **kw: (reads.append(p), real(p, **kw))[1])
    rows = [CaseInput(path, case_id=f"hip_{side}", roi_source="auto", side=side) for side in ("L", "R")]
    records = [r for c, o in predict_cases(predictor, rows, batch=2) for r in study_records(o, c, predictor)]
    assert [(r["case"], r["side"]) for r in records] == [("hip_L", "L"), ("hip_R", "R")]
    assert len(reads) == 1 and all("probability" in r for r in records)


def _comparable(records):
    """Records without what varies from run to run (timings)."""
    return [{k: v for k, v in r.items() if k not in ("timings_ms",)} for r in records]


@pytest.mark.parametrize("batch", [1, 3])
def test_prefetch_gives_the_same_records_in_the_same_order(predictor, studies, tmp_path, batch):
    """Reading ahead on a background thread changes neither the outcomes nor their order: whole studies, a study
    without hips, a ROI case, an unreadable file and two rows of one study that share its read."""
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not an array")
    path, study = studies["normal"]
    x, y, z = study.hips["R"].centre_mm
    cases = [CaseInput(studies["screws"][0], case_id="screws", roi_source="auto"),
             CaseInput(bad, case_id="bad", roi_source="auto"),
             CaseInput(path, case_id="roi", roi=parse_roi(f"mm:{x - 30}:{x + 30},{y - 30}:{y + 30},{z - 30}:{z + 30}")),
             CaseInput(studies["abdomen"][0], case_id="abdomen", roi_source="auto"),
             *[CaseInput(path, case_id=f"hip_{s}", roi_source="auto", side=s) for s in ("L", "R")]]

    def run(prefetch):
        out = []
        for case, outcome in predict_cases(predictor, cases, batch=batch, prefetch=prefetch):
            if hasattr(outcome, "to_record"):
                out.append([outcome.to_record()])
            else:
                out.append(study_records(outcome, case, predictor))
        return [_comparable(rs) for rs in out]

    assert run(2) == run(0)


def test_prefetch_reads_ahead_while_a_case_is_handed_out_and_stops_when_closed(predictor, studies, monkeypatch):
    import threading

    import sranet.runtime.io as io

    path, _ = studies["normal"]
    reads, real = [], io.load_volume
    monkeypatch.setattr(io, "load_volume", lambda p, **kw: (reads.append(threading.current_thread().name),
                                                             real(p, **kw))[1])
    # six reads of one study (another memory budget each, so no row reuses the read before it)
    cases = [CaseInput(path, case_id=f"s{i}", roi_source="auto", max_gib=4.0 + i) for i in range(6)]
    outcomes = predict_cases(predictor, cases, prefetch=2)
    first = next(outcomes)
    assert first[0].case_id == "s0"
    outcomes.close()  # the reader stops: nothing past the window is read
    assert 1 <= len(reads) <= 4 and all(name.startswith("sranet-prefetch") for name in reads)


def test_prefetch_out_of_range_is_refused(predictor, studies):
    from sranet.errors import InputError

    with pytest.raises(InputError, match="prefetch=9 must be an integer from 0 to 8"):
        list(predict_cases(predictor, [], prefetch=9))

