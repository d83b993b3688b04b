"""``evaluate(ckpt_path, cache_dir, split, out_dir) -> dict``: score a checkpoint on one split of a prepared cache.

Writes to ``out_dir``:
    metrics.json            sensitivity TP/(TP+FN), specificity, precision, accuracy, AUC, confusion matrix
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
from sranet.train.metrics import json_safe, roc_curve, summarize


def lesion_patches(lesion: np.ndarray, grid: int) -> np.ndarray:
    """(S, S, S) 0/1 lesion mask -> (grid**3,) bool, True where the patch holds any lesion voxel (n = g*g*i+g*j+k)."""
    S = lesion.shape[0]
    p = S // grid
    blocks = (lesion > 0).reshape(grid, p, grid, p, grid, p)
    return blocks.any(axis=(1, 3, 5)).reshape(-1)


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
    """``localisation`` from per-case lesion patch flags ``inside`` ((N,) bool from ``lesion_patches``, or None)."""
    hits, masses, chance = [], [], []
    for a, flags, y in zip(attention, inside, labels, strict=True):
        if flags is None or y != 1 or not flags.any():
            continue
        hits.append(bool(flags[int(np.argmax(a))]))
        masses.append(float(a[flags].sum()))
        chance.append(float(flags.mean()))
    if not hits:
        return {"n_cases": 0, "top_patch_hit_rate": None, "lesion_attention_mass": None, "chance_level": None}
    return {
        "n_cases": len(hits),
        "top_patch_hit_rate": float(np.mean(hits)),
        "lesion_attention_mass": float(np.mean(masses)),
        "chance_level": float(np.mean(chance)),
    }


def safe_name(text: str) -> str:
    """A file-name-safe version of a case id (letters, digits, '.', '_', '-'; at most 64 characters)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:64] or "case"


def evaluate(ckpt_path: str | Path, cache_dir: str | Path, split: str, out_dir: str | Path, *,
             device: str = "cpu", overlays: int = 4, batch_size: int = 4) -> dict[str, Any]:
    """Evaluate ``ckpt_path`` on ``split`` of the cache at ``cache_dir``; write the files above; return the metrics."""
    from sranet.data.dataset import CachedDataset, read_cache
    from sranet.train.checkpoint import load_checkpoint
    from sranet.train.distributed import resolve_device
    from sranet.train.loop import predict_split
    from sranet.train.plots import attention_overlay_png, roc_png

    ckpt = load_checkpoint(ckpt_path)
    index = read_cache(cache_dir)
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
    dataset = CachedDataset(index, split)
    if len(dataset) == 0:
        known = sorted({c.split for c in index.cases})
        raise TrainingError(f"split {split!r} has no cases; the cache has {', '.join(known) or 'none'}.",
                            path=index.root / "cases.csv", hint="Pick one with --split.")
    dev = resolve_device(device)
    model = ckpt.build_model(dev)
    prediction = predict_split(model, dataset, dev, None, batch_size)
    labels, probs, attention = prediction.labels, prediction.probs, prediction.attention
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    metrics = summarize(labels, probs, ckpt.threshold)
    fpr, tpr, thr = roc_curve(labels, probs)
    lesions = [dataset.load_lesion(i) for i in range(len(dataset))]
    metrics["localisation"] = localisation(attention, lesions, labels, ckpt.model_config.grid)
    metrics["localisation_visible"] = localisation_from_patches(attention, visible_lesion_patches(dataset, lesions), labels)
    metrics["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thr.tolist()}
    metrics.update({"split": split, "checkpoint": str(ckpt_path), "checkpoint_epoch": ckpt.epoch,
                    "sensitivity_definition": "TP/(TP+FN)"})
    (out / "metrics.json").write_text(json.dumps(json_safe(metrics), indent=2) + "\n")

    with (out / "predictions.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case_id", "label", "stage", "prob", "call", "top_patch"])
        for case, y, p, a in zip(dataset.cases, labels, probs, attention, strict=True):
            w.writerow([case.case_id, int(y), "" if case.stage is None else case.stage, f"{p:.6f}",
                        int(p >= ckpt.threshold), int(np.argmax(a))])

    op = None
    if np.isfinite(metrics["sensitivity"]) and np.isfinite(metrics["specificity"]):
        op = (1 - metrics["specificity"], metrics["sensitivity"])
    roc_png(fpr, tpr, metrics["auc"], out / "roc.png", operating_point=op, title=f"ROC, {split} split (n={len(labels)})")

    order = sorted(range(len(dataset)), key=lambda i: (-int(labels[i]), -(lesions[i] is not None), -probs[i]))
    for rank, i in enumerate(order[: max(overlays, 0)]):
        volume, _ = dataset.load(i)
        case = dataset.cases[i]
        title = f"{safe_name(case.case_id)} label={labels[i]} p={probs[i]:.2f}"
        attention_overlay_png(volume, attention[i], out / "attention" / f"{rank:02d}_{safe_name(case.case_id)}.png",
                              lesion=lesions[i], title=title)
    return json_safe(metrics)
