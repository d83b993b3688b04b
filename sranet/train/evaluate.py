"""``evaluate(ckpt_path, cache_dir, split, out_dir) -> dict``: score a checkpoint on one split of a prepared cache.

Writes to ``out_dir``:
    metrics.json            sensitivity TP/(TP+FN), specificity, precision, accuracy, AUC (and ``auc_visible``,
                            without the ARCO stage I positives CT cannot show), confusion matrix
                            [[TN, FP], [FN, TP]] at the checkpoint's threshold, ROC points, localisation scores
    predictions.csv         case_id, label, stage, prob, call, top_patch
    roc.png                 ROC curve with the operating point
    attention/*.png         attention overlays for a few cases (highest-probability positives first)

Attention localisation (cases with a lesion mask and label 1): a patch is a lesion patch when any voxel of the
lesion mask falls in it. ``top_patch_hit_rate`` = fraction of cases whose highest-attention patch is a lesion
patch; ``lesion_attention_mass`` = mean over cases of the summed attention on lesion patches. Both are reported
next to their chance level (the mean fraction of patches that are lesion patches), since a lesion that covers many
patches is easy to "hit". ``localisation_visible`` gives the same scores over the positives with a CT-visible
lesion: ARCO stage I is invisible on CT by definition (a phantom's stage-I mask marks where the lesion would be).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from sranet.errors import TrainingError
from sranet.train.metrics import (
    auc_visible,
    json_safe,
    localisation,
    localisation_from_patches,
    roc_curve,
    summarize,
    visible_lesion_patches,
)


def safe_name(text: str) -> str:
    """A file-name-safe version of a case id (letters, digits, '.', '_', '-'; at most 64 characters)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:64] or "case"


def evaluate(ckpt_path: str | Path, cache_dir: str | Path, split: str, out_dir: str | Path, *,
             device: str = "cpu", overlays: int = 4, batch_size: int = 4) -> dict[str, Any]:
    """Evaluate ``ckpt_path`` on ``split`` of the cache at ``cache_dir``; write the files above; return the metrics."""
    from sranet.data.dataset import read_cache
    from sranet.model.checkpoint import load_checkpoint
    from sranet.train.distributed import resolve_device
    from sranet.train.predict import predict_split

    ckpt = load_checkpoint(ckpt_path)
    index = read_cache(cache_dir)
    _check_cache_fits(index, ckpt)
    dataset = _split_dataset(index, split)
    dev = resolve_device(device)
    model = ckpt.build_model(dev)
    prediction = predict_split(model, dataset, dev, None, batch_size)
    labels, probs, attention = prediction.labels, prediction.probs, prediction.attention
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    metrics = summarize(labels, probs, ckpt.threshold)
    metrics["auc_visible"] = auc_visible(labels, probs, [c.stage for c in dataset.cases])
    fpr, tpr, thr = roc_curve(labels, probs)
    lesions = [dataset.load_lesion(i) for i in range(len(dataset))]
    metrics["localisation"] = localisation(attention, lesions, labels, ckpt.model_config.grid)
    metrics["localisation_visible"] = localisation_from_patches(attention, visible_lesion_patches(dataset, lesions), labels)
    metrics["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thr.tolist()}
    metrics.update({"split": split, "checkpoint": str(ckpt_path), "checkpoint_epoch": ckpt.epoch,
                    "sensitivity_definition": "TP/(TP+FN)"})
    (out / "metrics.json").write_text(json.dumps(json_safe(metrics), indent=2) + "\n")
    _write_predictions_csv(out / "predictions.csv", dataset, labels, probs, attention, ckpt.threshold)
    _write_roc_png(out / "roc.png", fpr, tpr, metrics, title=f"ROC, {split} split (n={len(labels)})")
    _write_overlays(out / "attention", dataset, labels, probs, attention, lesions, overlays)
    return json_safe(metrics)


def _check_cache_fits(index, ckpt) -> None:
    """Refuse a cache whose volume size or preprocessing differ from the checkpoint's: its metrics would not be the
    model's."""
    if index.preprocess.output_size != ckpt.model_config.input_size:
        raise TrainingError(
            f"cache volumes are {index.preprocess.output_size}^3 but the checkpoint's model takes "
            f"{ckpt.model_config.input_size}^3.", path=index.root, hint="Evaluate on a cache prepared for this model.")
    if index.preprocess != ckpt.preprocess_config:
        changed = [k for k, v in ckpt.preprocess_config.to_dict().items() if index.preprocess.to_dict().get(k) != v]
        raise TrainingError(
            f"cache was preprocessed with other settings than the checkpoint ({', '.join(changed)}: cache "
            f"{', '.join(repr(index.preprocess.to_dict()[k]) for k in changed)}, checkpoint "
            f"{', '.join(repr(ckpt.preprocess_config.to_dict()[k]) for k in changed)}); its metrics would not be the "
            "model's.", path=index.root / "cache.json",
            hint="Evaluate on the cache the model was trained from, or prepare one with the checkpoint's settings.")


def _split_dataset(index, split: str):
    """The cache's ``split`` as a CachedDataset; TrainingError naming the splits there are when it is empty."""
    from sranet.data.dataset import CachedDataset

    dataset = CachedDataset(index, split)
    if len(dataset) == 0:
        known = sorted({c.split for c in index.cases})
        raise TrainingError(f"split {split!r} has no cases; the cache has {', '.join(known) or 'none'}.",
                            path=index.root / "cases.csv", hint="Pick one with --split.")
    return dataset


def _write_predictions_csv(path: Path, dataset, labels, probs, attention, threshold: float) -> None:
    """One row per case: case_id, label, stage, prob, call at ``threshold``, top_patch (highest attention)."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case_id", "label", "stage", "prob", "call", "top_patch"])
        for case, y, p, a in zip(dataset.cases, labels, probs, attention, strict=True):
            w.writerow([case.case_id, int(y), "" if case.stage is None else case.stage, f"{p:.6f}",
                        int(p >= threshold), int(np.argmax(a))])


def _write_roc_png(path: Path, fpr, tpr, metrics: dict[str, Any], *, title: str) -> None:
    """The ROC curve, with the operating point where sensitivity and specificity are defined."""
    from sranet.train.plots import roc_png

    op = None
    if np.isfinite(metrics["sensitivity"]) and np.isfinite(metrics["specificity"]):
        op = (1 - metrics["specificity"], metrics["sensitivity"])
    roc_png(fpr, tpr, metrics["auc"], path, operating_point=op, title=title)


def _write_overlays(folder: Path, dataset, labels, probs, attention, lesions, overlays: int) -> None:
    """Attention overlays of the first ``overlays`` cases: positives, then those with a lesion mask, then by
    probability, highest first."""
    from sranet.train.plots import attention_overlay_png

    order = sorted(range(len(dataset)), key=lambda i: (-int(labels[i]), -(lesions[i] is not None), -probs[i]))
    for rank, i in enumerate(order[: max(overlays, 0)]):
        volume, _ = dataset.load(i)
        case = dataset.cases[i]
        title = f"{safe_name(case.case_id)} label={labels[i]} p={probs[i]:.2f}"
        attention_overlay_png(volume, attention[i], folder / f"{rank:02d}_{safe_name(case.case_id)}.png",
                              lesion=lesions[i], title=title)
