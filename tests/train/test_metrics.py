"""Metrics against hand-computed values, including ties and degenerate cases."""

import math

import numpy as np
import pytest

from sranet.errors import InputError
from sranet.train.metrics import auc_visible, confusion, json_safe, roc_auc, roc_curve, summarize, youden_threshold


def test_confusion_and_rates():
    y = [1, 1, 1, 0, 0, 0, 0]
    s = [0.9, 0.6, 0.2, 0.7, 0.1, 0.3, 0.4]
    c = confusion(y, s, 0.5)  # calls: 1 1 0 1 0 0 0
    assert (c.tp, c.fn, c.fp, c.tn) == (2, 1, 1, 3)
    assert c.sensitivity == pytest.approx(2 / 3)  # TP/(TP+FN), not the paper's TP/(TP+FP)
    assert c.precision == pytest.approx(2 / 3)
    assert c.specificity == pytest.approx(3 / 4)
    assert c.accuracy == pytest.approx(5 / 7)
    assert c.as_matrix() == [[3, 1], [1, 2]]


def test_sensitivity_is_not_precision():
    c = confusion([1, 1, 1, 1, 0], [0.9, 0.8, 0.1, 0.1, 0.9], 0.5)  # TP 2, FN 2, FP 1
    assert c.sensitivity == pytest.approx(0.5)
    assert c.precision == pytest.approx(2 / 3)


def test_threshold_is_inclusive():
    assert confusion([1, 0], [0.5, 0.49], 0.5).tp == 1


def test_auc_hand_computed():
    # pairs (pos, neg): 0.8>0.3, 0.8>0.5, 0.4>0.3, 0.4<0.5 -> 3/4
    assert roc_auc([1, 0, 1, 0], [0.8, 0.3, 0.4, 0.5]) == pytest.approx(0.75)


def test_auc_with_ties_counts_half():
    # pos {0.5, 0.7}, neg {0.5, 0.2}: 0.5=0.5 (1/2), 0.5>0.2, 0.7>0.5, 0.7>0.2 -> 3.5/4
    assert roc_auc([1, 1, 0, 0], [0.5, 0.7, 0.5, 0.2]) == pytest.approx(0.875)
    assert roc_auc([1, 0, 1, 0], [0.3, 0.3, 0.3, 0.3]) == pytest.approx(0.5)


def test_auc_extremes_and_degenerate():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert math.isnan(roc_auc([1, 1, 1], [0.1, 0.5, 0.9]))
    assert math.isnan(roc_auc([], []))


def test_auc_matches_brute_force():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    s = rng.integers(0, 6, 60) / 5.0  # many ties
    pos, neg = s[y == 1], s[y == 0]
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert roc_auc(y, s) == pytest.approx(brute)


def test_roc_points_hand_computed():
    fpr, tpr, thr = roc_curve([1, 0, 1, 0], [0.8, 0.3, 0.4, 0.5])
    np.testing.assert_allclose(thr, [np.inf, 0.8, 0.5, 0.4, 0.3])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    # trapezoid area equals the rank AUC
    assert np.trapezoid(tpr, fpr) == pytest.approx(0.75)


def test_roc_with_one_class_is_nan_not_invented():
    fpr, tpr, _ = roc_curve([1, 1], [0.2, 0.9])
    assert np.isnan(fpr).all() and not np.isnan(tpr).any()


def test_youden_threshold():
    y = [0, 0, 0, 1, 1, 1]
    s = [0.1, 0.2, 0.35, 0.3, 0.6, 0.9]
    # t=0.6: sens 2/3, spec 1 -> J 0.667; t=0.3: sens 1, spec 2/3 -> J 0.667; tie -> higher specificity (0.6)
    t = youden_threshold(y, s)
    assert t == pytest.approx((0.6 + 0.35) / 2)
    c = confusion(y, s, t)
    assert (c.tp, c.fp) == (2, 0)


def test_youden_separable_and_degenerate():
    t = youden_threshold([0, 0, 1, 1], [0.1, 0.2, 0.7, 0.8])
    assert t == pytest.approx(0.45)
    assert youden_threshold([1, 1], [0.3, 0.4]) == 0.5


def test_bad_inputs():
    with pytest.raises(InputError, match="equal length"):
        roc_auc([1, 0], [0.1])
    with pytest.raises(InputError, match="0 or 1"):
        roc_auc([2, 0], [0.1, 0.2])
    with pytest.raises(InputError, match="NaN"):
        roc_auc([1, 0], [float("nan"), 0.2])


def test_summary_is_json_safe():
    m = json_safe(summarize([1, 1], [0.8, 0.2], 0.5))
    assert m["specificity"] is None and m["auc"] is None and m["sensitivity"] == 0.5


def test_auc_visible_leaves_out_stage_one_positives():
    labels = [0, 0, 1, 1, 1]
    scores = [0.2, 0.4, 0.9, 0.1, 0.8]  # the stage-I positive (0.1) ranks below both negatives
    assert roc_auc(labels, scores) == pytest.approx(4 / 6)
    assert auc_visible(labels, scores, [0, 0, 3, 1, 2]) == 1.0
    assert auc_visible(labels, scores, [0, None, 3, 1, 2]) == 1.0  # a negative needs no stage
    assert auc_visible(labels, scores, [0, 0, 3, None, 2]) is None  # a positive of unknown stage
    assert auc_visible([0, 1], [0.3, 0.2], [0, 1]) is None  # no visible positive left
    with pytest.raises(InputError, match="2 stages for 5 labels"):
        auc_visible(labels, scores, [0, 1])
