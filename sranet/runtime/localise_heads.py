"""Is this bone sphere a femoral head? Radial HU profiles around a candidate centre, read at full resolution.

Along 128 directions, HU are sampled every millimetre from the candidate centre outwards (trilinear, in patient
millimetres). On each direction the head's surface is the steepest fall of HU at a radius of 15-34 mm; a sphere
fitted to those surface points gives the centre and radius (to about a millimetre). The same profiles then say what
surrounds the sphere, per direction relative to the patient (superior is LPS +z, lateral is +x or -x):

- ``edge_cover``   share of directions with a clear surface near the fitted radius (a ball, not a tube or a plate);
- ``fill_hu``      median HU inside 0.6 radius (bone inside);
- ``cup``          share of the supero-medial directions with a surface, then bone again beyond a gap: the
                   acetabulum across the joint space (a tibial or vertebral blob continues into bone without one);
- ``below_free``   share of the inferior directions with no bone beyond the surface (no tibia, no humeral shaft);
- ``neck``         share of the infero-lateral directions where bone continues through the surface: the neck;
- ``air_near``     share of samples 5-30 mm beyond the surface below -500 HU (lungs, skin: a shoulder, not a hip).

``cup`` and ``neck`` are computed for both lateral hypotheses (+x and -x); a femoral head shows them on one side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sranet.runtime.localise_grid import fibonacci_directions, sample_hu
from sranet.runtime.volume import Volume

DIRS = fibonacci_directions(128)
RHO = np.arange(2.0, 48.0, 1.0)  # mm from the centre
NECK_HU = 150.0


@dataclass
class HeadCandidate:
    """A sphere and what surrounds it. ``centre_mm`` LPS; ``features`` as in the module docstring; ``cup`` and
    ``neck`` are ``{+1: ..., -1: ...}`` for the lateral direction +x or -x."""

    centre_mm: np.ndarray
    radius_mm: float
    votes: float
    edge_cover: float = 0.0
    fill_hu: float = float("nan")
    cup: dict = field(default_factory=dict)
    neck: dict = field(default_factory=dict)
    below_free: float = 0.0
    air_near: float = 0.0
    visible: float = 1.0

    def score(self, lateral: int) -> float:
        """0-1: how much this looks like a femoral head whose lateral side is ``lateral`` (+1: +x, -1: -x)."""
        parts = (
            _ramp(self.edge_cover, 0.25, 0.55),
            _ramp(self.fill_hu, 120.0, 220.0),
            _ramp(self.cup.get(lateral, 0.0), 0.2, 0.55),
            _ramp(self.below_free, 0.3, 0.7),
            _ramp(self.neck.get(lateral, 0.0), 0.15, 0.45),
            1.0 - _ramp(self.air_near, 0.05, 0.2),
        )
        return float(np.prod(parts) ** (1.0 / len(parts)))

    def summary(self) -> dict:
        return {"centre_mm": [round(float(v), 2) for v in self.centre_mm], "radius_mm": round(self.radius_mm, 2),
                "votes": round(self.votes, 1), "edge_cover": round(self.edge_cover, 3),
                "fill_hu": round(float(self.fill_hu), 1), "cup": {k: round(v, 3) for k, v in self.cup.items()},
                "neck": {k: round(v, 3) for k, v in self.neck.items()}, "below_free": round(self.below_free, 3),
                "air_near": round(self.air_near, 3), "visible": round(self.visible, 3)}


def _ramp(x: float, lo: float, hi: float) -> float:
    if not np.isfinite(x):
        return 0.0
    return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0))


def _profiles(volume: Volume, centre: np.ndarray) -> np.ndarray:
    """(directions, radii) HU along DIRS at RHO from ``centre`` (NaN outside the volume)."""
    pts = centre[None, None, :] + DIRS[:, None, :] * RHO[None, :, None]
    return sample_hu(volume, pts)


def _edges(prof: np.ndarray, r_lo: float, r_hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Per direction: radius of the innermost clear fall of HU within [r_lo, r_hi] (the head's own surface, not
    the acetabulum's beyond it) and whether there is one (a fall of at least 150 HU over 2 mm and 40 % of the
    direction's steepest, from bone inside)."""
    diff = prof[:, 2:] - prof[:, :-2]  # HU over 2 mm, centred on RHO[1:-1]
    rho = RHO[1:-1]
    window = (rho >= r_lo) & (rho <= r_hi)
    d = np.where(window[None, :] & np.isfinite(diff), diff, np.inf)
    steepest = -d.min(axis=1)
    left = np.concatenate([np.full((len(d), 1), np.inf), d[:, :-1]], axis=1)
    right = np.concatenate([d[:, 1:], np.full((len(d), 1), np.inf)], axis=1)
    minimum = (d <= left) & (d <= right) & (-d >= np.maximum(150.0, 0.4 * steepest)[:, None])
    has = minimum.any(axis=1)
    j = np.where(has, np.argmax(minimum, axis=1), 0)  # the first (innermost) qualifying minimum
    rows = np.arange(len(d))
    r = rho[j].astype(np.float64)
    jl, jr = np.clip(j - 1, 0, diff.shape[1] - 1), np.clip(j + 1, 0, diff.shape[1] - 1)
    a, b, c = diff[rows, jl], diff[rows, j], diff[rows, jr]
    den = a - 2 * b + c
    with np.errstate(invalid="ignore", divide="ignore"):
        shift = np.where(np.isfinite(den) & (den > 0), np.clip(0.5 * (a - c) / den, -0.5, 0.5), 0.0)
        inside = np.nanmean(np.where(RHO[None, :] < r[:, None] - 2.0, prof, np.nan), axis=1)
    ok = has & (inside > NECK_HU)
    return r + shift, ok


