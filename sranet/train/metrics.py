"""Binary classification metrics in numpy (torch-free), so the runtime and reports can use them too.

Conventions: label 1 = AVNFH present (positive), 0 = absent. A case is called positive when its score is
``>= threshold``. Sensitivity is TP / (TP + FN) (recall). The paper's eq. 13 prints TP / (TP + FP), which is
precision; we report precision separately under its own name rather than copying that typo.

A ratio with an empty denominator (no positives, say) is NaN, never a made-up 0 or 1; JSON output writes it as null.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sranet.errors import InputError
from sranet.runtime.patches import patch_blocks


def _check(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise InputError(f"labels and scores must be 1-D and of equal length, got shapes {y.shape} and {s.shape}.")
    if y.size and not np.isin(y, (0, 1)).all():
        raise InputError(f"labels must be 0 or 1, got values {sorted(set(np.unique(y).tolist()))[:5]}.")
    if not np.isfinite(s).all():
        raise InputError("scores contain NaN or infinity; check the model output.")
    return y.astype(np.int64), s


def _ratio(num: int, den: int) -> float:
    return num / den if den else math.nan


@dataclass(frozen=True)
class Confusion:
    """Counts at one threshold. ``as_matrix()`` is [[TN, FP], [FN, TP]] (rows = truth 0/1, columns = call 0/1)."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def sensitivity(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def specificity(self) -> float:
        return _ratio(self.tn, self.tn + self.fp)

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def accuracy(self) -> float:
        return _ratio(self.tp + self.tn, self.tp + self.tn + self.fp + self.fn)

    def as_matrix(self) -> list[list[int]]:
        return [[self.tn, self.fp], [self.fn, self.tp]]


def confusion(labels, scores, threshold: float = 0.5) -> Confusion:
    """Confusion counts for calls ``score >= threshold``. labels (n,) 0/1, scores (n,) any real."""
    y, s = _check(labels, scores)
    call = s >= threshold
    pos = y == 1
    return Confusion(
        tp=int(np.sum(call & pos)), fp=int(np.sum(call & ~pos)), tn=int(np.sum(~call & ~pos)), fn=int(np.sum(~call & pos))
    )


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve = P(score_pos > score_neg) + 0.5 P(tie) (Mann-Whitney U with mid-ranks).

    NaN when either class is absent (the AUC is undefined, not 0.5).
    """
    y, s = _check(labels, scores)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, dtype=np.float64)
    sorted_s = s[order]
    # mid-ranks: every member of a tie group gets the mean of the ranks the group spans (1-based)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    ends = np.r_[starts[1:], s.size]
    for a, b in zip(starts, ends, strict=True):
        ranks[order[a:b]] = (a + 1 + b) / 2.0
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def auc_visible(labels, scores, stages) -> float | None:
    """AUC of the negatives against the positives whose lesion CT can show: ARCO stage known and not I (stage I is
    invisible on CT by definition, so such positives rank among the negatives at random and cap the AUC below 1).
    None when a positive has no stage, or when a class is missing once stage I is left out."""
    y, s = _check(labels, scores)
    stages = list(stages)
    if len(stages) != y.size:
        raise InputError(f"auc_visible: {len(stages)} stages for {y.size} labels; give one stage (or None) per case.")
    if any(st is None for st, label in zip(stages, y, strict=True) if label == 1):
        return None
    keep = np.array([label == 0 or st != 1 for st, label in zip(stages, y, strict=True)])
    if not 0 < int(y[keep].sum()) < int(keep.sum()):
        return None
    return roc_auc(y[keep], s[keep])


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points (fpr, tpr, thresholds), one per distinct score plus the (0, 0) start at threshold +inf.

    Point m is the rate of calls ``score >= thresholds[m]``; thresholds decrease, fpr and tpr increase to 1.
    Rates for an absent class are NaN.
    """
    y, s = _check(labels, scores)
    thresholds = np.r_[np.inf, np.unique(s)[::-1]]
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    tps = np.array([np.sum((s >= t) & (y == 1)) for t in thresholds], dtype=np.float64)
    fps = np.array([np.sum((s >= t) & (y == 0)) for t in thresholds], dtype=np.float64)
    tpr = tps / n_pos if n_pos else np.full_like(tps, np.nan)
    fpr = fps / n_neg if n_neg else np.full_like(fps, np.nan)
    return fpr, tpr, thresholds


