"""Synthetic AVNFH phantoms: CT-like crops around one femoral head, in HU, with a ground-truth lesion mask.

The phantom model (all lengths in millimetres, every tissue drawn from signed-distance functions on the voxel grid,
vectorised numpy; no per-voxel loops):

Geometry. The crop is an axial CT block of shape (D, H, W); array axis 0 runs along +z (superior), axis 1 along +y
(posterior), axis 2 along +x (patient left), i.e. exactly the grid that ``sranet.runtime.io.load_volume`` returns
for the DICOM series written by ``sranet.data.dicom_write``. Voxel spacing is drawn per case (in-plane 0.6-0.9 mm,
slice 0.6-1.5 mm). An anatomical frame (superior, lateral, anterior) is rotated by up to +-12 degrees about each
axis, so orientation varies; ``side`` picks the left or right hip (lateral = +x or -x).

Tissues (HU, before blur and noise):
- air outside the body (-1000): the skin is the intersection of two large cylinders along the body axis, one
  lateral beyond the greater trochanter and one anterior 15-45 mm in front of the head (the groin of a slim
  patient); subcutaneous fat (about -100) under the skin; muscle (about +50) with smooth intermuscular fat streaks.
- femoral head: sphere of radius 20-26 mm (capped to fit small crops) with a 1.2-2 mm subchondral cortical shell
  (800-1300 HU) and a trabecular interior (220-350 HU) carrying band-passed texture (+-60 HU).
- femoral neck: a flaring cylinder along an infero-lateral, slightly anteverted axis, thinner trabecular bone;
  a greater-trochanter blob at its lateral end. Head, neck and trochanter share one cortex (union of distances).
- acetabulum: a cup of bone (cortex + trabecular) around the upper head beyond a 2-4 mm joint space of cartilage
  and fluid (about +70 HU), continuing into the pelvic column along the supero-medial axis.
- imaging: Gaussian blur (PSF sigma 0.4-0.7 mm in-plane, 0.35 x slice spacing along z), then correlated noise
  (sigma 10-30 HU); HU rounded to integers and clipped to [-1024, 3071], so an int16 DICOM round trip is exact.

ROI. ``roi_box`` is the head sphere plus ``ROI_MARGIN_MM`` (5 mm) on every side, clipped to the crop: a tight box
like a femoral-head detector's, so the head fills most of a 64^3 network input.

Lesions by ARCO stage (see ``sranet.data.synthetic_lesions``): the necrotic segment is the part of the head inside
a sphere centred on the antero-superior (weight-bearing) surface; it is the ground-truth ``lesion_mask``.
- 0: no lesion, empty mask.
- I: the mask is drawn but the HU are untouched (MRI-only disease; label noise on CT by design).
- II: diffuse sclerosis of the segment (+200-350 HU), a serpiginous sclerotic band at its border, mottled sclerosis
  and lysis, and small cysts with sclerotic rims.
- III: II plus a subchondral crescent (lucent line under the plate) and 1-2 mm collapse of the articular surface.
- IV: II-III plus 3.5-6 mm irregular collapse (flattened head), joint-space narrowing, acetabular sclerosis and
  osteophytes at the head-neck junction.
Collapse depths are quoted for a 23 mm head; they scale with the head radius (small test crops shrink the head).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sranet.errors import InputError

DEFAULT_SHAPE: tuple[int, int, int] = (96, 128, 128)
HU_MIN, HU_MAX = -1024.0, 3071.0
# column a = LPS direction of array axis a: axial slices, D along +z (feet to head), H along +y, W along +x
AXIAL_DIRECTION = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
STAGES = (0, 1, 2, 3, 4)
# ROI = head sphere + this margin on every side: a tight crop, as a head detector gives, so the head fills most of
# the network input (10 mm left it small and the demo model did not learn; see the module docstring).
ROI_MARGIN_MM = 5.0


@dataclass
class PhantomCase:
    """One synthetic case.

    hu           (D, H, W) float32 HU, integer-valued (so a DICOM int16 round trip is lossless).
    spacing_mm   (sD, sH, sW) voxel spacing in mm, array-axis order.
    lesion_mask  (D, H, W) uint8 0/1 ground-truth necrotic segment (all zero for stage 0).
    roi_box      ((d0, d1), (h0, h1), (w0, w1)) half-open voxel box around the femoral head with margin.
    stage        ARCO stage 0-4; ``label`` = stage > 0.
    side         "L" or "R": which hip.
    origin_mm    LPS position of voxel (0, 0, 0); ``direction`` is AXIAL_DIRECTION (axial slices).
    head_center_mm / head_radius_mm: the head in array-axis millimetres (index * spacing).
    """

    hu: np.ndarray
    spacing_mm: tuple[float, float, float]
    lesion_mask: np.ndarray
    roi_box: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    stage: int
    side: str
    seed: int
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    head_center_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    head_radius_mm: float = 0.0
    params: dict = field(default_factory=dict)

    @property
    def label(self) -> int:
        return int(self.stage > 0)

    @property
    def roi(self) -> str:
        """The ROI in the manifest's text form: ``"d0:d1,h0:h1,w0:w1"`` (voxel indices, half-open)."""
        return ",".join(f"{a}:{b}" for a, b in self.roi_box)

    @property
    def direction(self) -> np.ndarray:
        return AXIAL_DIRECTION.copy()

    def to_volume(self):
        """This case as a ``sranet.runtime.volume.Volume`` (what ``load_volume`` returns for its DICOM series)."""
        from sranet.runtime.volume import Volume

        return Volume(
            hu=self.hu,
            spacing_mm=self.spacing_mm,
            origin_mm=self.origin_mm,
            direction=AXIAL_DIRECTION.copy(),
            meta={"modality": "CT", "synthetic": True},
            source=f"synthetic:{self.seed}",
        )


