"""The two hip joints of a whole-pelvis study, drawn in 3D with the crop phantoms' hip and lesion code, and metal.

Each hip is drawn in its own box of the study's canonical grid (array axes along LPS +z, +y, +x) on a ``Field``
centred on the femoral head: ``draw_hip_params`` / ``draw_lesion`` / ``draw_hip_bones`` / ``Lesion.apply`` exactly
as in ``sranet.data.synthetic``, so necrosis looks the same as in the crops. The neck and the pelvic column are
capped (``HipParams.neck_length`` / ``column_length``): the femoral shaft and the ilium are drawn slice by slice by
``sranet.data.synthetic_body``.

Metal (one side of some studies), in HU above ``METAL_MIN_HU``:
- ``prosthesis``: the head replaced by a 13-17 mm ball on a trunnion along the neck, inside a 3 mm metal cup with a
  polyethylene liner; the stem runs down the femoral canal (``draw_stem``).
- ``screws``: two or three parallel 6.5-7.3 mm cannulated screws along the neck into the head.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from sranet.data.synthetic_geometry import Field, random_rotation, smooth_noise, unit
from sranet.data.synthetic_hip import HipParams, draw_hip_bones, draw_hip_params
from sranet.data.synthetic_lesions import draw_lesion

METAL_MIN_HU = 3000.0
METALS = ("none", "prosthesis", "screws")


@dataclass
class DrawnHip:
    """What drawing one hip produced, in the canonical grid.

    centre_mm     LPS head centre; radius_mm the head radius.
    frame_lps     (3, 3) rows: unit superior, lateral, anterior vectors of the hip in LPS.
    lesion_mask   uint8 0/1 crop around the head (None for a prosthesis); lesion_box its canonical voxel box.
    params        ``HipParams.summary()``.
    metal_box     canonical voxel box holding the hip's metal, None without metal.
    """

    centre_mm: np.ndarray
    radius_mm: float
    frame_lps: np.ndarray
    lesion_mask: np.ndarray | None
    lesion_box: tuple | None
    params: dict
    metal_box: tuple | None = None


def _box_around(points, radii, origin, spacing, shape) -> tuple[tuple[int, int], ...]:
    """Canonical voxel box (half-open, clipped) holding spheres at LPS ``points`` with ``radii``."""
    pts = np.asarray(points, dtype=float)
    rad = np.asarray(radii, dtype=float)[:, None]
    lo_mm, hi_mm = (pts - rad).min(axis=0), (pts + rad).max(axis=0)  # (x, y, z)
    box = []
    for axis, lps in enumerate((2, 1, 0)):  # canonical axes d, h, w run along z, y, x
        lo = int(np.floor((lo_mm[lps] - origin[lps]) / spacing[axis]))
        hi = int(np.ceil((hi_mm[lps] - origin[lps]) / spacing[axis])) + 1
        box.append((max(0, lo), min(shape[axis], hi)))
    return tuple(box)


def draw_hip(vol: np.ndarray, origin, spacing, centre_lps, frame_lps, *, seed: int, side: str, stage: int,
             radius: float, metal: str, metal_hu: float) -> DrawnHip:
    """Draw one hip into ``vol`` ((D, H, W) canonical HU, float32) in place.

    origin      LPS (x, y, z) of canonical voxel (0, 0, 0); spacing (sD, sH, sW) mm.
    frame_lps   (3, 3) rows: superior, lateral, anterior unit vectors (LPS) before the hip's own small rotation.
    The hip's shape depends on (seed, side) only, its lesion on (seed, side, stage): one hip, five stages.
    """
    side_i = 0 if side == "L" else 1
    rng = np.random.default_rng([int(seed), 13, side_i])
    frame = (random_rotation(rng, 5.0) @ np.asarray(frame_lps, dtype=float).T).T
    p = replace(draw_hip_params(rng, radius), neck_length=2.5 * radius, column_length=1.7 * radius)
    c = np.asarray(centre_lps, dtype=float)
    s_lps = [unit(frame.T @ np.asarray(u)) for u in (p.u_neck, p.u_acet)]  # neck and column axes in LPS
    pts = [c, c + 2.5 * radius * s_lps[0], c + 1.7 * radius * s_lps[1], c + 2.3 * radius * s_lps[0]]
    reach = radius + p.gap + p.acet_t
    box = _box_around(pts, [reach + 2, 1.35 * radius + 2, reach + 2, 0.9 * radius + 2], origin, spacing, vol.shape)
    if any(hi - lo < 2 for lo, hi in box):  # the hip lies outside the grid
        return DrawnHip(c, radius, frame, None, None, p.summary())
    lo_mm = np.array([origin[2] + box[0][0] * spacing[0], origin[1] + box[1][0] * spacing[1],
                      origin[0] + box[2][0] * spacing[2]])
    centre_dhw = np.array([c[2], c[1], c[0]]) - lo_mm
    frame_dhw = frame[:, ::-1]  # LPS (x, y, z) components -> canonical (d, h, w) = (z, y, x)
    shape = tuple(hi - lo for lo, hi in box)
    sub = vol[box[0][0]:box[0][1], box[1][0]:box[1][1], box[2][0]:box[2][1]]
    f = Field(shape, spacing, centre_dhw, frame_dhw)
    tex = smooth_noise(rng, shape, tuple(0.7 / s for s in spacing))
    low = smooth_noise(rng, shape, tuple(6.0 / s for s in spacing))
    lesion_rng = np.random.default_rng([int(seed), 11, int(stage), side_i])
    lesion, p = draw_lesion(stage if metal != "prosthesis" else 0, f, p, lesion_rng, low)
    head_sdf = draw_hip_bones(sub, f, p, tex)
    mask = None if metal == "prosthesis" else lesion.apply(sub, f, p, tex, head_sdf)
    metal_box = None
    if metal == "prosthesis":
        _prosthesis(sub, f, p, rng, metal_hu)
        metal_box = box
    elif metal == "screws":
        _screws(sub, f, p, rng, metal_hu)
        metal_box = box
    lesion_box, crop = None, None
    if mask is not None:
        hb = _box_around([c], [radius + 3.0], origin, spacing, vol.shape)
        rel = tuple(slice(a - b0, b - b0) for (a, b), (b0, _) in zip(hb, box, strict=True))
        crop, lesion_box = np.ascontiguousarray(mask[rel]), hb
    return DrawnHip(c, radius, frame, crop, lesion_box, p.summary(), metal_box)


def _prosthesis(hu: np.ndarray, f: Field, p: HipParams, rng: np.random.Generator, metal_hu: float) -> None:
    """Replace the head and the upper neck by a metal-on-polyethylene total hip (in place)."""
    r = p.radius
    ball = rng.uniform(0.58, 0.68) * r
    cup_in = r + 0.8
    cos_acet = f.dot(p.u_acet) / np.maximum(f.dist, 1e-3)
    proj_n = f.dot(p.u_neck)
    rad_n = np.sqrt(np.maximum(f.dist * f.dist - proj_n * proj_n, 0.0))
    old = (f.dist < cup_in + 3.0) | ((proj_n > 0) & (proj_n < 1.1 * r) & (rad_n < 0.75 * r))
    hu[old] = 40.0  # head and upper neck resected
    hu[(f.dist < cup_in) & (cos_acet > 0.05)] = -80.0  # polyethylene liner
    hu[(f.dist >= cup_in) & (f.dist < cup_in + 3.0) & (cos_acet > 0.05)] = metal_hu  # cup
    trunnion = (proj_n > 0) & (proj_n < 2.2 * r) & (rad_n < 5.5 + 0.06 * np.maximum(proj_n - r, 0.0))
    hu[trunnion | (f.dist < ball)] = metal_hu


def _screws(hu: np.ndarray, f: Field, p: HipParams, rng: np.random.Generator, metal_hu: float) -> None:
    """Two or three parallel cannulated screws from the lateral femur along the neck into the head (in place)."""
    r = p.radius
    u = unit(p.u_neck)
    e1 = unit(np.cross(u, [1.0, 0.0, 0.0]))
    e2 = np.cross(u, e1)
    n = int(rng.integers(2, 4))
    for i in range(n):
        t = 2 * np.pi * i / n + rng.uniform(-0.3, 0.3)
        off = (np.cos(t) * e1 + np.sin(t) * e2) * 0.3 * r
        a = -u * 0.6 * r + off  # tip in the head, 0.6 r beyond the centre
        b = u * 3.3 * r + off  # head of the screw at the lateral cortex
        d = b - a
        rel_s, rel_l, rel_a = f.s - float(a[0]), f.l - float(a[1]), f.a - float(a[2])
        t_ = np.clip((rel_s * float(d[0]) + rel_l * float(d[1]) + rel_a * float(d[2])) / float(d @ d), 0.0, 1.0)
        ds = rel_s - t_ * float(d[0])
        dl = rel_l - t_ * float(d[1])
        da = rel_a - t_ * float(d[2])
        hu[ds * ds + dl * dl + da * da < rng.uniform(3.25, 3.65) ** 2] = metal_hu
