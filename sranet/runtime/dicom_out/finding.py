"""What the DICOM writers are told about one study: a finding per hip and the algorithm that made it. Torch-free.

Every coordinate is in the source series' patient space (LPS, millimetres): x to the patient's left, y to the
posterior, z to the head. The classes check their values when built, so a writer never encodes a NaN, a swapped
side or a probability outside [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sranet.errors import InputError

SIDES = {"L": "left", "R": "right"}
MAX_QC_TEXT = 1024  # characters per QC flag (each becomes an SR TEXT item, which stays readable)
Box3 = tuple[tuple[float, float], tuple[float, float], tuple[float, float]]


def _finite(name: str, values, n: int) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise InputError(f"{name}={values!r} is not {n} numbers.") from None
    if len(out) != n or not all(math.isfinite(v) for v in out):
        raise InputError(f"{name}={values!r} must be {n} finite numbers.")
    return out


def _unit_interval(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name}={value!r} is not a number.") from None
    if not (0.0 <= v <= 1.0):  # also catches NaN
        raise InputError(f"{name}={value!r} must lie in [0, 1].")
    return v


@dataclass(frozen=True)
class AttentionPatch:
    """One patch of the attention grid: its centre (LPS mm), its edge lengths along the attention map's axes (mm)
    and its attention weight in [0, 1]."""

    centre_mm: tuple[float, float, float]
    size_mm: tuple[float, float, float]
    weight: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "centre_mm", _finite("AttentionPatch.centre_mm", self.centre_mm, 3))
        size = _finite("AttentionPatch.size_mm", self.size_mm, 3)
        if min(size) <= 0:
            raise InputError(f"AttentionPatch.size_mm={self.size_mm!r} must be positive edge lengths in mm.")
        object.__setattr__(self, "size_mm", size)
        object.__setattr__(self, "weight", _unit_interval("AttentionPatch.weight", self.weight))


@dataclass(frozen=True)
class HeadLocation:
    """The localiser's femoral head: centre (LPS mm), radius (mm) and confidence in [0, 1]."""

    centre_mm: tuple[float, float, float]
    radius_mm: float
    confidence: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "centre_mm", _finite("HeadLocation.centre_mm", self.centre_mm, 3))
        (radius,) = _finite("HeadLocation.radius_mm", [self.radius_mm], 1)
        if radius <= 0:
            raise InputError(f"HeadLocation.radius_mm={self.radius_mm!r} must be positive (mm).")
        object.__setattr__(self, "radius_mm", radius)
        object.__setattr__(self, "confidence", _unit_interval("HeadLocation.confidence", self.confidence))


@dataclass(frozen=True, eq=False)
class AttentionMap:
    """The attention as a volume with its own geometry.

    weights  (S, S, S) float32, finite, >= 0: one weight per voxel (the patch grid upsampled onto the prepared
             volume, or any other grid).
    affine   (4, 4) maps voxel indices (i, j, k, 1) of ``weights`` to LPS millimetres (x, y, z, 1); index (0, 0, 0)
             is the centre of the first voxel.
    """

    weights: np.ndarray
    affine: np.ndarray

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, dtype=np.float32)
        if w.ndim != 3 or min(w.shape) < 1:
            raise InputError(f"AttentionMap.weights has shape {w.shape}; a 3-D (S, S, S) array was expected.")
        if not np.isfinite(w).all() or float(w.min()) < 0:
            raise InputError("AttentionMap.weights must be finite and non-negative.",
                             hint="Refuse the hip (no map) rather than writing a map the model cannot vouch for.")
        a = np.asarray(self.affine, dtype=float)
        if a.shape != (4, 4) or not np.isfinite(a).all() or not np.allclose(a[3], [0, 0, 0, 1]):
            raise InputError("AttentionMap.affine must be a finite (4, 4) matrix with last row (0, 0, 0, 1).")
        if abs(np.linalg.det(a[:3, :3])) < 1e-9:
            raise InputError("AttentionMap.affine is singular (a zero-length or collinear voxel axis).")
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "affine", a)

    @property
    def axes(self) -> np.ndarray:
        """(3, 3) unit LPS direction of each voxel axis (column a is axis a)."""
        m = self.affine[:3, :3]
        return m / np.linalg.norm(m, axis=0, keepdims=True)