class Field:
    """Coordinates of every voxel in a rotated anatomical frame, as broadcastable float32 arrays (mm).

    ``s``, ``l``, ``a`` are the superior, lateral and anterior coordinates relative to the head centre; each is a
    full (D, H, W) array. ``dot(u)`` gives the coordinate along a direction written in that frame.
    """

    def __init__(self, shape, spacing_mm, center_mm, frame):
        axes = [(np.arange(n, dtype=np.float32) * sp - c) for n, sp, c in zip(shape, spacing_mm, center_mm, strict=True)]
        r0 = axes[0][:, None, None]
        r1 = axes[1][None, :, None]
        r2 = axes[2][None, None, :]
        # frame rows: unit superior, lateral, anterior vectors in array-axis (d, h, w) components
        # Python-float coefficients keep the arithmetic in float32 (NumPy 2 promotion rules)
        self.s, self.l, self.a = (float(f[0]) * r0 + float(f[1]) * r1 + float(f[2]) * r2 for f in frame)
        self.dist = np.sqrt(self.s * self.s + self.l * self.l + self.a * self.a)

    def dot(self, u) -> np.ndarray:
        """Coordinate along ``u`` = (superior, lateral, anterior) components (normalised here)."""
        u = np.asarray(u, dtype=np.float64)
        u = u / np.linalg.norm(u)
        return float(u[0]) * self.s + float(u[1]) * self.l + float(u[2]) * self.a


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def blur3d(vol: np.ndarray, sigma_vox: tuple[float, float, float]) -> np.ndarray:
    """Separable Gaussian blur of a (D, H, W) float32 array, sigma in voxels per axis (OpenCV, reflect border)."""
    import cv2

    out = np.ascontiguousarray(vol, dtype=np.float32)
    sd, sh, sw = sigma_vox
    if sh > 0.05 or sw > 0.05:
        ks = [2 * int(np.ceil(3 * s)) + 1 if s > 0.05 else 1 for s in (sw, sh)]
        out = np.stack([cv2.GaussianBlur(sl, (ks[0], ks[1]), sigmaX=max(sw, 1e-3), sigmaY=max(sh, 1e-3)) for sl in out])
    if sd > 0.05:
        k = cv2.getGaussianKernel(2 * int(np.ceil(3 * sd)) + 1, sd).astype(np.float32)
        flat = out.reshape(out.shape[0], -1)
        out = cv2.sepFilter2D(flat, -1, np.ones((1, 1), np.float32), k, borderType=cv2.BORDER_REFLECT).reshape(out.shape)
    return out


def smooth_noise(rng: np.random.Generator, shape, sigma_vox) -> np.ndarray:
    """Gaussian-filtered white noise, rescaled to zero mean and unit standard deviation. (D, H, W) float32."""
    field_ = blur3d(rng.standard_normal(shape, dtype=np.float32), sigma_vox)
    field_ -= field_.mean()
    field_ /= max(float(field_.std()), 1e-6)
    return field_


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    out = np.eye(3)
    for axis in range(3):
        t = np.deg2rad(rng.uniform(-max_deg, max_deg))
        c, s = np.cos(t), np.sin(t)
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        out = r @ out
    return out


def _check_args(seed, stage, shape, spacing_mm, side) -> tuple[int, int, int]:
    if stage not in STAGES:
        raise InputError(f"stage={stage!r} is not an ARCO stage; use one of 0, 1, 2, 3, 4.")
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 16:
        raise InputError(f"phantom shape {shape!r} must be three sizes (D, H, W), each >= 16 voxels.")
    if spacing_mm is not None and (len(spacing_mm) != 3 or min(spacing_mm) <= 0):
        raise InputError(f"spacing_mm={spacing_mm!r} must be three positive millimetre values (sD, sH, sW).")
    if side not in (None, "L", "R"):
        raise InputError(f"side={side!r} must be 'L', 'R' or None (random).")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed={seed!r} must be a non-negative integer.")
    return shape  # type: ignore[return-value]


