"""Predictor: artifact alone -> probability, decision, attention grid, top patches in voxels and mm; batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sranet.errors import SranetError
from sranet.runtime.patches import patch_centres
from sranet.runtime.predictor import CaseInput, Predictor
from sranet.runtime.volume import Volume
from tests.helpers import (
    PATIENT_ID,
    PATIENT_NAME,
    REAL_CT,
    phantom_hu,
    unpack_ge_series,
    with_threshold,
    write_dicom_series,
)

pytest.importorskip("torch")  # the shared artifacts are exported from PyTorch


def _volume(seed=0) -> Volume:
    direction = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # D -> z, H -> y, W -> x
    return Volume(phantom_hu(seed=seed), spacing_mm=(2.0, 0.8, 0.8), origin_mm=(-60.0, -50.0, -700.0),
                  direction=direction, source=f"phantom-{seed}")


def test_predict_volume_matches_backend_and_maps_patches(predictor):
    from sranet.runtime.preprocess import preprocess

    volume = _volume()
    result = predictor.predict(volume)
    prepared = preprocess(volume, predictor.info.preprocess)
    ref = predictor.backend.infer(prepared.input[None, None].astype(np.float32))
    assert result.probability == pytest.approx(float(ref["prob"][0]), abs=1e-6)
    assert result.decision == (result.probability >= 0.5) and result.threshold == 0.5
    np.testing.assert_allclose(result.attention, ref["attention"][0].reshape(4, 4, 4), atol=1e-7)
    assert set(result.timings_ms) == {"read", "preprocess", "infer", "post"}
    assert len(result.model_sha256) == 64 and result.case.startswith("path-")
    # top patches: sorted weights; centres follow patch n = 16i + 4j + k through the ResamplePlan and the affine
    weights = [p["weight"] for p in result.top_patches]
    assert len(weights) == 3 and weights == sorted(weights, reverse=True)
    top = result.top_patches[0]
    n = int(np.argmax(result.attention))
    assert top["patch"] == n and top["grid_index"] == [n // 16, (n // 4) % 4, n % 4]
    np.testing.assert_allclose(top["prepared_voxel"], patch_centres(4, 48)[n], atol=0.01)
    plan = prepared.plan
    src = np.asarray(plan.offset) + np.asarray(plan.scale) * patch_centres(4, 48)[n]
    np.testing.assert_allclose(top["source_voxel"], src, atol=0.01)
    np.testing.assert_allclose(top["patient_mm"], volume.index_to_patient(src), atol=0.01)
    record = result.to_record()
    assert np.asarray(record["attention_grid"]).shape == (4, 4, 4) and record["sranet_version"]


def test_patch_centres_order():
    c = patch_centres(4, 128)
    assert c.shape == (64, 3)
    np.testing.assert_allclose(c[0], [15.5, 15.5, 15.5])
    np.testing.assert_allclose(c[16 * 1 + 4 * 2 + 3], [47.5, 79.5, 111.5])


def test_threshold_comes_from_the_artifact(tmp_path, tiny_artifacts):
    onnx_low = with_threshold(tiny_artifacts[0], tmp_path / "low.onnx", threshold=0.0)
    onnx_high = with_threshold(tiny_artifacts[0], tmp_path / "high.onnx", threshold=1.0)
    assert Predictor.from_artifact(onnx_low).predict(_volume()).decision is True
    assert Predictor.from_artifact(onnx_high).predict(_volume()).decision is False


def test_dicom_series_and_batch_with_a_corrupt_case(tmp_path, predictor):
    good = [write_dicom_series(tmp_path / f"series{n}", phantom_hu(seed=n)) for n in range(3)]
    bad = tmp_path / "corrupt.dcm"
    bad.write_bytes(b"DICM" + b"\x00" * 50)
    cases = [CaseInput(good[0], case_id="a"), CaseInput(good[1], case_id="b"), CaseInput(bad, case_id="bad"),
             CaseInput(good[2], case_id="c")]
    results = list(predictor.predict_many(cases, batch=3))
    assert [c.case_id for c, _ in results] == ["a", "b", "bad", "c"]
    assert isinstance(results[2][1], SranetError) and "corrupt.dcm" in str(results[2][1])
    for (_, r), folder in zip([results[0], results[1], results[3]], [good[0], good[1], good[2]], strict=True):
        single = predictor.predict(folder)
        assert r.probability == pytest.approx(single.probability, abs=1e-5)  # batching changes nothing
    assert results[0][1].batch_size == 2 and results[3][1].batch_size == 1
    text = str([r.to_record() for _, r in results if not isinstance(r, Exception)])
    assert PATIENT_NAME not in text and PATIENT_ID not in text


def test_real_ge_series(tmp_path, predictor):
    folder = unpack_ge_series(tmp_path)
    result = predictor.predict(folder)
    assert 0.0 <= result.probability <= 1.0 and result.attention.shape == (4, 4, 4)
    volume = result.volume
    assert volume.shape[0] >= 28 and volume.shape[1:] == (512, 512)  # irregular slices may be resampled (qc says)
    # the top patch centre lies inside the scanned box (patient mm), and maps back to its source voxel
    top = result.top_patches[0]
    back = volume.patient_to_index(np.asarray(top["patient_mm"]))
    np.testing.assert_allclose(back, top["source_voxel"], atol=0.02)
    assert all(-0.5 <= v <= n - 0.5 for v, n in zip(top["source_voxel"], volume.shape, strict=True))


def test_real_files_in_a_batch_with_failures(tmp_path, predictor):
    """Real single-file CTs (uncompressed, JPEG-LS) predicted; an MR and a truncated CT recorded with typed errors."""
    ct_small = REAL_CT / "pydicom" / "CT_small.dcm"
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(ct_small.read_bytes()[: int(ct_small.stat().st_size * 0.6)])
    files = [ct_small, REAL_CT / "pydicom" / "MR_small.dcm", truncated, REAL_CT / "pylibjpeg-data" / "CT1_JLSN.dcm"]
    results = list(predictor.predict_many([CaseInput(f) for f in files], batch=4))
    assert [Path(c.source).name for c, _ in results] == [f.name for f in files]
    ok, mr, bad, jls = (r for _, r in results)
    assert not isinstance(ok, Exception) and "too_few_slices" in ok.qc
    assert not isinstance(jls, Exception) and 0.0 <= jls.probability <= 1.0
    assert isinstance(mr, SranetError) and "MR" in str(mr)
    assert isinstance(bad, SranetError) and "truncated.dcm" in str(bad)
