"""Drawing one whole study on its canonical grid (see ``sranet.data.synthetic_pelvis`` for the model and the API).

``render_study`` chooses the patient (size, pose, position in the field of view), the grid (matrix, pixel, slice
thickness, coverage) and the variant's twist (metal, a hip outside the field of view, a head cut by the scan's
edge), then draws the slices, the hips, blur, noise and metal streaks. All random numbers come from one generator
in a fixed order, so a seed gives one study.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sranet.data.synthetic_body import (
    PelvisAnatomy,
    apply_table,
    draw_pelvis_anatomy,
    draw_pelvis_slice,
    femoral_shaft_axis,
    table_masks,
)
from sranet.data.synthetic_canvas import Canvas, Pose
from sranet.data.synthetic_negatives import (
    add_abdominal_organs,
    draw_chest_anatomy,
    draw_chest_slice,
    draw_knee_anatomy,
    draw_knee_slice,
)
from sranet.data.synthetic_pelvis_hips import METAL_MIN_HU, draw_hip

_COARSE_MM = 12.0  # grid of the intermuscular-fat noise
HU_FLOOR = -1024.0
STANDARD_HU_MAX = 3071.0  # a standard CT scale clips metal here; extended-scale studies keep up to EXTENDED
EXTENDED_HU_MAX = 30000.0


@dataclass(frozen=True)
class GridPreset:
    """Matrix and spacing ranges of one study size. Pixels grow (up to ``pixel_max_fit``) where a patient's hips
    would not fit the field of view."""

    matrix: int
    pixel_mm: tuple[float, float]
    pixel_max_fit: float
    slice_mm: tuple[float, ...]
    slices: tuple[int, int]


GRID_PRESETS = {
    "512": GridPreset(512, (0.6, 1.0), 1.0, (1.0, 1.25, 1.5, 2.0, 2.5, 3.0), (150, 400)),
    "256": GridPreset(256, (0.9, 1.0), 1.3, (1.5, 2.0, 2.5, 3.0), (150, 170)),
}


def _grid(rng: np.random.Generator, preset: GridPreset) -> tuple[float, int, float]:
    """(slice_mm, slices, pixel_mm): the slice count within the preset's range and at most 600 mm of coverage."""
    t = float(rng.choice(preset.slice_mm))
    hi = max(preset.slices[0], min(preset.slices[1], int(600.0 // t)))
    n = int(rng.integers(preset.slices[0], hi + 1))
    return t, n, float(rng.uniform(*preset.pixel_mm))


def _placement(rng, kind, variant, anat, preset: GridPreset, pixel: float, metal_side):
    """(pixel_mm, x offset of the anatomy from the field-of-view centre, lowest anatomical height, twist info)."""
    info: dict = {}
    if kind != "pelvis":
        z_lo = {"abdomen": lambda: rng.uniform(anat.head_radius + 45.0, anat.crest_z + 20.0),
                "chest": lambda: anat.lung_z[0] - rng.uniform(0.0, 40.0),
                "knee": lambda: -rng.uniform(80.0, 200.0)}[kind]()
        return pixel, float(rng.uniform(-20.0, 20.0)), float(z_lo), info
    hw, r = anat.head_half_sep, anat.head_radius
    x_off = float(rng.uniform(-20.0, 20.0))
    z_lo = -float(rng.uniform(60.0, 170.0) * anat.k)
    if variant == "hip_out_of_fov":
        pixel = preset.pixel_mm[0]
        near = str(rng.choice(["L", "R"]))
        half = preset.matrix * pixel / 2.0
        u = max(hw + rng.uniform(-20.0, 20.0), half + r + 6.0 - hw)
        x_off = -(1.0 if near == "L" else -1.0) * float(u)  # the anatomy shifted towards the far side
        info = {"side_in_fov": near}
    elif variant == "head_cut" and rng.random() < 0.5:
        side = str(rng.choice(["L", "R"]))
        half = preset.matrix * pixel / 2.0
        edge = half + rng.uniform(-0.35, 0.3) * r  # that head's centre near the field of view's edge
        x_off = (1.0 if side == "L" else -1.0) * float(edge - hw)
        info = {"cut": "fov", "cut_side": side}
    else:
        if variant == "head_cut":
            z_lo = float(np.mean(list(anat.head_z.values())) + rng.uniform(-0.5, 0.4) * r)
            info = {"cut": "z"}
        need = 2.0 * (hw + r + 12.0 + abs(x_off)) / preset.matrix
        pixel = float(min(max(pixel, need), preset.pixel_max_fit))
    return pixel, x_off, z_lo, info


def render_study(rng: np.random.Generator, seed: int, kind: str, variant: str, stages: dict, position: str,
                 preset: GridPreset, metal_side: str | None, grid: dict | None = None):
    """Draw a study on its canonical grid. Returns (hu (D, H, W) float32, origin LPS of voxel 0, spacing
    (sD, sH, sW), {side: truth dict}, info). ``grid`` may fix "slices", "slice_mm" and "pixel_mm" (after the
    random draws, so the patient stays the same)."""
    k, r, anat, (ant, post) = _patient(rng, kind)
    t, n, pixel = _grid(rng, preset)
    pixel, x_off, z_lo, twist = _placement(rng, kind, variant, anat, preset, pixel, metal_side)
    grid = grid or {}
    n, t, pixel = int(grid.get("slices", n)), float(grid.get("slice_mm", t)), float(grid.get("pixel_mm", pixel))
    m = preset.matrix
    fov_xy = (float(rng.uniform(-30.0, 30.0)), float(rng.uniform(-20.0, 40.0)))
    centre = (fov_xy[0] + x_off, fov_xy[1] + float(rng.uniform(-25.0, 15.0)), float(rng.uniform(-900.0, -600.0)))
    origin = (round(fov_xy[0] - (m - 1) / 2 * pixel, 3), round(fov_xy[1] - (m - 1) / 2 * pixel, 3),
              round(centre[2] + z_lo, 3))
    pixel, t = round(pixel, 4), round(t, 4)
    pose = Pose(centre_mm=centre, roll_deg=float(rng.uniform(-8.0, 8.0)),
                tilt=(float(rng.uniform(-0.08, 0.08)), float(rng.uniform(-0.12, 0.12))),
                grid_origin=origin, pixel_mm=pixel, slice_mm=t)
    prone = position.endswith("P")
    table_y = centre[1] - 0.95 * ant if prone else centre[1] + 0.95 * post
    table = table_masks((m, m), table_y, origin[:2], pixel, prone)
    metal_side = metal_side or str(rng.choice(["L", "R"]))
    extended = bool(rng.random() < 0.5)
    metal_hu = float(rng.uniform(6000.0, 14000.0)) if extended else STANDARD_HU_MAX
    prosthesis = variant == "prosthesis"
    coarse = rng.standard_normal((int(n * t / _COARSE_MM) + 3, int(m * pixel / _COARSE_MM) + 3,
                                  int(m * pixel / _COARSE_MM) + 3)).astype(np.float32)
    stem = (femoral_shaft_axis(anat, metal_side), metal_hu) if prosthesis else None
    vol = _draw_slices(np.empty((n, m, m), dtype=np.float32), pose, kind, anat, coarse, table, stem)
    spacing = (t, pixel, pixel)
    hips, metal_boxes = {}, []
    if kind == "pelvis":
        hips, metal_boxes = _draw_hips(vol, rng, seed, anat, pose, origin, spacing, variant, stages, metal_side,
                                       metal_hu)
    vol = finish_volume(vol, rng, spacing, EXTENDED_HU_MAX if extended else STANDARD_HU_MAX)
    for box in metal_boxes:
        _streaks(vol, box, rng, EXTENDED_HU_MAX if extended else STANDARD_HU_MAX)
    info = {"preset": f"{m}", "body_scale": round(k, 4), "head_radius_mm": round(r, 3),
            "roll_deg": round(pose.roll_deg, 3), "tilt": [round(v, 4) for v in pose.tilt],
            "fov_offset_mm": round(x_off, 2), "metal_hu": round(metal_hu, 1), "extended_hu": extended, **twist}
    return vol, origin, spacing, hips, info


def _patient(rng: np.random.Generator, kind: str):
    """(body scale k, femoral head radius, anatomy, (anterior, posterior) depth for the table) of one patient."""
    k = float(np.clip(rng.normal(1.0, 0.07), 0.85, 1.15))
    r = float(np.clip(23.0 * k * rng.uniform(0.93, 1.07), 19.5, 27.0))
    if kind in ("pelvis", "abdomen"):
        anat = draw_pelvis_anatomy(rng, k, r)
        if kind == "abdomen":
            add_abdominal_organs(anat, rng)
        return k, r, anat, (anat.trunk[1], anat.trunk[2] * 1.07)
    if kind == "chest":
        anat = draw_chest_anatomy(rng, k)
        return k, r, anat, (anat.trunk[1], anat.trunk[2])
    anat = draw_knee_anatomy(rng, k)
    return k, r, anat, (anat.leg_r, anat.leg_r)


def _draw_slices(vol: np.ndarray, pose: Pose, kind: str, anat, coarse: np.ndarray, table, stem) -> np.ndarray:
    """Every slice of ``vol`` ((D, H, W), canonical) in 2D: the body for ``kind``, a prosthesis stem if ``stem``
    ((shaft top, bottom), HU), then the table."""
    m = vol.shape[1]
    for d in range(vol.shape[0]):
        za = pose.slice_za(d)
        cv = Canvas(vol[d], pose.slice_affine(za), pose.roll_deg, pose.pixel_mm)
        if kind in ("pelvis", "abdomen"):
            draw_pelvis_slice(cv, za, anat, _fat_field(coarse, d * pose.slice_mm / _COARSE_MM, m))
            if stem is not None:
                (top, bottom), metal_hu = stem
                cv.bar(top, top + 0.5 * (bottom - top), 7.5, 4.5, za, metal_hu)  # the stem in the femoral canal
        elif kind == "chest":
            draw_chest_slice(cv, za, anat)
        else:
            draw_knee_slice(cv, za, anat)
        apply_table(vol[d], table)
    return vol


def _fat_field(coarse: np.ndarray, zc: float, m: int) -> np.ndarray:
    """(m, m) slice of the coarse unit noise at fractional coarse slice ``zc``, upsampled linearly."""
    import cv2

    i = int(np.floor(zc))
    w = np.float32(zc - i)
    sl = coarse[i] * (1 - w) + coarse[min(i + 1, coarse.shape[0] - 1)] * w
    return cv2.resize(sl, (m, m), interpolation=cv2.INTER_LINEAR)


def _draw_hips(vol, rng, seed, anat: PelvisAnatomy, pose: Pose, origin, spacing, variant, stages, metal_side,
               metal_hu):
    hips, metal_boxes = {}, []
    radii = {side: anat.head_radius * float(rng.uniform(0.97, 1.03)) for side in ("L", "R")}
    for side in ("L", "R"):
        metal = variant if variant in ("prosthesis", "screws") and side == metal_side else "none"
        centre = pose.to_lps(anat.head_centre(side))
        drawn = draw_hip(vol, origin, spacing, centre, pose_frame(pose, side), seed=seed, side=side,
                         stage=stages[side], radius=radii[side], metal=metal, metal_hu=metal_hu)
        frac = visible_fraction(centre, radii[side], origin, spacing, vol.shape)
        if drawn.metal_box is not None:
            metal_boxes.append(drawn.metal_box)
        hips[side] = {
            "centre_mm": tuple(round(float(v), 3) for v in centre), "radius_mm": round(radii[side], 3),
            "visible_fraction": round(frac, 4),
            "visibility": "full" if frac >= 0.999 else "none" if frac < 0.02 else "partial",
            "stage": None if metal == "prosthesis" else int(stages[side]), "metal": metal,
            "lesion_mask": drawn.lesion_mask, "lesion_box": drawn.lesion_box, "params": drawn.params,
        }
    return hips, metal_boxes


def _streaks(vol: np.ndarray, box, rng: np.random.Generator, hu_max: float) -> None:
    """Metal streak artefacts: dark and bright lines through the metal on every slice that holds metal."""
    import cv2

    (d0, d1), (h0, h1), (w0, w1) = box
    angles = rng.uniform(0.0, np.pi, 6)
    m = vol.shape[1]
    for d in range(d0, d1):
        metal = vol[d, h0:h1, w0:w1] > METAL_MIN_HU
        count = int(metal.sum())
        if count == 0:
            continue
        rows, cols = np.nonzero(metal)
        c = (float(cols.mean() + w0), float(rows.mean() + h0))
        strength = min(1.0, np.sqrt(count) / 12.0)
        overlay = np.zeros(vol.shape[1:], np.float32)
        for i, a in enumerate(angles + rng.uniform(-0.05, 0.05, angles.size)):
            dx, dy = np.cos(a) * m, np.sin(a) * m
            p0 = (int(c[0] - dx), int(c[1] - dy))
            p1 = (int(c[0] + dx), int(c[1] + dy))
            cv2.line(overlay, p0, p1, float((-260.0 if i % 2 else 140.0) * strength), 1 + i % 2)
        sl = vol[d]
        body = sl > -500.0
        sl[body] += overlay[body]
        np.clip(np.rint(sl, out=sl), -1024.0, hu_max, out=sl)


def finish_volume(vol: np.ndarray, rng: np.random.Generator, spacing, hu_max: float) -> np.ndarray:
    """CT noise (10-30 HU) and the in-plane PSF (sigma 0.4-0.7 mm) in one pass, then integer HU clipped to
    [-1024, ``hu_max``]. White noise is added before the blur, scaled so that it ends at the drawn standard
    deviation, correlated by the PSF as a reconstruction kernel correlates it. (D, H, W) float32, in place."""
    import cv2

    psf = rng.uniform(0.4, 0.7)
    sigma = float(rng.uniform(10.0, 30.0))
    cv2.setRNGSeed(int(rng.integers(0, 2**31 - 1)))
    noise = np.empty_like(vol)
    cv2.randn(noise.reshape(vol.shape[0], -1), 0.0, 1.0)
    s_h, s_w = psf / spacing[1], psf / spacing[2]
    ks = [2 * int(np.ceil(3 * s)) + 1 for s in (s_w, s_h)]
    gain = float(np.sqrt(np.sum(cv2.getGaussianKernel(ks[0], s_w) ** 2) * np.sum(cv2.getGaussianKernel(ks[1], s_h) ** 2)))
    vol += noise * np.float32(sigma / gain)
    for d in range(vol.shape[0]):
        cv2.GaussianBlur(vol[d], (ks[0], ks[1]), sigmaX=s_w, sigmaY=s_h, dst=vol[d])
    np.clip(np.rint(vol, out=vol), HU_FLOOR, hu_max, out=vol)
    return vol


def visible_fraction(centre_mm, radius_mm: float, origin, spacing, shape) -> float:
    """Share of the sphere's volume inside the canonical grid's extent (voxel faces), from 4096 fixed samples."""
    pts = _unit_ball_samples() * radius_mm + np.asarray(centre_mm, dtype=float)  # (N, 3) LPS x, y, z
    idx = (pts[:, ::-1] - np.array([origin[2], origin[1], origin[0]])) / np.asarray(spacing, dtype=float)
    inside = np.all((idx >= -0.5) & (idx <= np.asarray(shape) - 0.5), axis=1)
    return float(inside.mean())


def _unit_ball_samples(n: int = 4096) -> np.ndarray:
    rng = np.random.default_rng(1234)
    p = rng.uniform(-1.0, 1.0, (3 * n, 3))
    return p[(p * p).sum(axis=1) <= 1.0][:n]


def pose_frame(pose: Pose, side: str) -> np.ndarray:
    """(3, 3) rows: superior, lateral, anterior unit vectors (LPS) of a hip on ``side`` under ``pose``."""
    rot = pose.rotation
    sgn = 1.0 if side == "L" else -1.0
    return np.stack([rot @ np.array([0.0, 0.0, 1.0]), rot @ np.array([sgn, 0.0, 0.0]), rot @ np.array([0.0, -1.0, 0.0])])