def generate_case(
    seed: int,
    stage: int,
    *,
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    spacing_mm: tuple[float, float, float] | None = None,
    side: str | None = None,
) -> PhantomCase:
    """Draw one phantom: (D, H, W) HU volume, lesion mask and ROI. Deterministic for a given (seed, stage, ...).

    The anatomy depends only on ``seed`` (and shape/spacing/side), so the same seed with two stages gives the same
    hip with and without disease. 96x128x128 took 0.35-0.55 s per case on a shared, busy 2-core CPU
    (``benchmarks/synth_speed.py`` measures it on a quiet one).
    """
    from sranet.data.synthetic_lesions import draw_lesion

    shape = _check_args(seed, stage, shape, spacing_mm, side)
    rng = np.random.default_rng([int(seed), 7])
    if spacing_mm is None:
        inplane = rng.uniform(0.6, 0.9)
        spacing_mm = (float(rng.uniform(0.6, 1.5)), float(inplane), float(inplane))
    spacing_mm = tuple(round(float(s), 3) for s in spacing_mm)  # exactly representable in DICOM DS strings
    side = side or ("L" if rng.random() < 0.5 else "R")
    extent = np.array(shape) * np.array(spacing_mm)

    # -- anatomical frame: rows are unit superior, lateral, anterior vectors in (d, h, w) components
    lateral_x = 1.0 if side == "L" else -1.0  # patient left is +x = +w
    base = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, lateral_x], [0.0, -1.0, 0.0]])  # anterior is -y = -h
    frame = (_rotation(rng, 12.0) @ base.T).T
    radius = float(min(rng.uniform(20.0, 26.0), 0.26 * extent.min()))
    shift = rng.uniform(-1, 1, 3) * np.minimum(8.0, 0.06 * extent)
    center = extent / 2 + shift - np.array(spacing_mm) / 2
    f = Field(shape, spacing_mm, center, frame)
    p = {
        "radius": radius,
        "gap": float(rng.uniform(2.0, 4.0)),
        "cortex": float(rng.uniform(1.2, 2.0)),
        "acet_t": float(rng.uniform(6.0, 10.0)),
        "u_acet": unit([0.85, -0.45 + rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.15)]),
        "u_neck": unit([-0.55 + rng.uniform(-0.1, 0.1), 0.8, 0.18 + rng.uniform(-0.05, 0.1)]),
        "u_les": unit([0.85, -0.15 + rng.uniform(-0.15, 0.15), 0.4 + rng.uniform(-0.15, 0.15)]),
        "trab_hu": float(rng.uniform(220, 350)),
        "cortex_hu": float(rng.uniform(800, 1300)),
        "collapse": 0.0,
    }
    tex = smooth_noise(rng, shape, tuple(0.7 / s for s in spacing_mm))
    low = smooth_noise(rng, shape, tuple(6.0 / s for s in spacing_mm))
    lesion_rng = np.random.default_rng([int(seed), 11, int(stage)])
    lesion = draw_lesion(stage, f, p, lesion_rng, low)  # may set p["collapse"], p["gap"], ...

    hu = _soft_tissue(f, p, rng, low)
    _bones(hu, f, p, tex)
    mask = lesion.apply(hu, f, p, tex)

    psf = rng.uniform(0.4, 0.7)
    hu = blur3d(hu, (0.35, psf / spacing_mm[1], psf / spacing_mm[2]))
    noise = smooth_noise(rng, shape, (0.4, 0.5, 0.5))
    hu += noise * np.float32(rng.uniform(10.0, 30.0))
    np.clip(np.rint(hu, out=hu), HU_MIN, HU_MAX, out=hu)

    margin = ROI_MARGIN_MM
    box = []
    for ax in range(3):
        lo = int(np.floor((center[ax] - radius - margin) / spacing_mm[ax]))
        hi = int(np.ceil((center[ax] + radius + margin) / spacing_mm[ax])) + 1
        box.append((max(0, lo), min(shape[ax], hi)))
    origin = (-extent[2] / 2 + float(rng.uniform(-50, 50)), -extent[1] / 2 + float(rng.uniform(-30, 30)),
              float(rng.uniform(-900, -600)))  # LPS of voxel (0,0,0): x from w, y from h, z from d
    origin = tuple(round(v, 2) for v in origin)
    return PhantomCase(
        hu=hu.astype(np.float32, copy=False),
        spacing_mm=spacing_mm,  # type: ignore[arg-type]
        lesion_mask=mask,
        roi_box=tuple(box),  # type: ignore[arg-type]
        stage=int(stage),
        side=side,
        seed=int(seed),
        origin_mm=tuple(float(v) for v in origin),  # type: ignore[arg-type]
        head_center_mm=tuple(float(c) for c in center),  # type: ignore[arg-type]
        head_radius_mm=radius,
        params={k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in p.items()
                if not k.startswith("_") and k != "collapse_map"},  # scalars and direction vectors only
    )