def youden_threshold(labels, scores) -> float:
    """Decision threshold that maximises Youden's J = sensitivity + specificity - 1 on (labels, scores).

    Rule: among the distinct scores (calls ``score >= t``), take the t with the largest J; on a tie in J, the one
    with the higher specificity, then the larger t. The returned value is the midpoint between that score and the
    next lower distinct score, so a slightly different score on new data falls on the same side. With one class
    missing J is undefined and the threshold is 0.5.
    """
    y, s = _check(labels, scores)
    if y.size == 0 or y.min() == y.max():
        return 0.5
    fpr, tpr, thresholds = roc_curve(y, s)
    j = tpr - fpr
    best = None
    for m in range(1, len(thresholds)):  # skip +inf (calls nothing positive)
        key = (round(j[m], 12), round(1 - fpr[m], 12), thresholds[m])
        if best is None or key > best[0]:
            best = (key, m)
    m = best[1]
    lower = thresholds[m + 1] if m + 1 < len(thresholds) else None
    t = float(thresholds[m])
    return t if lower is None else float((t + lower) / 2.0)


def summarize(labels, scores, threshold: float) -> dict:
    """Metrics dict for reports: counts, sensitivity, specificity, precision, accuracy, AUC, threshold, n."""
    c = confusion(labels, scores, threshold)
    y, _ = _check(labels, scores)
    return {
        "n": int(y.size),
        "n_positive": int(y.sum()),
        "threshold": float(threshold),
        "auc": roc_auc(labels, scores),
        "sensitivity": c.sensitivity,
        "specificity": c.specificity,
        "precision": c.precision,
        "accuracy": c.accuracy,
        "confusion_matrix": c.as_matrix(),
        "tp": c.tp,
        "fp": c.fp,
        "tn": c.tn,
        "fn": c.fn,
    }


def json_safe(value):
    """Replace NaN/inf floats (recursively) with None so json.dumps writes valid JSON (null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return value


def lesion_patches(lesion: np.ndarray, grid: int) -> np.ndarray:
    """(S, S, S) 0/1 lesion mask -> (grid**3,) bool, True where the patch holds any lesion voxel (n = g*g*i+g*j+k)."""
    return patch_blocks(lesion > 0, grid).any(axis=(3, 4, 5)).reshape(-1)


def visible_lesion_patches(dataset, lesions: list[np.ndarray | None] | None = None) -> list[np.ndarray | None]:
    """Per case of a CachedDataset: (N,) lesion patch flags where the case has a lesion mask with voxels and its
    ARCO stage is not I (invisible on CT by definition; a phantom's stage-I mask marks where the lesion would be),
    else None. ``lesions``: the dataset's lesion masks when already loaded."""
    flags = []
    for i, case in enumerate(dataset.cases):
        lesion = None if case.stage == 1 else (dataset.load_lesion(i) if lesions is None else lesions[i])
        flags.append(None if lesion is None or not lesion.any() else lesion_patches(lesion, dataset.index.grid))
    return flags


def localisation(attention: np.ndarray, lesions: list[np.ndarray | None], labels: np.ndarray, grid: int) -> dict[str, Any]:
    """Localisation scores over positive cases with a lesion mask. attention (n, grid**3); lesions n masks or None."""
    inside = [None if lesion is None else lesion_patches(lesion, grid) for lesion in lesions]
    return localisation_from_patches(attention, inside, labels)


def localisation_from_patches(attention: np.ndarray, inside: list[np.ndarray | None], labels: np.ndarray) -> dict[str, Any]:
    """``localisation`` from per-case lesion patch flags ``inside`` ((N,) bool from ``lesion_patches``, or None).

    ``bottom_patch_hit_rate`` is the share whose lowest-weight patch (min-shift: weight exactly 0) holds lesion: near
    1 when the attention detects the lesion by switching it off, a shortcut docs/training.md describes.
    """
    hits, bottoms, masses, chance = [], [], [], []
    for a, flags, y in zip(attention, inside, labels, strict=True):
        if flags is None or y != 1 or not flags.any():
            continue
        hits.append(bool(flags[int(np.argmax(a))]))
        bottoms.append(bool(flags[int(np.argmin(a))]))
        masses.append(float(a[flags].sum()))
        chance.append(float(flags.mean()))
    if not hits:
        return {"n_cases": 0, "top_patch_hit_rate": None, "bottom_patch_hit_rate": None,
                "lesion_attention_mass": None, "chance_level": None}
    return {
        "n_cases": len(hits),
        "top_patch_hit_rate": float(np.mean(hits)),
        "bottom_patch_hit_rate": float(np.mean(bottoms)),
        "lesion_attention_mass": float(np.mean(masses)),
        "chance_level": float(np.mean(chance)),
    }
