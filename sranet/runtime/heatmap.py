"""Pictures a radiologist can look at: attention overlays (PNG, OpenCV) and the attention map as NIfTI.

The (P, P, P) attention grid lives on the prepared (S, S, S) volume. ``attention_on_input_grid`` maps it back onto
the source volume's (D, H, W) voxels through the ResamplePlan (prepared voxel o samples source index
offset + scale * o, per axis), so the NIfTI overlays the original scan in any viewer.

For a whole study (``sranet.runtime.study``) one PNG shows the study, then each hip: a coronal slice through the
femoral heads with each hip's ROI box and head (``study_overview``, ``overview_image``; patient right on the left
of the picture, as radiologists read), then each predicted hip's three attention panels (``overlay_image``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
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
    image = overlay_image(volume, attention_map, centre_voxel, title=title, size_px=size_px, alpha=alpha)
    return _write_png(image, Path(path))


PNG_LEVEL = 3  # zlib level: on a study overview (1096 x 838) level 9 took 16x as long for a 15% smaller file


def _write_png(image: np.ndarray, path: Path) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL]):
        from sranet.errors import SranetError

        raise SranetError("OpenCV could not write the PNG.", path=path, hint="Check that the folder is writable.")
    return path


def overlay_image(volume: Volume, attention_map: np.ndarray, centre_voxel: tuple[float, float, float], *,
                  title: str = "", size_px: int = 256, alpha: float = 0.45) -> np.ndarray:
    """``overlay_png``'s picture as a BGR uint8 array."""
    import cv2

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
        image = _title_band(image, title)
    return image


