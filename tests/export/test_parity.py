"""The parity gate's scoring (pure numpy) and its inputs (synthetic phantoms through the runtime's preprocessing)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sranet.config import ModelConfig, PreprocessConfig
from sranet.errors import ParityGateError
from sranet.export.parity import TOLERANCES, compare, parity_inputs, raise_if_failed


def _ref(n=4, seed=0):
    rng = np.random.default_rng(seed)
    prob = rng.uniform(0.05, 0.95, n)
    att = rng.dirichlet(np.ones(64), n)
    return prob, att


def test_identical_outputs_pass():
    prob, att = _ref()
    r = compare(prob, att, prob.astype(np.float32), att.astype(np.float32), threshold=0.5, precision="fp32",
                inputs="test")
    assert r.passed and r.decision_flips == 0 and r.top1_agreement == 1.0 and r.max_abs_prob < 1e-7
    assert "PASSED" in r.summary()


def test_decision_flip_fails_even_within_prob_tolerance():
    prob = np.array([0.49995, 0.8])
    att = np.tile(np.linspace(0, 1, 64) / np.linspace(0, 1, 64).sum(), (2, 1))
    moved = prob + np.array([1e-4, 0.0])  # 0.50005: within int8's prob tolerance, but it crosses the threshold
    r = compare(prob, att, moved, att, threshold=0.5, precision="int8", inputs="test")
    assert r.decision_flips == 1 and not r.passed
    assert any("flip" in f for f in r.failures)


def test_tolerances_per_precision():
    prob, att = _ref()
    shifted = prob + 1e-3
    assert not compare(prob, att, shifted, att, threshold=2.0, precision="fp32", inputs="t").passed
    assert compare(prob, att, shifted, att, threshold=2.0, precision="fp16", inputs="t").passed
    assert TOLERANCES["fp32"].prob_abs < TOLERANCES["fp16"].prob_abs < TOLERANCES["int8"].prob_abs
    assert all(t.max_flips == 0 for t in TOLERANCES.values())


def test_top1_agreement_is_tie_aware():
    prob = np.array([0.3])
    att = np.full((1, 64), 0.5 / 62)
    att[0, 5], att[0, 9] = 0.25, 0.25 - 1e-6  # near-tie: argmax is not stable
    swapped = att.copy()
    swapped[0, 5], swapped[0, 9] = 0.25 - 1e-6, 0.25
    r = compare(prob, att, prob, swapped, threshold=0.5, precision="fp32", inputs="t")
    assert r.top1_agreement == 0.0 and r.top1_agreement_tie_aware == 1.0 and r.passed
    ref = np.full((1, 64), 0.6 / 62)
    ref[0, 5], ref[0, 9] = 0.3, 0.1
    moved = ref.copy()
    moved[0, 5], moved[0, 9] = 0.1, 0.3  # a real change of the top patch
    r = compare(prob, ref, prob, moved, threshold=0.5, precision="int8", inputs="t")
    assert r.top1_agreement_tie_aware == 0.0 and not r.passed
    assert any("top-1" in f for f in r.failures)


def test_nan_output_fails_and_raise_if_failed_carries_report(tmp_path):
    prob, att = _ref(2)
    bad = att.copy()
    bad[1, 3] = np.nan
    r = compare(prob, att, prob, bad, threshold=0.5, precision="fp16", inputs="t")
    assert not r.passed and any("NaN" in f for f in r.failures)
    with pytest.raises(ParityGateError, match="fp16 export disagrees") as info:
        raise_if_failed(r, path=tmp_path / "m.onnx")
    assert info.value.report is r
    saved = json.loads(r.write_json(tmp_path / "r.json").read_text())
    assert saved["passed"] is False and len(saved["per_case"]) == 2


def test_parity_inputs_are_preprocessed_phantoms_not_noise():
    cfg = ModelConfig.preset("tiny")
    x, label = parity_inputs(cfg, PreprocessConfig.for_model(cfg), 3, seed=4)
    assert x.shape == (3, 1, 48, 48, 48) and x.dtype == np.float32 and np.isfinite(x).all()
    assert "synthetic hip CT phantoms" in label
    for v in x[:, 0]:
        assert abs(v.mean()) < 1e-3 and abs(v.std() - 1.0) < 1e-3  # z-scored, as PreprocessConfig says
        # neighbouring voxels are strongly correlated (anatomy), which white noise is not
        corr = np.corrcoef(v[:, :, :-1].ravel(), v[:, :, 1:].ravel())[0, 1]
        assert corr > 0.5
    assert not np.allclose(x[0], x[1])
