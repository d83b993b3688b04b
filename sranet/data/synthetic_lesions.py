"""ARCO-stage lesions for the synthetic phantoms (see ``sranet.data.synthetic`` for the whole model).

The necrotic segment is the part of the femoral head inside a sphere of radius ``rho`` (0.4-0.6 x head radius for
stage I, 0.6-0.85 for II-IV,
border made irregular by a smooth noise field) centred on the antero-superior articular surface, the weight-bearing
zone where osteonecrosis usually starts. That segment is the ground-truth lesion mask for stages I-IV. In stages
II-IV the whole segment is sclerotic (+200-350 HU, ``DIFFUSE_SCLEROSIS_HU``: the mixed sclerosis of CT-visible
osteonecrosis), with a denser band at its border, cysts, and from stage III on a subchondral crescent and collapse.

Drawing happens in two steps because collapse changes the bone's shape: ``draw_lesion`` runs before the bones are
drawn (it returns the hip's parameters with the collapse depth, joint-space width and acetabular sclerosis the
stage causes), and ``Lesion.apply`` runs after them (band, cysts, crescent, osteophytes, and the mask). Lengths in
mm, values in HU.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from sranet.data.synthetic_geometry import Field, unit
from sranet.data.synthetic_hip import HipParams

# Diffuse sclerosis of the necrotic segment in stages II-IV (HU added to the trabecular bone). Without it the only
# signs were thin bands and small cysts that look like cortex and joint space, and a 64^3 demo model did not learn.
DIFFUSE_SCLEROSIS_HU = (200.0, 350.0)


class Lesion:
    """A drawn lesion's parameters; ``apply`` paints it into a (D, H, W) HU array and returns the mask."""

    def __init__(self, stage: int, rng: np.random.Generator, low: np.ndarray):
        self.stage = stage
        self.rng = rng
        self.low = low
        self.rho = 0.0

    def apply(self, hu: np.ndarray, f: Field, p: HipParams, tex: np.ndarray, head_sdf: np.ndarray) -> np.ndarray:
        """Paint the stage's CT signs into ``hu`` ((D, H, W) HU) in place; return the (D, H, W) uint8 0/1 lesion mask.

        ``tex`` is the bone texture the head was drawn with, ``head_sdf`` the head's signed distance (mm) that
        ``draw_hip_bones`` returned."""
        if self.stage == 0:
            return np.zeros(hu.shape, dtype=np.uint8)
        rng, r = self.rng, p.radius
        in_head = head_sdf < 0
        sc = unit(p.u_les) * r  # surface centre of the necrotic segment, frame coordinates
        idx = np.nonzero(in_head & (f.dot(p.u_les) > r - 1.6 * self.rho))  # candidate voxels only
        s, lat, a = f.s[idx], f.l[idx], f.a[idx]
        d_s = np.sqrt((s - sc[0]) ** 2 + (lat - sc[1]) ** 2 + (a - sc[2]) ** 2)
        rho_eff = self.rho * (1.0 + 0.08 * self.low[idx])  # irregular border, about +-1.5 mm
        zone = d_s < rho_eff
        mask = np.zeros(hu.shape, dtype=np.uint8)
        mask[tuple(i[zone] for i in idx)] = 1
        if self.stage == 1:
            return mask  # invisible on CT by design

        vals = hu[idx]
        t = tex[idx]
        band_w = rng.uniform(2.0, 3.5)
        band = np.abs(d_s - rho_eff) < band_w / 2
        vals[band] += rng.uniform(450.0, 700.0)  # sclerotic band at the segment's border
        vals[zone] += rng.uniform(*DIFFUSE_SCLEROSIS_HU)  # the dead segment is denser than the living head
        vals[zone & (t > 0.8)] += 150.0  # mottled sclerosis
        vals[zone & (t < -1.2)] -= 150.0  # and lysis
        for _ in range(int(rng.integers(2, 6))):  # cysts with sclerotic rims
            direction = unit(-unit(p.u_les) + rng.uniform(-0.6, 0.6, 3))
            c = sc + direction * rng.uniform(0.25, 0.7) * self.rho
            rc = min(3.5, self.rho * rng.uniform(0.12, 0.25))
            dc = np.sqrt((s - c[0]) ** 2 + (lat - c[1]) ** 2 + (a - c[2]) ** 2)
            vals[zone & (dc < rc + 1.0) & (dc >= rc)] += 300.0
            vals[zone & (dc < rc)] = rng.uniform(20.0, 60.0)
        if self.stage >= 3:  # subchondral fracture: lucent crescent just under the subchondral plate
            sdf = head_sdf[idx]
            crescent = zone & (sdf < -p.cortex) & (sdf > -p.cortex - rng.uniform(1.0, 1.6))
            vals[crescent] = rng.uniform(-150.0, 10.0)
        if self.stage == 4:
            vals[zone & ~band] += 120.0  # compressed, sclerotic fragment
        hu[idx] = vals
        if self.stage == 4:
            _osteophytes(hu, f, p, rng)
        return mask


def _osteophytes(hu: np.ndarray, f: Field, p: HipParams, rng: np.random.Generator) -> None:
    """Small bony spurs around the head-neck junction (stage IV joint changes), drawn where there is no bone yet."""
    r = p.radius
    u_n = unit(p.u_neck)
    perp = unit(np.cross(u_n, [0.0, 0.0, 1.0]))
    perp2 = np.cross(u_n, perp)
    near = np.nonzero(f.dist < 1.3 * r)
    s, lat, a = f.s[near], f.l[near], f.a[near]
    vals = hu[near]
    for _ in range(int(rng.integers(2, 5))):
        t = rng.uniform(0, 2 * np.pi)
        c = [float(v) for v in u_n * 0.55 * r + (np.cos(t) * perp + np.sin(t) * perp2) * 0.85 * r]
        rc = rng.uniform(2.5, 4.0)
        spur = ((s - c[0]) ** 2 + (lat - c[1]) ** 2 + (a - c[2]) ** 2 < rc * rc) & (vals < 200)
        vals[spur] = 0.8 * p.cortex_hu
    hu[near] = vals


def draw_lesion(stage: int, f: Field, p: HipParams, rng: np.random.Generator,
                low: np.ndarray) -> tuple[Lesion, HipParams]:
    """Choose the lesion's size and the shape changes it causes, before the bones are drawn (see module doc).

    ``low`` is a (D, H, W) smooth unit-variance field (irregular borders and collapse). Returns the lesion and the
    hip's parameters with the stage's collapse, joint-space narrowing and acetabular sclerosis applied."""
    lesion = Lesion(stage, rng, low)
    p = replace(p, collapse_map=0.0)
    if stage == 0:
        return lesion, p
    r = p.radius
    lesion.rho = r * (rng.uniform(0.4, 0.6) if stage == 1 else rng.uniform(0.6, 0.85))
    if stage == 3:
        collapse = float(r * rng.uniform(0.045, 0.085))  # 1-2 mm for a 23 mm head
        p = replace(p, collapse=collapse, collapse_map=collapse)
    elif stage == 4:
        collapse = float(r * rng.uniform(0.15, 0.25))  # 3.5-6 mm for a 23 mm head
        p = replace(p, collapse=collapse,
                    collapse_map=collapse * (1.0 + 0.35 * low),  # irregular, flattened surface
                    gap=float(rng.uniform(0.8, 1.5)),  # joint-space narrowing
                    acet_sclerosis=float(rng.uniform(200.0, 350.0)))
    return lesion, p
