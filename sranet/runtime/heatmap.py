"""Pictures a radiologist can look at: attention overlays (PNG, OpenCV) and the attention map as NIfTI.

The (P, P, P) attention grid lives on the prepared (S, S, S) volume. ``attention_on_input_grid`` maps it back onto
the source volume's (D, H, W) voxels through the ResamplePlan (prepared voxel o samples source index
offset + scale * o, per axis), so the NIfTI overlays the original scan in any viewer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from sranet.runtime.volume import Volume

DISPLAY_WINDOW_HU = (-250.0, 1250.0)  # bone window for the grey background
VIEWS = ("axial", "coronal", "sagittal")  # slices normal to array axes 0, 1, 2 (axial for axial CT series)


def attention_on_input_grid(attention: np.ndarray, plan: Any, shape: tuple[int, int, int], input_size: int) -> np.ndarray:
    """(P, P, P) attention -> (D, H, W) float32 on the source grid; 0 where the source voxel is outside the ROI box.

    Separable per axis: source index x maps to prepared o = (x - offset) / scale, patch floor(o / (S / P)).
    """
    grid = attention.shape[0]
    patch = input_size / grid
    index, inside = [], []
    box = getattr(plan, "box", None)  # samples outside the ROI box were padding, not this anatomy
    for axis in range(3):
        x = np.arange(shape[axis], dtype=float)
        o = (x - float(plan.offset[axis])) / float(plan.scale[axis])
        ok = (o > -0.5) & (o < input_size - 0.5)
        if box is not None:
            ok &= (x >= box[axis][0]) & (x < box[axis][1])
        index.append(np.clip(np.floor((o + 0.5) / patch).astype(int), 0, grid - 1))
        inside.append(ok)
    out = attention[np.ix_(index[0], index[1], index[2])].astype(np.float32)
    mask = inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :]
    out[~mask] = 0.0
    return out


def save_attention_nifti(attention_map: np.ndarray, volume: Volume, path: str | os.PathLike) -> Path:
    """Write a (D, H, W) map on ``volume``'s grid as NIfTI (.nii.gz). LPS affine converted to NIfTI's RAS."""
    import nibabel as nib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ volume.affine
    image = nib.Nifti1Image(np.asarray(attention_map, dtype=np.float32), ras)
    image.header.set_xyzt_units("mm")
    image.set_qform(ras, code=1)
    image.set_sform(ras, code=1)
    nib.save(image, str(path))
    return path


def superior_down(volume: Volume) -> bool:
    """True when array axis 0 (D) points towards the head (LPS +z), i.e. drawn as image rows it would put the
    patient's head at the bottom of coronal and sagittal panels."""
    return float(np.asarray(volume.direction, dtype=float)[2, 0]) > 0


def _slice(array: np.ndarray, axis: int, index: int) -> np.ndarray:
    return np.take(array, int(np.clip(round(index), 0, array.shape[axis] - 1)), axis=axis)


def _to_display(image: np.ndarray, spacing_mm: tuple[float, float], size_px: int, interpolation: int) -> np.ndarray:
    """Resize a 2D slice so that pixels are square in mm and the longer side is ``size_px``."""
    import cv2

    h_mm, w_mm = image.shape[0] * spacing_mm[0], image.shape[1] * spacing_mm[1]
    scale = size_px / max(h_mm, w_mm)
    h, w = max(1, round(h_mm * scale)), max(1, round(w_mm * scale))
    return cv2.resize(image, (w, h), interpolation=interpolation)


