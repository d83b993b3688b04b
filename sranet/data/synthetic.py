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

Code: this module draws the crop; the grid helpers live in ``sranet.data.synthetic_geometry``, the hip joint (head,
neck, trochanter, acetabulum; ``HipParams``) in ``sranet.data.synthetic_hip``, the lesions in
``sranet.data.synthetic_lesions``. The whole-pelvis studies (``sranet.data.synthetic_pelvis``) draw their hips with
the same hip and lesion code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sranet.data.synthetic_geometry import (
    AXIAL_DIRECTION,
    HU_MAX,
    HU_MIN,
    Field,
    blur3d,
    random_rotation,
    smooth_noise,
)
from sranet.data.synthetic_hip import HipParams, draw_hip_bones, draw_hip_params
from sranet.data.synthetic_lesions import draw_lesion
from sranet.errors import InputError

DEFAULT_SHAPE: tuple[int, int, int] = (96, 128, 128)
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
    shape = _check_args(seed, stage, shape, spacing_mm, side)
    rng = np.random.default_rng([int(seed), 7])  # every draw below, in this order, makes the anatomy
    spacing_mm, side = _spacing_and_side(rng, spacing_mm, side)
    extent = np.array(shape) * np.array(spacing_mm)
    frame, radius, center = _head_placement(rng, spacing_mm, side, extent)
    f = Field(shape, spacing_mm, center, frame)
    p = draw_hip_params(rng, radius)
    tex = smooth_noise(rng, shape, tuple(0.7 / s for s in spacing_mm))
    low = smooth_noise(rng, shape, tuple(6.0 / s for s in spacing_mm))
    lesion_rng = np.random.default_rng([int(seed), 11, int(stage)])
    lesion, p = draw_lesion(stage, f, p, lesion_rng, low)  # the stage's collapse and joint changes

    hu = _soft_tissue(f, p, rng, low)
    head_sdf = draw_hip_bones(hu, f, p, tex)
    mask = lesion.apply(hu, f, p, tex, head_sdf)
    hu = _imaging(hu, rng, shape, spacing_mm)
    origin = _origin(rng, extent)
    return PhantomCase(
        hu=hu.astype(np.float32, copy=False),
        spacing_mm=spacing_mm,  # type: ignore[arg-type]
        lesion_mask=mask,
        roi_box=_roi_box(center, radius, spacing_mm, shape),  # type: ignore[arg-type]
        stage=int(stage),
        side=side,
        seed=int(seed),
        origin_mm=tuple(float(v) for v in origin),  # type: ignore[arg-type]
        head_center_mm=tuple(float(c) for c in center),  # type: ignore[arg-type]
        head_radius_mm=radius,
        params=p.summary(),
    )


def _spacing_and_side(rng: np.random.Generator, spacing_mm, side: str | None) -> tuple[tuple[float, ...], str]:
    """The voxel spacing (drawn when not given; rounded to 0.001 mm, exactly representable in DICOM DS strings)
    and the hip's side (drawn when not given)."""
    if spacing_mm is None:
        inplane = rng.uniform(0.6, 0.9)
        spacing_mm = (float(rng.uniform(0.6, 1.5)), float(inplane), float(inplane))
    spacing_mm = tuple(round(float(s), 3) for s in spacing_mm)
    side = side or ("L" if rng.random() < 0.5 else "R")
    return spacing_mm, side


def _head_placement(rng: np.random.Generator, spacing_mm, side: str,
                    extent: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """(frame, radius mm, centre mm): the rotated anatomical frame (rows: unit superior, lateral, anterior vectors
    in (d, h, w) components), the head's radius (capped to fit small crops) and its centre near the crop's middle."""
    lateral_x = 1.0 if side == "L" else -1.0  # patient left is +x = +w
    base = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, lateral_x], [0.0, -1.0, 0.0]])  # anterior is -y = -h
    frame = (random_rotation(rng, 12.0) @ base.T).T
    radius = float(min(rng.uniform(20.0, 26.0), 0.26 * extent.min()))
    shift = rng.uniform(-1, 1, 3) * np.minimum(8.0, 0.06 * extent)
    center = extent / 2 + shift - np.array(spacing_mm) / 2
    return frame, radius, center


def _imaging(hu: np.ndarray, rng: np.random.Generator, shape, spacing_mm) -> np.ndarray:
    """The scanner: Gaussian PSF blur, correlated noise, HU rounded to integers and clipped to the int16 range."""
    psf = rng.uniform(0.4, 0.7)
    hu = blur3d(hu, (0.35, psf / spacing_mm[1], psf / spacing_mm[2]))
    noise = smooth_noise(rng, shape, (0.4, 0.5, 0.5))
    hu += noise * np.float32(rng.uniform(10.0, 30.0))
    np.clip(np.rint(hu, out=hu), HU_MIN, HU_MAX, out=hu)
    return hu


def _roi_box(center: np.ndarray, radius: float, spacing_mm, shape) -> tuple[tuple[int, int], ...]:
    """The head sphere plus ROI_MARGIN_MM on every side, as half-open voxel ranges clipped to the crop."""
    box = []
    for ax in range(3):
        lo = int(np.floor((center[ax] - radius - ROI_MARGIN_MM) / spacing_mm[ax]))
        hi = int(np.ceil((center[ax] + radius + ROI_MARGIN_MM) / spacing_mm[ax])) + 1
        box.append((max(0, lo), min(shape[ax], hi)))
    return tuple(box)


def _origin(rng: np.random.Generator, extent: np.ndarray) -> tuple[float, float, float]:
    """LPS mm of voxel (0, 0, 0) (x from w, y from h, z from d), drawn around the crop's centre, to 0.01 mm."""
    origin = (-extent[2] / 2 + float(rng.uniform(-50, 50)), -extent[1] / 2 + float(rng.uniform(-30, 30)),
              float(rng.uniform(-900, -600)))
    return tuple(round(v, 2) for v in origin)


def _soft_tissue(f: Field, p: HipParams, rng: np.random.Generator, low: np.ndarray) -> np.ndarray:
    """Air, subcutaneous fat and muscle with fat streaks. Returns a new (D, H, W) float32 HU array."""
    r = p.radius
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
