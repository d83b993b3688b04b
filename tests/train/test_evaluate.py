"""Evaluation of a checkpoint: files written, metrics consistent with predictions, localisation by hand."""

import csv
import json

import cv2
import numpy as np
import pytest

from sranet.errors import TrainingError
from sranet.train.evaluate import evaluate, safe_name
from sranet.train.metrics import lesion_patches, localisation, roc_auc


def test_evaluate_writes_report(tiny_run, tiny_cache, tmp_path):
    result, _ = tiny_run
    m = evaluate(result.best_path, tiny_cache, "test", tmp_path, overlays=2)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["n"] == m["n"] == 6 and saved["threshold"] == pytest.approx(result.threshold)
    with (tmp_path / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    labels = [int(r["label"]) for r in rows]
    probs = [float(r["prob"]) for r in rows]
    assert m["auc"] == pytest.approx(roc_auc(labels, probs), abs=1e-5)
    calls = [int(r["call"]) for r in rows]
    tp = sum(c and y for c, y in zip(calls, labels, strict=True))
    assert m["tp"] == tp and sum(sum(r) for r in m["confusion_matrix"]) == 6
    assert m["localisation"]["n_cases"] == 3 and 0 <= m["localisation"]["top_patch_hit_rate"] <= 1
    roc = cv2.imread(str(tmp_path / "roc.png"))
    assert roc is not None and roc.shape[2] == 3
    overlays = sorted((tmp_path / "attention").glob("*.png"))
    assert len(overlays) == 2 and cv2.imread(str(overlays[0])).shape[1] > 400


def test_evaluate_unknown_split(tiny_run, tiny_cache, tmp_path):
    result, _ = tiny_run
    with pytest.raises(TrainingError, match="split 'tset' has no cases; the cache has test, train, val"):
        evaluate(result.best_path, tiny_cache, "tset", tmp_path)


def test_lesion_patches_by_hand():
    lesion = np.zeros((48, 48, 48), np.uint8)
    lesion[13, 25, 40] = 1  # patch (1, 2, 3)
    lesion[47, 0, 0] = 1  # patch (3, 0, 0)
    assert np.flatnonzero(lesion_patches(lesion, 4)).tolist() == [16 + 8 + 3, 48]


def test_localisation_by_hand():
    lesion = np.zeros((48, 48, 48), np.uint8)
    lesion[0:12, 0:12, 0:24] = 1  # patches 0 and 1
    hit = np.full(64, 0.1 / 62)
    hit[1], hit[0] = 0.6, 0.3
    miss = np.full(64, 0.5 / 62)
    miss[10], miss[0], miss[1] = 0.5, 0.0, 0.0
    loc = localisation(np.stack([hit, miss, hit]), [lesion, lesion, None], np.array([1, 1, 1]), 4)
    assert loc["n_cases"] == 2
    assert loc["top_patch_hit_rate"] == pytest.approx(0.5)
    assert loc["bottom_patch_hit_rate"] == pytest.approx(0.5)  # miss's zero-weight patch (0) is in the lesion
    assert loc["lesion_attention_mass"] == pytest.approx((0.9 + 0.0) / 2)
    assert loc["chance_level"] == pytest.approx(2 / 64)
    assert localisation(np.stack([hit]), [None], np.array([1]), 4)["top_patch_hit_rate"] is None


def test_safe_name():
    assert safe_name("../Doe^John 123") == "Doe_John_123"
    assert safe_name("///") == "case"


def test_evaluate_refuses_a_cache_with_other_preprocessing(tiny_run, tiny_cache, tmp_path):
    """Same size but another HU window: the inputs are not what the model was trained on, so no metrics."""
    import shutil

    from sranet.config import PreprocessConfig

    result, _ = tiny_run
    other = tmp_path / "cache"
    shutil.copytree(tiny_cache, other)
    meta = json.loads((other / "cache.json").read_text())
    meta["preprocess"] = PreprocessConfig(output_size=48, window_hu=(-200.0, 1300.0)).to_dict()
    (other / "cache.json").write_text(json.dumps(meta))
    with pytest.raises(TrainingError, match=r"other settings than the checkpoint \(window_hu"):
        evaluate(result.best_path, other, "test", tmp_path / "e")
    assert not (tmp_path / "e" / "metrics.json").exists()