def _title_band(image: np.ndarray, title: str) -> np.ndarray:
    import cv2

    band = np.zeros((22, image.shape[1], 3), np.uint8)
    cv2.putText(band, title[:110], (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([band, image], axis=0)


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
    att_map, image = _attention_panels(prediction, input_size)
    png = _write_png(image, out_dir / f"{prediction.case}_attention.png")
    nii = save_attention_nifti(att_map, prediction.volume, out_dir / f"{prediction.case}_attention.nii.gz")
    return {"png": str(png), "nifti": str(nii)}


def _attention_panels(prediction: Any, input_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(attention on the prediction's volume grid, its three-panel overlay through the top patch)."""
    volume, plan = prediction.volume, prediction.prepared.plan
    att_map = attention_on_input_grid(prediction.attention, plan, volume.shape, input_size)
    # top patch centre in this array's indices (source_voxel is in full-series indices)
    centre = np.asarray(prediction.top_patches[0]["source_voxel"]) - np.asarray(getattr(volume, "index_offset", (0, 0, 0)))
    side = f"  side {prediction.side}" if getattr(prediction, "side", None) else ""
    title = f"{prediction.case}{side}  p={prediction.probability:.3f}  top patch {prediction.top_patches[0]['patch']}"
    return att_map, overlay_image(volume, att_map, centre, title=title)


# -- whole studies ------------------------------------------------------------------------------------------------
@dataclass
class Overview:
    """A coronal slice of a whole study, sampled in patient space at ``y_mm`` (LPS): ``hu`` (rows, cols) float32,
    NaN outside the scan; row r is at z = ``z_top_mm`` - (r + 0.5) * ``pixel_mm`` (superior at the top), column c
    at x = ``x0_mm`` + (c + 0.5) * ``pixel_mm`` (the patient's right on the left). ``heads``: {side: FemoralHead}."""

    hu: np.ndarray
    x0_mm: float
    z_top_mm: float
    pixel_mm: float
    y_mm: float
    heads: dict[str, Any] = field(default_factory=dict)

    def to_pixel(self, x_mm: float, z_mm: float) -> tuple[int, int]:
        """(column, row) of LPS (x, z) in the picture."""
        return int(round((x_mm - self.x0_mm) / self.pixel_mm - 0.5)), int(round((self.z_top_mm - z_mm) / self.pixel_mm - 0.5))


def study_overview(volume: Volume, localisation: Any, *, max_px: int = 320) -> Overview:
    """A coronal slice through the femoral heads found (mean LPS y of their centres), or through the middle of
    the scan when there is none; at most ``max_px`` pixels along its longer side, never finer than the scan."""
    from sranet.runtime.localise_grid import sample_hu

    shape = np.asarray(volume.shape, dtype=float)
    corners = np.array([[d, h, w] for d in (-0.5, shape[0] - 0.5) for h in (-0.5, shape[1] - 0.5)
                        for w in (-0.5, shape[2] - 0.5)])
    mm = volume.index_to_patient(corners)
    lo, hi = mm.min(axis=0), mm.max(axis=0)
    heads = dict(getattr(localisation, "heads", {}) or {})
    y = float(np.mean([h.centre_mm[1] for h in heads.values()])) if heads else float((lo[1] + hi[1]) / 2)
    extent = hi - lo
    pixel = max(float(max(extent[0], extent[2])) / max_px, float(min(volume.spacing_mm)))
    cols, rows = max(1, int(np.ceil(extent[0] / pixel))), max(1, int(np.ceil(extent[2] / pixel)))
    xs = lo[0] + (np.arange(cols) + 0.5) * pixel
    zs = hi[2] - (np.arange(rows) + 0.5) * pixel
    pts = np.stack(np.broadcast_arrays(xs[None, :], np.float64(y), zs[:, None]), axis=-1)  # (rows, cols, 3)
    return Overview(sample_hu(volume, pts).astype(np.float32), float(lo[0]), float(hi[2]), pixel, y, heads)


def overview_image(overview: Overview, labels: dict[str, str], *, refused: tuple[str, ...] = (), title: str = "",
                   width_px: int | None = None) -> np.ndarray:
    """The overview as a BGR picture: each head's ROI box and sphere (green; red where the side was refused, e.g.
    metal), ``labels`` {side: text} beside each box, R / L at the picture's edges."""
    import cv2

    lo, hi = DISPLAY_WINDOW_HU
    hu = np.nan_to_num(overview.hu, nan=lo)
    grey = np.clip((hu - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)
    image = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    scale = 1.0
    if width_px is not None and image.shape[1] != width_px:
        scale = width_px / image.shape[1]
        image = cv2.resize(image, (width_px, max(1, round(image.shape[0] * scale))), interpolation=cv2.INTER_AREA)

    def px(x_mm: float, z_mm: float) -> tuple[int, int]:
        c, r = overview.to_pixel(x_mm, z_mm)
        return int(round((c + 0.5) * scale - 0.5)), int(round((r + 0.5) * scale - 0.5))

    for side, head in overview.heads.items():
        colour = (60, 60, 230) if side in refused else (80, 220, 80)
        if head.roi is not None:
            cv2.rectangle(image, px(head.roi.lo[0], head.roi.hi[2]), px(head.roi.hi[0], head.roi.lo[2]), (0, 165, 255), 1)
        centre = px(head.centre_mm[0], head.centre_mm[2])
        cv2.circle(image, centre, max(2, round(head.radius_mm / overview.pixel_mm * scale)), colour, 1, cv2.LINE_AA)
        text = labels.get(side, side)
        anchor = px(head.roi.lo[0] if head.roi else head.centre_mm[0], head.roi.lo[2] if head.roi else head.centre_mm[2])
        cv2.putText(image, text, (max(2, anchor[0]), min(image.shape[0] - 4, anchor[1] + 14)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.42, colour, 1, cv2.LINE_AA)
    h = image.shape[0]
    for text, x in (("R", 4), ("L", image.shape[1] - 14)):  # LPS x grows towards the patient's left
        cv2.putText(image, text, (x, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return _title_band(image, title) if title else image


def write_overview_png(volume: Volume, localisation: Any, path: str | os.PathLike, *, title: str = "",
                       refused: tuple[str, ...] = ()) -> Path:
    """The overview of a located study (``study_overview``) with each head's box, sphere and confidence, as PNG."""
    overview = study_overview(volume, localisation)
    labels = {side: f"{side} {h.confidence:.2f}" for side, h in overview.heads.items()}
    if not overview.heads:
        title = f"{title}  no femoral head found".strip()
    return _write_png(overview_image(overview, labels, refused=refused, title=title, width_px=640), Path(path))


def write_study_heatmaps(study: Any, out_dir: str | os.PathLike, input_size: int) -> dict[str, dict[str, str]]:
    """One PNG for a whole study (``sranet.runtime.study.StudyPrediction``): the overview with each hip's box, then
    each predicted hip's attention panels; and each predicted hip's attention NIfTI on its crop's grid. Returns
    {side: {"png": ..., "nifti": ...}} (refused sides get the PNG only). Files are named after the study's and the
    hips' keys (never DICOM tags): ``<input>_study.png``, ``<case>_attention.nii.gz``."""
    out_dir = Path(out_dir)
    panels, maps, labels, refused = [], {}, {}, []
    for side, outcome in study.sides.items():
        if hasattr(outcome, "attention"):
            att_map, image = _attention_panels(outcome, input_size)
            panels.append(image)
            nii = save_attention_nifti(att_map, outcome.volume, out_dir / f"{outcome.case}_attention.nii.gz")
            maps[side] = {"nifti": str(nii)}
            labels[side] = f"{side} p={outcome.probability:.2f}"
        else:
            refused.append(side)
            labels[side] = f"{side}: {type(outcome).__name__}"
    width = max([p.shape[1] for p in panels] or [800])
    rows = []
    if study.overview is not None:
        found = ", ".join(f"{s} {h.confidence:.2f}" for s, h in study.heads.items())
        found = f"femoral heads found (confidence) {found}" if found else "no femoral head found"
        rows.append(overview_image(study.overview, labels, refused=tuple(refused), width_px=min(width, 640),
                                   title=f"{study.case.key}: coronal; {found}"))
    rows.extend(panels)
    if not rows:
        return {}
    width = max(r.shape[1] for r in rows)
    image = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows], axis=0)
    png = _write_png(image, out_dir / f"{study.case.key}_study.png")
    return {side: {"png": str(png), **maps.get(side, {})} for side in study.sides}
