"""One hip joint for the synthetic phantoms: femoral head, neck and greater trochanter, acetabulum and joint space.

Shared by the crop phantoms (``sranet.data.synthetic``) and the whole-pelvis studies
(``sranet.data.synthetic_pelvis``), so a femoral head and its lesion look the same in both. All lengths in mm,
values in HU; every structure is a signed distance (negative inside) on a ``Field`` centred on the head.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from sranet.data.synthetic_geometry import Field, unit


@dataclass(frozen=True)
class HipParams:
    """The shape of one hip, in the head-centred anatomical frame (superior, lateral, anterior).

    radius          femoral head radius.
    gap             joint space between head and acetabular cup (cartilage and fluid).
    cortex          subchondral / cortical shell thickness of the femur.
    acet_t          acetabular cup thickness.
    u_acet          direction from the head centre to the pelvic column (supero-medial).
    u_neck          femoral neck axis (infero-lateral, slightly anteverted).
    u_les           direction of the necrotic segment's surface centre (antero-superior, weight-bearing zone).
    trab_hu         trabecular bone HU of the head; cortex_hu the cortical HU.
    collapse        depth of the articular collapse (ARCO III-IV), 0 for none.
    collapse_map    the collapse depth per voxel (a (D, H, W) array for an irregular surface) or a scalar.
    acet_sclerosis  HU added to the acetabular roof (ARCO IV joint changes).
    neck_length     where the flaring neck ends (rounded) along ``u_neck``; None: it runs to the grid's edge (the
                    crops); column_length likewise for the pelvic column along ``u_acet``. The whole-pelvis studies
                    cap both and draw the femoral shaft and the ilium themselves.
    """

    radius: float
    gap: float
    cortex: float
    acet_t: float
    u_acet: np.ndarray
    u_neck: np.ndarray
    u_les: np.ndarray
    trab_hu: float
    cortex_hu: float
    collapse: float = 0.0
    collapse_map: float | np.ndarray = 0.0
    acet_sclerosis: float = 0.0
    neck_length: float | None = None
    column_length: float | None = None

    def summary(self) -> dict:
        """Scalars and direction vectors as plain JSON types (the per-voxel collapse map and unset caps left out)."""
        out = asdict(self)
        out.pop("collapse_map")
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in out.items() if v is not None}


def draw_hip_params(rng: np.random.Generator, radius: float) -> HipParams:
    """Random hip shape around a head of ``radius`` mm (healthy: no collapse). Consumes 10 draws of ``rng``."""
    return HipParams(
        radius=radius,
        gap=float(rng.uniform(2.0, 4.0)),
        cortex=float(rng.uniform(1.2, 2.0)),
        acet_t=float(rng.uniform(6.0, 10.0)),
        u_acet=unit([0.85, -0.45 + rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.15)]),
        u_neck=unit([-0.55 + rng.uniform(-0.1, 0.1), 0.8, 0.18 + rng.uniform(-0.05, 0.1)]),
        u_les=unit([0.85, -0.15 + rng.uniform(-0.15, 0.15), 0.4 + rng.uniform(-0.15, 0.15)]),
        trab_hu=float(rng.uniform(220, 350)),
        cortex_hu=float(rng.uniform(800, 1300)),
    )


def femur_sdf(f: Field, p: HipParams) -> tuple[np.ndarray, np.ndarray]:
    """Signed distances (mm, negative inside) of the (possibly collapsed) head alone and of head + neck + trochanter."""
    r = p.radius
    head = f.dist - r
    if p.collapse > 0:
        cut = f.dot(p.u_les) - (r - p.collapse_map)
        head = np.maximum(head, cut)
    proj = f.dot(p.u_neck)
    rad = np.sqrt(np.maximum(f.dist * f.dist - proj * proj, 0.0))
    if p.neck_length is None:
        neck_r = 0.62 * r + 0.45 * np.maximum(proj - 1.3 * r, 0.0)
        neck = np.maximum(rad - neck_r, -proj)
    else:  # a rounded end at neck_length
        end = np.minimum(proj, p.neck_length)
        neck_r = 0.62 * r + 0.45 * np.maximum(end - 1.3 * r, 0.0)
        neck = np.maximum(np.sqrt(rad * rad + (proj - end) ** 2) - neck_r, -proj)
    u_n = unit(p.u_neck)
    troch_c = [float(v) for v in u_n * 2.3 * r + np.array([0.7 * r, 0.0, 0.0])]
    troch = np.sqrt((f.s - troch_c[0]) ** 2 + (f.l - troch_c[1]) ** 2 + (f.a - troch_c[2]) ** 2) - 0.9 * r
    return head, np.minimum(np.minimum(head, neck), troch)


def draw_hip_bones(hu: np.ndarray, f: Field, p: HipParams, tex: np.ndarray) -> np.ndarray:
    """Acetabulum/pelvic column, joint space and femur (cortex + textured trabecular bone), drawn into ``hu``
    ((D, H, W) float32 HU) in place. ``tex``: (D, H, W) unit-variance texture. Returns the head's signed distance."""
    r, gap, t = p.radius, p.gap, p.acet_t
    cos_acet = f.dot(p.u_acet) / np.maximum(f.dist, 1e-3)
    proj = f.dot(p.u_acet)
    rad = np.sqrt(np.maximum(f.dist * f.dist - proj * proj, 0.0))
    inner = r + gap
    # pelvis = acetabular cup (shell over the upper head) + pelvic column along u_acet; sdf negative inside
    cup = np.maximum(np.maximum(inner - f.dist, f.dist - (inner + t)), 0.15 - cos_acet)
    if p.column_length is not None:  # a rounded end at column_length
        rad = np.sqrt(rad * rad + (proj - np.minimum(proj, p.column_length)) ** 2)
    column = np.maximum(np.maximum(rad - (inner + t), inner - f.dist), -proj)
    pelvis = np.minimum(cup, column)
    joint = (f.dist < inner + 0.5) & (cos_acet > 0.1)
    hu[joint] = 70.0
    bone = pelvis < 0
    roof = np.clip((cos_acet[bone] - 0.3) / 0.4, 0.0, 1.0) * (f.dist[bone] < inner + t)  # weight-bearing roof
    hu[bone] = 260.0 + 50.0 * tex[bone] + p.acet_sclerosis * roof
    hu[(pelvis < 0) & (pelvis > -1.8)] = p.cortex_hu

    head, femur = femur_sdf(f, p)
    inside = femur < 0
    neckish = inside & (head >= 0)
    hu[inside] = p.trab_hu + 60.0 * tex[inside]
    hu[neckish] -= 60.0  # the neck's trabecular bone is sparser than the head's
    hu[inside & (femur > -p.cortex)] = p.cortex_hu
    return head
