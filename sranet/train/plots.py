"""PNG figures drawn with OpenCV (no matplotlib): the ROC curve and attention overlays.

Images are BGR uint8 as OpenCV writes them. Text is ASCII (OpenCV's Hershey fonts).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

WHITE, BLACK, GREY, BLUE, RED = (255, 255, 255), (0, 0, 0), (180, 180, 180), (200, 80, 20), (40, 40, 220)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(img, text, org, scale=0.45, color=BLACK, thickness=1):
    cv2.putText(img, text, org, FONT, scale, color, thickness, cv2.LINE_AA)


def _write(path: str | Path, img: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"OpenCV could not write {path}")
    return path


def roc_png(fpr: np.ndarray, tpr: np.ndarray, auc: float, path: str | Path, *, operating_point=None,
            title: str = "ROC", size_px: int = 480) -> Path:
    """ROC curve (fpr, tpr in [0, 1]) with the chance diagonal, AUC in the legend and an optional (fpr, tpr) point."""
    margin = 60
    img = np.full((size_px + 2 * margin, size_px + 2 * margin, 3), 255, np.uint8)

    def px(x, y):
        return int(round(margin + x * size_px)), int(round(margin + (1 - y) * size_px))

    for v in np.linspace(0, 1, 6):  # grid and ticks
        cv2.line(img, px(v, 0), px(v, 1), (235, 235, 235), 1)
        cv2.line(img, px(0, v), px(1, v), (235, 235, 235), 1)
        _text(img, f"{v:.1f}", (px(v, 0)[0] - 12, px(v, 0)[1] + 18), 0.4)
        _text(img, f"{v:.1f}", (px(0, v)[0] - 34, px(0, v)[1] + 5), 0.4)
    cv2.rectangle(img, px(0, 1), px(1, 0), BLACK, 1)
    cv2.line(img, px(0, 0), px(1, 1), GREY, 1, cv2.LINE_AA)
    ok = np.isfinite(fpr) & np.isfinite(tpr)
    pts = np.array([px(x, y) for x, y in zip(fpr[ok], tpr[ok], strict=True)], np.int32)
    if len(pts) > 1:
        cv2.polylines(img, [pts], False, BLUE, 2, cv2.LINE_AA)
    if operating_point is not None:
        cv2.circle(img, px(*operating_point), 6, RED, 2, cv2.LINE_AA)
    _text(img, title, (margin, 30), 0.6)
    _text(img, "1 - specificity (false positive rate)", (margin + 60, size_px + margin + 45))
    label = "sensitivity"
    for i, ch in enumerate(label):  # vertical axis label, one letter per line
        _text(img, ch, (10, margin + 120 + 16 * i), 0.45)
    legend = f"AUC = {auc:.3f}" if np.isfinite(auc) else "AUC undefined"
    _text(img, legend, px(0.55, 0.12), 0.55, BLUE, 1)
    if operating_point is not None:
        _text(img, "o threshold", px(0.55, 0.05), 0.5, RED)
    return _write(path, img)


def _colorbar(height: int, width: int = 18) -> np.ndarray:
    ramp = np.linspace(255, 0, height).astype(np.uint8)[:, None].repeat(width, axis=1)
    return cv2.applyColorMap(ramp, cv2.COLORMAP_JET)


def upsample_attention(attention: np.ndarray, size: int) -> np.ndarray:
    """(P, P, P) or (P**3,) weights -> (size, size, size) float32, each patch filled with its weight (nearest)."""
    grid = round(len(attention.reshape(-1)) ** (1 / 3))
    a = attention.reshape(grid, grid, grid).astype(np.float32)
    rep = size // grid
    return a.repeat(rep, 0).repeat(rep, 1).repeat(rep, 2)


def attention_overlay_png(volume: np.ndarray, attention: np.ndarray, path: str | Path, *, lesion: np.ndarray | None = None,
                          title: str = "", slices: int = 4, tile_px: int = 192) -> Path:
    """Axial (D) slices of ``volume`` (S, S, S) with the upsampled attention map blended on top and a colour bar.

    attention  (P**3,) or (P, P, P) weights, patch n = P*P*i + P*j + k; shown on a scale from 0 to its maximum.
    lesion     optional (S, S, S) 0/1 ground truth, drawn as a white contour.
    slices     how many slices, one through the centre of each of that many evenly spaced D-positions.
    """
    S = volume.shape[0]
    att = upsample_attention(attention, S)
    top = float(att.max()) if att.max() > 0 else 1.0
    lo, hi = np.percentile(volume, [1, 99.5])
    tiles = []
    for d in np.linspace(S / (2 * slices), S - S / (2 * slices), slices).astype(int):
        gray = np.clip((volume[d] - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
        heat = cv2.applyColorMap(np.clip(att[d] / top * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
        tile = cv2.addWeighted(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), 0.6, heat, 0.4, 0)
        tile = cv2.resize(tile, (tile_px, tile_px), interpolation=cv2.INTER_NEAREST)
        if lesion is not None and lesion[d].any():
            small = cv2.resize(lesion[d].astype(np.uint8), (tile_px, tile_px), interpolation=cv2.INTER_NEAREST)
            contours, _ = cv2.findContours(small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(tile, contours, -1, WHITE, 1)
        _text(tile, f"d={d}", (4, 14), 0.4, WHITE)
        tiles.append(tile)
    strip = np.concatenate(tiles, axis=1)
    bar = _colorbar(tile_px)
    pad = np.full((tile_px, 70, 3), 255, np.uint8)
    pad[:, 6:6 + bar.shape[1]] = bar
    _text(pad, f"{top:.3f}", (28, 12), 0.38)
    _text(pad, "0", (28, tile_px - 4), 0.38)
    body = np.concatenate([strip, pad], axis=1)
    header = np.full((26, body.shape[1], 3), 255, np.uint8)
    _text(header, title + ("  (white: lesion)" if lesion is not None else ""), (6, 18), 0.5)
    return _write(path, np.concatenate([header, body], axis=0))