def _soft_tissue(f: Field, p: dict, rng: np.random.Generator, low: np.ndarray) -> np.ndarray:
    """Air, subcutaneous fat and muscle with fat streaks. Returns a new (D, H, W) float32 HU array."""
    r = p["radius"]
    body_r = 160.0
    skin = 2.8 * r + rng.uniform(5.0, 30.0)  # lateral skin, beyond the greater trochanter
    ant = rng.uniform(-20.0, 20.0)
    depth = body_r - np.sqrt((f.l + (body_r - skin)) ** 2 + (f.a - ant) ** 2)  # mm under the skin; < 0 is air
    skin_a = r + rng.uniform(15.0, 45.0)  # anterior skin (groin), thin patients show air in the crop
    front = body_r - np.sqrt((f.a + (body_r - skin_a)) ** 2 + (f.l - rng.uniform(-30.0, 30.0)) ** 2)
    depth = np.minimum(depth, front)
    fat_mm = rng.uniform(8.0, 25.0)
    hu = np.full(f.s.shape, 50.0, dtype=np.float32)  # muscle
    hu[low > 1.2] = -90.0  # intermuscular fat
    hu[depth < fat_mm] = -105.0
    hu[depth < 0] = -1000.0
    return hu


def femur_sdf(f: Field, p: dict) -> tuple[np.ndarray, np.ndarray]:
    """Signed distances (mm, negative inside) of the (possibly collapsed) head alone and of head + neck + trochanter."""
    r = p["radius"]
    head = f.dist - r
    if p["collapse"] > 0:
        cut = f.dot(p["u_les"]) - (r - p["collapse_map"])
        head = np.maximum(head, cut)
    proj = f.dot(p["u_neck"])
    rad = np.sqrt(np.maximum(f.dist * f.dist - proj * proj, 0.0))
    neck_r = 0.62 * r + 0.45 * np.maximum(proj - 1.3 * r, 0.0)
    neck = np.maximum(rad - neck_r, -proj)
    u_n = unit(p["u_neck"])
    troch_c = [float(v) for v in u_n * 2.3 * r + np.array([0.7 * r, 0.0, 0.0])]
    troch = np.sqrt((f.s - troch_c[0]) ** 2 + (f.l - troch_c[1]) ** 2 + (f.a - troch_c[2]) ** 2) - 0.9 * r
    return head, np.minimum(np.minimum(head, neck), troch)


def _bones(hu: np.ndarray, f: Field, p: dict, tex: np.ndarray) -> None:
    """Acetabulum/pelvis, joint space and femur (cortex + textured trabecular bone), drawn into ``hu`` in place."""
    r, gap, t = p["radius"], p["gap"], p["acet_t"]
    cos_acet = f.dot(p["u_acet"]) / np.maximum(f.dist, 1e-3)
    proj = f.dot(p["u_acet"])
    rad = np.sqrt(np.maximum(f.dist * f.dist - proj * proj, 0.0))
    inner = r + gap
    # pelvis = acetabular cup (shell over the upper head) + pelvic column along u_acet; sdf negative inside
    cup = np.maximum(np.maximum(inner - f.dist, f.dist - (inner + t)), 0.15 - cos_acet)
    column = np.maximum(np.maximum(rad - (inner + t), inner - f.dist), -proj)
    pelvis = np.minimum(cup, column)
    joint = (f.dist < inner + 0.5) & (cos_acet > 0.1)
    hu[joint] = 70.0
    bone = pelvis < 0
    roof = np.clip((cos_acet[bone] - 0.3) / 0.4, 0.0, 1.0) * (f.dist[bone] < inner + t)  # weight-bearing roof
    hu[bone] = 260.0 + 50.0 * tex[bone] + p.get("acet_sclerosis", 0.0) * roof
    hu[(pelvis < 0) & (pelvis > -1.8)] = p["cortex_hu"]

    head, femur = femur_sdf(f, p)
    inside = femur < 0
    neckish = inside & (head >= 0)
    hu[inside] = p["trab_hu"] + 60.0 * tex[inside]
    hu[neckish] -= 60.0  # the neck's trabecular bone is sparser than the head's
    hu[inside & (femur > -p["cortex"])] = p["cortex_hu"]
    p["_head_sdf"] = head