@dataclass(frozen=True, eq=False)
class HipFinding:
    """One hip's result as the writers encode it.

    side         "L" or "R", the patient's side (from the geometry, never from array order).
    probability  p(AVNFH) in [0, 1]; None when the hip was not assessed (no femoral head found, metal, ...):
                 then ``decision`` and ``threshold`` are None too and ``qc`` says why.
    threshold    the decision threshold stored with the model.
    decision     AVNFH present: ``probability >= threshold``.
    roi_mm       the femoral-head ROI box, LPS axis-aligned: ((x0, x1), (y0, y1), (z0, z1)), low < high.
    head         the localiser's head (optional: manual ROIs have none).
    top_patches  the highest-weighted attention patches, highest first.
    qc           QC flags (short strings such as "roi_truncated"); each becomes a text item in the SR.
    attention    the attention map written as a Parametric Map (optional).
    """

    side: str
    probability: float | None
    threshold: float | None
    decision: bool | None
    roi_mm: Box3 | None = None
    head: HeadLocation | None = None
    top_patches: tuple[AttentionPatch, ...] = ()
    qc: tuple[str, ...] = ()
    attention: AttentionMap | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise InputError(f"HipFinding.side={self.side!r} is not 'L' or 'R' (the patient's side).")
        assessed = self.probability is not None
        if assessed:
            p = _unit_interval("HipFinding.probability", self.probability)
            t = _unit_interval("HipFinding.threshold", self.threshold)
            if not isinstance(self.decision, (bool, np.bool_)) or bool(self.decision) != (p >= t):
                raise InputError(f"HipFinding.decision={self.decision!r} disagrees with probability {p} >= "
                                 f"threshold {t}.", hint="Pass decision=probability >= threshold.")
            object.__setattr__(self, "probability", p)
            object.__setattr__(self, "threshold", t)
            object.__setattr__(self, "decision", bool(self.decision))
            if self.roi_mm is None:
                raise InputError(f"the {SIDES[self.side]} hip has a probability but no roi_mm; the SR places "
                                 "every assessed finding in the source series' frame of reference.")
        elif self.decision is not None or self.threshold is not None or self.attention is not None or self.top_patches:
            raise InputError(f"the {SIDES[self.side]} hip was not assessed (probability None) but carries a decision, "
                             "threshold, attention map or patches.", hint="Give a probability, or none of these.")
        elif not self.qc:
            raise InputError(f"the {SIDES[self.side]} hip was not assessed but no QC flag says why.",
                             hint="Add a reason, e.g. qc=('no femoral head found',).")
        if self.roi_mm is not None:
            box = tuple(_finite("HipFinding.roi_mm", pair, 2) for pair in self.roi_mm)
            if len(box) != 3 or any(hi <= lo for lo, hi in box):
                raise InputError(f"HipFinding.roi_mm={self.roi_mm!r} must be ((x0, x1), (y0, y1), (z0, z1)) "
                                 "with each low < high (LPS mm).")
            object.__setattr__(self, "roi_mm", box)
        for flag in self.qc:
            if not isinstance(flag, str) or not flag.strip() or len(flag) > MAX_QC_TEXT:
                raise InputError(f"QC flag {flag!r} must be a non-empty string of at most {MAX_QC_TEXT} characters.")
        object.__setattr__(self, "qc", tuple(self.qc))
        object.__setattr__(self, "top_patches", tuple(self.top_patches))

    @property
    def side_name(self) -> str:
        return SIDES[self.side]


@dataclass(frozen=True)
class AlgorithmInfo:
    """Who made the finding: written into the SR's algorithm identification and every object's equipment module.

    name            "SRANet".
    version         the sranet version.
    model_sha256    SHA-256 (64 hex digits) of the model artifact.
    artifact        the artifact's file name (no folders: they can name a user or a hospital).
    """

    model_sha256: str
    artifact: str
    version: str = ""
    name: str = "SRANet"

    def __post_init__(self) -> None:
        sha = str(self.model_sha256).lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise InputError(f"AlgorithmInfo.model_sha256={self.model_sha256!r} is not 64 hex digits.")
        object.__setattr__(self, "model_sha256", sha)
        if not self.version:
            from sranet import __version__

            object.__setattr__(self, "version", __version__)
        name = str(self.artifact).replace("\\", "/").rsplit("/", 1)[-1]
        if not name:
            raise InputError("AlgorithmInfo.artifact is empty; give the model artifact's file name.")
        object.__setattr__(self, "artifact", name)
