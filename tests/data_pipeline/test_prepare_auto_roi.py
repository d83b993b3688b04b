"""`sranet prepare` on whole-pelvis studies: rows with a side and no roi are cropped around the femoral head the
localiser finds (recorded as roi_auto), each study read once for its hips, lesion crops placed by their lesion_box,
and a side without a head is a failure with the localiser's reason."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest

from sranet.config import PreprocessConfig
from sranet.data.prepare import prepare_cache
from sranet.data.synthetic_pelvis_dataset import read_truth, write_pelvis_dataset
from sranet.runtime.io import load_volume
from sranet.runtime.localise import locate_femoral_heads
from sranet.runtime.manifest import read_manifest
from sranet.runtime.preprocess import preprocess, resample
from tests.helpers import PELVIS_GRID, write_pelvis_study

CFG = PreprocessConfig(output_size=32)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("pelvis")
    manifest = write_pelvis_dataset(root, 2, seed=5, negatives=0.0, grid=PELVIS_GRID,
                                    stage_mix={3: 0.5, 4: 0.5})
    return root, manifest


def _rows(cache):
    with open(cache / "cases.csv", newline="") as fh:
        return {r["case_id"]: r for r in csv.DictReader(fh)}


@pytest.mark.integration
def test_rows_without_roi_are_cropped_around_the_located_head(dataset, tmp_path, monkeypatch):
    import sranet.runtime.io as io

    root, manifest = dataset
    reads = []
    real = io.load_volume
    monkeypatch.setattr(io, "load_volume", lambda path, **kw: (reads.append(str(path)), real(path, **kw))[1])
    cache = tmp_path / "cache"
    result = prepare_cache(manifest, cache, CFG)
    cases = read_manifest(manifest)
    assert result.ok and sorted(result.auto_roi) == sorted(c.case_id for c in cases)
    assert len(reads) == len({c.path for c in cases})  # each study read once for its hips
    rows = _rows(cache)
    truth = {t["case_id"]: t for t in read_truth(root / "truth.csv")}
    for case in cases:
        assert "roi_auto" in rows[case.case_id]["qc"].split(";")
        meta = json.loads((cache / "meta" / f"{case.case_id}.json").read_text())
        head = meta["roi"]["localiser"]
        t = truth[case.case_id]
        assert meta["roi"]["source"] == "auto" and head["side"] == case.side
        assert np.linalg.norm(np.subtract(head["centre_mm"], [t["centre_x_mm"], t["centre_y_mm"], t["centre_z_mm"]])) <= 5

    # the lesion crop, placed by its lesion_box on the whole series and resampled through the prediction's plan,
    # is the cached lesion
    case = cases[0]
    volume = load_volume(case.path)
    head = locate_femoral_heads(volume, preprocess=CFG).heads[case.side]
    full = np.zeros(volume.shape, np.float32)
    (d0, d1), (h0, h1), (w0, w1) = truth[case.case_id]["lesion_box"]
    full[d0:d1, h0:h1, w0:w1] = np.load(case.lesion_mask)
    plan = preprocess(volume, CFG, roi=head.roi).plan
    expected = resample(full, plan, dataclasses.replace(CFG, interpolation="nearest", pad_value_hu=0.0)) > 0.5
    cached = np.load(cache / rows[case.case_id]["lesion"])
    assert cached.any() and np.array_equal(cached.astype(bool), expected)
    np.testing.assert_allclose(np.load(cache / rows[case.case_id]["volume"]), preprocess(volume, CFG, head.roi).input,
                               atol=1e-5)

    again = prepare_cache(manifest, cache, CFG)
    assert len(again.skipped) == len(cases) and not again.done and len(again.auto_roi) == len(cases)


def test_a_side_without_a_head_is_a_failure_with_the_reason(tmp_path):
    root = tmp_path / "ds"
    study_path, study = write_pelvis_study(root / "one_hip", 41, variant="hip_out_of_fov")
    seen = next(side for side, h in study.hips.items() if h.visibility == "full")
    missing = "R" if seen == "L" else "L"
    manifest = root / "m.csv"
    manifest.write_text(f"case_id,path,stage,side\nseen,{study_path},0,{seen}\nmissing,{study_path},2,{missing}\n"
                        f"crop,{study_path},0,\n")
    result = prepare_cache(manifest, tmp_path / "cache", CFG)
    assert sorted(result.done) == ["crop", "seen"] and result.auto_roi == ["seen"]
    (failure,) = result.failures
    assert failure["case_id"] == "missing" and failure["error"] == "NoFemoralHeadError"
    assert failure["message"].startswith("no femoral head found")
    rows = _rows(tmp_path / "cache")
    assert "roi_auto" not in rows["crop"]["qc"]  # no side, no roi: the whole volume, as for crops
