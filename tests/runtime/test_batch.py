"""Batch prediction as a library: cases from inputs and manifests, one failure schema, resumable runs, and several
records per input written (and resumed) as one."""

from __future__ import annotations

import numpy as np
import pytest

from sranet.errors import InputError
from sranet.runtime.batch import cases_from, failure_record, predict_batch
from sranet.runtime.predictor import CaseInput
from sranet.runtime.results import ResultsWriter, read_results
from tests.helpers import phantom_hu

pytest.importorskip("torch")  # the shared tiny_artifacts are exported from PyTorch


@pytest.fixture
def volumes(tmp_path):
    paths = []
    for n in range(3):
        path = tmp_path / f"v{n}.npy"
        np.save(path, phantom_hu((24, 40, 40), seed=n))
        paths.append(path)
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not an array")
    return paths, bad


def test_cases_from_inputs_and_a_manifest_split(tmp_path, volumes):
    paths, _ = volumes
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"case_id,path,split,roi,side\na,{paths[0]},test,,\nb,{paths[1]},train,,\n"
                        f"c,{paths[2]},test,\"0:24,0:40,0:40\",L\n")
    cases = cases_from([paths[1]], manifest=manifest, split="test", spacing_mm=(1.0, 1.0, 1.0))
    assert [c.key for c in cases][1:] == ["a", "c"] and cases[0].key.startswith("path-")
    assert cases[2].roi.side == "L" and all(c.spacing_mm == (1.0, 1.0, 1.0) for c in cases)
    with pytest.raises(InputError, match="no inputs given"):
        cases_from([])
    with pytest.raises(InputError, match="same case key"):
        cases_from([paths[0], paths[0]])


def test_one_failure_schema():
    record = failure_record(CaseInput("scan/folder", case_id="hip 7"), InputError("bad ROI"), model_sha256="ab" * 32)
    assert record == {"case": "hip_7", "source": "scan/folder", "side": None, "error": "InputError",
                      "message": "bad ROI", "model_sha256": "ab" * 32, "sranet_version": record["sranet_version"]}


def test_predict_batch_records_resumes_and_annotates(tmp_path, predictor, volumes):
    paths, bad = volumes
    cases = cases_from([*paths, bad], spacing_mm=(1.0, 1.0, 1.0), roi="whole")  # crops: the whole volume each
    out, maps = tmp_path / "r.jsonl", tmp_path / "maps"
    summary = predict_batch(predictor, cases, out, batch=2, heatmaps=maps, heatmap_limit=1,
                            annotate=lambda case: {"note": case.key[:5]})
    assert (summary.predicted, summary.failed, summary.skipped) == (3, 1, 0)
    records, _ = read_results(out)
    assert [r["case"] for r in records] == [c.key for c in cases] and all(r["note"] == "path-" for r in records)
    assert sum("heatmaps" in r for r in records) == 1 and len(list(maps.glob("*.png"))) == 1
    assert records[3]["error"] == "UnsupportedFormatError" and records[3]["model_sha256"] == predictor.model_sha256
    again = predict_batch(predictor, cases, out)
    assert (again.predicted, again.failed, again.skipped) == (0, 0, 4)
    retried = predict_batch(predictor, cases, out, retry_failed=True)
    assert (retried.predicted, retried.failed, retried.skipped) == (0, 1, 3)


def test_the_records_of_one_input_go_in_one_write_and_resume_together(tmp_path):
    out = tmp_path / "r.jsonl"
    with ResultsWriter(out) as w:
        w.write([{"case": "study_L", "input": "study", "probability": 0.2},
                 {"case": "study_R", "input": "study", "probability": 0.9}])
        w.write({"case": "other", "error": "VolumeError"})
        assert w.done == {"study", "other"}
    with ResultsWriter(out, retry_failed=True) as w:
        assert w.done == {"study"}
    with ResultsWriter(out) as w, pytest.raises(InputError, match="needs a 'case' key"):
        w.write([{"input": "x"}])
