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


PALETTE = [(200, 80, 20), (40, 40, 220), (40, 160, 40), (160, 40, 160), (0, 140, 220), (120, 120, 0),
           (80, 80, 80), (200, 160, 0), (0, 80, 160)]


def line_panel(series: list[tuple[str, list[float], list[float]]], title: str, *, log_y: bool = False,
               y_range: tuple[float, float] | None = None, width_px: int = 430, height_px: int = 300) -> np.ndarray:
    """One line chart as a BGR image: ``series`` is [(label, xs, ys)]; NaN/None points are skipped. ``log_y`` plots
    log10 of positive values; ``y_range`` fixes the axis (default: the data's range)."""
    img = np.full((height_px, width_px, 3), 255, np.uint8)
    legend_rows = (len(series) + 1) // 2
    left, right, top, bottom = 48, 10, 24 + 14 * legend_rows, 26  # the legend sits between title and plot
    w, h = width_px - left - right, height_px - top - bottom
    clean = []
    for label, xs, ys in series:
        pts = [(float(x), float(y)) for x, y in zip(xs, ys, strict=True)
               if y is not None and np.isfinite(y) and (not log_y or y > 0)]
        clean.append((label, [(x, np.log10(y) if log_y else y) for x, y in pts]))
    all_pts = [p for _, pts in clean for p in pts]
    _text(img, title, (left, 16), 0.45)
    if not all_pts:
        _text(img, "no data", (left + w // 3, top + h // 2), 0.45, GREY)
        return img
    x0, x1 = min(p[0] for p in all_pts), max(p[0] for p in all_pts)
    y0, y1 = y_range if y_range is not None else (min(p[1] for p in all_pts), max(p[1] for p in all_pts))
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1e-3)

    def px(x, y):
        return int(round(left + (x - x0) / (x1 - x0) * w)), int(round(top + (1 - (y - y0) / (y1 - y0)) * h))

    cv2.rectangle(img, (left, top), (left + w, top + h), BLACK, 1)
    for v in np.linspace(y0, y1, 5):
        cv2.line(img, px(x0, v), px(x1, v), (235, 235, 235), 1)
        label = f"1e{v:.1f}" if log_y else (f"{v:.2f}" if abs(y1 - y0) < 20 else f"{v:.0f}")
        _text(img, label, (2, px(x0, v)[1] + 4), 0.32)
    step = max(1, int(np.ceil((x1 - x0) / 6)))
    for v in np.arange(np.ceil(x0), x1 + 1e-9, step):
        _text(img, f"{v:.0f}", (px(v, y0)[0] - 6, top + h + 14), 0.32)
    _text(img, "epoch", (left + w - 40, height_px - 2), 0.32, GREY)
    for n, (label, pts) in enumerate(clean):
        color = PALETTE[n % len(PALETTE)]
        xy = np.array([px(x, min(max(y, y0), y1)) for x, y in pts], np.int32)
        if len(xy) > 1:
            cv2.polylines(img, [xy], False, color, 2, cv2.LINE_AA)
        elif len(xy) == 1:
            cv2.circle(img, tuple(int(v) for v in xy[0]), 3, color, -1)
        _text(img, label, (left + 6 + (n % 2) * (w // 2), 34 + (n // 2) * 14), 0.36, color)
    return img


def panels_png(panels: list[np.ndarray], path: str | Path, *, columns: int = 3, title: str = "") -> Path:
    """Tile equally sized panel images into a grid (row-major) under an optional title line; write a PNG."""
    h, w = panels[0].shape[:2]
    blank = np.full((h, w, 3), 255, np.uint8)
    rows = [panels[i:i + columns] for i in range(0, len(panels), columns)]
    grid = np.concatenate([np.concatenate(r + [blank] * (columns - len(r)), axis=1) for r in rows], axis=0)
    if title:
        header = np.full((24, grid.shape[1], 3), 255, np.uint8)
        _text(header, title, (8, 17), 0.5)
        grid = np.concatenate([header, grid], axis=0)
    return _write(path, grid)
