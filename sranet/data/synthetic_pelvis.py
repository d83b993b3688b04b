"""Whole-pelvis CT phantoms: studies of realistic size with both hips, an ARCO stage per hip, and negatives.

A study is drawn on a canonical grid (array axes along LPS +z, +y, +x), slice by slice for the body
(``sranet.data.synthetic_body``), in 3D boxes for the hip joints (``sranet.data.synthetic_pelvis_hips``, the crop
phantoms' hip and lesion code), then blurred (PSF), given correlated CT noise and metal streaks, rounded to integer
HU, and finally stored in the array order a scanner writes for the patient position:

| position | ImageOrientationPatient | array axes (D, H, W) along LPS | canonical grid flipped along |
|---|---|---|---|
| HFS (head first, supine) | 1,0,0, 0,1,0   | +z, +y, +x | nothing |
| FFS (feet first, supine) | -1,0,0, 0,1,0  | -z, +y, -x | D, W |
| HFP (head first, prone)  | -1,0,0, 0,-1,0 | +z, -y, -x | H, W |
| FFP (feet first, prone)  | 1,0,0, 0,-1,0  | -z, -y, +x | D, H |

The anatomy is in patient coordinates whatever the position (DICOM's patient frame); the table lies behind a supine
and in front of a prone patient. Patient left (side "L") is LPS +x.

Kinds: ``pelvis`` (both hips; variants ``normal``, ``prosthesis`` / ``screws`` on one side, ``hip_out_of_fov``: one
head outside the field of view, ``head_cut``: the scan's edge cuts the heads), and negatives without hips:
``abdomen`` (above the pelvis), ``chest`` (lungs and ribs, humeral heads in some), ``knee`` (both knees).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sranet.data.synthetic_render import GRID_PRESETS, render_study
from sranet.errors import InputError

KINDS = ("pelvis", "abdomen", "chest", "knee")
VARIANTS = ("normal", "prosthesis", "screws", "hip_out_of_fov", "head_cut")
POSITIONS = ("HFS", "FFS", "HFP", "FFP")
# per position: which canonical axes are flipped in storage, and the stored axes' LPS directions (columns d, h, w)
_FLIPS = {"HFS": (False, False, False), "FFS": (True, False, True), "HFP": (False, True, True),
          "FFP": (True, True, False)}


@dataclass
class HipTruth:
    """The truth about one hip of a study.

    centre_mm         LPS head centre; radius_mm the head radius (the native head's, also under a prosthesis).
    visible_fraction  share of the head's volume inside the scanned grid; visibility "full" (>= 0.999),
                      "partial" or "none" (< 0.02).
    stage             ARCO stage 0-4 of the native head; None under a prosthesis.
    metal             "none", "prosthesis" or "screws".
    lesion_mask       uint8 0/1 crop around the head on the stored grid (None when the head is not drawn or is
                      replaced); lesion_box its half-open voxel box ((d0, d1), (h0, h1), (w0, w1)) in that grid.
    """

    side: str
    centre_mm: tuple[float, float, float]
    radius_mm: float
    visible_fraction: float
    visibility: str
    stage: int | None
    metal: str = "none"
    lesion_mask: np.ndarray | None = None
    lesion_box: tuple | None = None
    params: dict = field(default_factory=dict)


@dataclass
class PelvisStudy:
    """One synthetic study in stored (DICOM) order.

    hu          (D, H, W) float32 integer-valued HU, as ``load_volume`` returns the written series.
    spacing_mm  (sD, sH, sW); origin_mm LPS of voxel (0, 0, 0); direction (3, 3), column a = LPS of axis a.
    hips        {"L": HipTruth, "R": HipTruth} for kind "pelvis"; empty for the negatives.
    """

    hu: np.ndarray
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    direction: np.ndarray
    patient_position: str
    kind: str
    variant: str
    seed: int
    hips: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def to_volume(self):
        """This study as a ``sranet.runtime.volume.Volume`` (what ``load_volume`` returns for its DICOM series)."""
        from sranet.runtime.volume import Volume

        return Volume(hu=self.hu, spacing_mm=self.spacing_mm, origin_mm=self.origin_mm,
                      direction=self.direction.copy(), meta={"modality": "CT", "synthetic": True},
                      source=f"synthetic-pelvis:{self.seed}")


def storage_direction(position: str) -> np.ndarray:
    """(3, 3) direction (column a = LPS unit vector of stored axis a) for a patient position."""
    flips = _FLIPS[position]
    canonical = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # columns: +z, +y, +x
    return canonical * np.where(flips, -1.0, 1.0)[None, :]


def _check(kind, variant, position, preset, stages) -> None:
    for name, value, choices in (("kind", kind, KINDS), ("variant", variant, VARIANTS),
                                 ("patient_position", position, (None, *POSITIONS)),
                                 ("grid preset", preset, tuple(GRID_PRESETS))):
        if value not in choices:
            raise InputError(f"{name}={value!r} is not one of {', '.join(map(str, choices))}.")
    if kind != "pelvis" and variant != "normal":
        raise InputError(f"variant={variant!r} needs kind='pelvis'; studies without hips have no hip variants.")
    if any(s not in range(5) for s in stages.values()) or set(stages) - {"L", "R"}:
        raise InputError(f"stages={stages!r} must map 'L'/'R' to ARCO stages 0-4.")


def generate_pelvis_study(seed: int, *, kind: str = "pelvis", variant: str = "normal",
                          stages: dict[str, int] | None = None, patient_position: str | None = None,
                          preset: str = "256", metal_side: str | None = None, slices: int | None = None,
                          slice_mm: float | None = None, pixel_mm: float | None = None) -> PelvisStudy:
    """Draw one whole study. Deterministic for the same arguments; the anatomy depends on ``seed`` (and kind,
    preset), so the same seed with other stages gives the same patient with other lesions.

    stages            {"L": 0-4, "R": 0-4}; default both 0.
    patient_position  HFS, FFS, HFP or FFP; None draws one (HFS and FFS most often).
    preset            "256" (256 x 256, 150-170 slices of 1.5-3 mm) or "512" (512 x 512, 0.6-1.0 mm pixels,
                      150-400 slices of 1-3 mm).
    metal_side        side of the prosthesis or screws (variants "prosthesis" / "screws"); None draws one.
    slices, slice_mm, pixel_mm   fix the grid instead of drawing it (tests, benchmarks: e.g. 512 x 512 x 300).
    """
    stages = dict(stages or {"L": 0, "R": 0})
    _check(kind, variant, patient_position, preset, stages)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed={seed!r} must be a non-negative integer.")
    rng = np.random.default_rng([int(seed), 17])
    position = patient_position or str(rng.choice(POSITIONS, p=[0.45, 0.35, 0.1, 0.1]))
    grid = {k: v for k, v in (("slices", slices), ("slice_mm", slice_mm), ("pixel_mm", pixel_mm)) if v is not None}
    if any(not (isinstance(v, (int, float)) and v > 0) for v in grid.values()) or grid.get("slices", 1) < 1:
        raise InputError(f"slices/slice_mm/pixel_mm must be positive numbers, got {grid}.")
    canon, origin, spacing, hips, info = render_study(rng, int(seed), kind, variant, stages, position,
                                                      GRID_PRESETS[preset], metal_side, grid)
    return _store(canon, origin, spacing, hips, info, position, kind, variant, int(seed))


def _store(canon: np.ndarray, origin, spacing, hips, info, position, kind, variant, seed) -> PelvisStudy:
    """Flip the canonical grid into the stored order of ``position`` and express the truth in that grid."""
    flips = _FLIPS[position]
    index = tuple(slice(None, None, -1) if f else slice(None) for f in flips)
    hu = np.ascontiguousarray(canon[index])
    shape = canon.shape
    direction = storage_direction(position)
    corner = [shape[a] - 1 if flips[a] else 0 for a in range(3)]  # canonical index of stored voxel (0, 0, 0)
    stored_origin = tuple(float(v) for v in np.asarray(origin) + np.array(
        [corner[2] * spacing[2], corner[1] * spacing[1], corner[0] * spacing[0]]))
    truth = {}
    for side, h in hips.items():
        box, crop = h.pop("lesion_box"), h.pop("lesion_mask")
        if box is not None:
            box = tuple((shape[a] - hi, shape[a] - lo) if flips[a] else (lo, hi) for a, (lo, hi) in enumerate(box))
            crop = np.ascontiguousarray(crop[index])
        truth[side] = HipTruth(side=side, lesion_box=box, lesion_mask=crop, **h)
    return PelvisStudy(hu=hu, spacing_mm=tuple(float(s) for s in spacing), origin_mm=stored_origin,
                       direction=direction, patient_position=position, kind=kind, variant=variant, seed=seed,
                       hips=truth, info=info)