def overlay_png(
    volume: Volume,
    attention_map: np.ndarray,
    centre_voxel: tuple[float, float, float],
    path: str | os.PathLike,
    *,
    title: str = "",
    size_px: int = 256,
    alpha: float = 0.45,
) -> Path:
    """Three panels (axial, coronal, sagittal) through ``centre_voxel`` (d, h, w) with the attention overlay and a
    colour bar from 0 to the map's maximum. volume.hu and attention_map are (D, H, W) on the same grid."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lo, hi = DISPLAY_WINDOW_HU
    vmax = float(attention_map.max()) or 1.0
    panels = []
    for axis, view in enumerate(VIEWS):
        keep = [a for a in range(3) if a != axis]
        spacing = (volume.spacing_mm[keep[0]], volume.spacing_mm[keep[1]])
        hu = _slice(np.asarray(volume.hu, dtype=np.float32), axis, centre_voxel[axis])
        att = _slice(attention_map, axis, centre_voxel[axis])
        if axis != 0 and superior_down(volume):  # coronal/sagittal rows run along D: put the head at the top
            hu, att = hu[::-1], att[::-1]
        grey = np.clip((hu - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)
        heat = np.clip(att / vmax * 255.0, 0, 255).astype(np.uint8)
        grey = _to_display(grey, spacing, size_px, cv2.INTER_AREA if max(grey.shape) > size_px else cv2.INTER_LINEAR)
        heat = _to_display(heat, spacing, size_px, cv2.INTER_NEAREST)
        bgr = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
        colour = cv2.applyColorMap(heat, cv2.COLORMAP_JET)
        weight = (heat.astype(np.float32) / 255.0 * alpha)[..., None]
        blended = (bgr * (1 - weight) + colour * weight).astype(np.uint8)
        canvas = np.zeros((size_px + 24, size_px, 3), np.uint8)
        canvas[24:24 + blended.shape[0], :blended.shape[1]] = blended
        cv2.putText(canvas, view, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        panels.append(canvas)
    panels.append(_colour_bar(size_px + 24, vmax))
    image = np.concatenate(panels, axis=1)
    if title:
        band = np.zeros((22, image.shape[1], 3), np.uint8)
        cv2.putText(band, title[:90], (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        image = np.concatenate([band, image], axis=0)
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        from sranet.errors import SranetError

        raise SranetError("OpenCV could not write the PNG.", path=path, hint="Check that the folder is writable.")
    return path


def _colour_bar(height: int, vmax: float, width: int = 70) -> np.ndarray:
    import cv2

    bar = np.zeros((height, width, 3), np.uint8)
    top, bottom = 30, height - 14
    ramp = np.linspace(255, 0, bottom - top).astype(np.uint8)[:, None].repeat(16, axis=1)
    bar[top:bottom, 6:22] = cv2.applyColorMap(ramp, cv2.COLORMAP_JET)
    for value, y in ((vmax, top + 4), (vmax / 2, (top + bottom) // 2), (0.0, bottom)):
        cv2.putText(bar, f"{value:.3f}", (25, y), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.putText(bar, "attn", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return bar


def write_heatmaps(prediction: Any, out_dir: str | os.PathLike, input_size: int) -> dict[str, str]:
    """PNG overlay through the top patch + attention NIfTI on the input grid for one Prediction -> paths written.

    Files are named after the case key (sanitised, never from DICOM tags): ``<case>_attention.png`` and
    ``<case>_attention.nii.gz``.
    """
    out_dir = Path(out_dir)
    volume, plan = prediction.volume, prediction.prepared.plan
    att_map = attention_on_input_grid(prediction.attention, plan, volume.shape, input_size)
    # top patch centre in this array's indices (source_voxel is in full-series indices)
    centre = np.asarray(prediction.top_patches[0]["source_voxel"]) - np.asarray(getattr(volume, "index_offset", (0, 0, 0)))
    title = f"{prediction.case}  p={prediction.probability:.3f}  top patch {prediction.top_patches[0]['patch']}"
    png = overlay_png(volume, att_map, centre, out_dir / f"{prediction.case}_attention.png", title=title)
    nii = save_attention_nifti(att_map, volume, out_dir / f"{prediction.case}_attention.nii.gz")
    return {"png": str(png), "nifti": str(nii)}