def _fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Least-squares sphere through (N, 3) points; None when they are too few or degenerate."""
    if len(points) < 12:
        return None
    a = np.hstack([2.0 * points, np.ones((len(points), 1))])
    b = (points * points).sum(axis=1)
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    c = sol[:3]
    r2 = sol[3] + c @ c
    return (c, float(np.sqrt(r2))) if r2 > 0 else None


def analyse_candidate(volume: Volume, centre_mm: np.ndarray, votes: float,
                      radius_range: tuple[float, float]) -> HeadCandidate | None:
    """Refine a voted centre to the fitted sphere and measure its surroundings; None if no sphere is found."""
    r_lo, r_hi = radius_range
    c = np.asarray(centre_mm, dtype=np.float64)
    radius = 0.5 * (r_lo + r_hi)
    for _ in range(2):
        prof = _profiles(volume, c)
        r_dir, ok = _edges(prof, r_lo - 3.0, r_hi + 3.0)
        if ok.sum() < 12:
            return None
        radius = float(np.median(r_dir[ok]))
        keep = ok & (np.abs(r_dir - radius) < 4.0)
        fit = _fit_sphere(c + DIRS[keep] * r_dir[keep, None])
        if fit is None or np.linalg.norm(fit[0] - c) > 10.0:
            break
        c, radius = fit
    if not r_lo - 2.0 <= radius <= r_hi + 2.0:
        return None
    prof = _profiles(volume, c)
    r_dir, ok = _edges(prof, radius - 4.0, radius + 4.0)
    valid = np.isfinite(prof[:, : int(radius + 10)]).all(axis=1)
    cand = HeadCandidate(c, radius, votes, visible=float(valid.mean()))
    if valid.sum() < 20:
        return cand
    cand.edge_cover = float((ok & valid).sum() / valid.sum())
    cand.fill_hu = float(np.nanmedian(prof[:, RHO <= 0.6 * radius].ravel()))
    beyond = prof[:, (RHO >= radius + 2.0) & (RHO <= radius + 14.0)]
    with np.errstate(invalid="ignore"):
        bone_beyond = np.mean(beyond >= NECK_HU, axis=1) >= 0.35  # NaN compares False
        through = np.nanmean(prof[:, (RHO >= radius + 2.0) & (RHO <= radius + 12.0)], axis=1) >= NECK_HU
    joint = ok & bone_beyond  # a surface, then bone again: a joint
    near = prof[:, (RHO >= radius + 5.0) & (RHO <= radius + 30.0)]
    cand.air_near = float(np.mean(near[np.isfinite(near)] < -500.0)) if np.isfinite(near).any() else 0.0
    sup = np.array([0.0, 0.0, 1.0])
    below = (DIRS @ -sup > np.cos(np.deg2rad(35.0))) & valid
    cand.below_free = float(1.0 - bone_beyond[below].mean()) if below.any() else 0.0
    for lat in (1, -1):
        lateral = np.array([float(lat), 0.0, 0.0])
        u_cup = 0.85 * sup - 0.5 * lateral
        u_neck = -0.55 * sup + 0.8 * lateral
        cup_dirs = (DIRS @ (u_cup / np.linalg.norm(u_cup)) > np.cos(np.deg2rad(40.0))) & valid
        neck_dirs = (DIRS @ (u_neck / np.linalg.norm(u_neck)) > np.cos(np.deg2rad(25.0))) & valid
        cand.cup[lat] = float(joint[cup_dirs].mean()) if cup_dirs.any() else 0.0
        cand.neck[lat] = float(through[neck_dirs].mean()) if neck_dirs.any() else 0.0
    return cand
