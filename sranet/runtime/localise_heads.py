"""Is this bone sphere a femoral head? Radial HU profiles around a candidate centre, read at full resolution.

Along 128 directions, HU are sampled every millimetre from the candidate centre outwards (trilinear, in patient
millimetres). Every clear fall of HU out of bone at 14-35 mm is a point that may lie on the head's surface; the
sphere that most directions fall on (four-point samples, then a trimmed least-squares fit) gives the centre and
radius to about a millimetre, also when a necrotic segment's sclerotic border or the acetabulum falls too. The same profiles then say what
surrounds the sphere, per direction relative to the patient (superior is LPS +z, lateral is +x or -x):

- ``edge_cover``   share of directions with a clear surface near the fitted radius (a ball, not a tube or a plate);
- ``fill_hu``      median HU inside 0.6 radius (bone inside);
- ``cup``          share of the supero-medial directions with a surface, then bone again beyond a gap: the
                   acetabulum across the joint space (a tibial or vertebral blob continues into bone without one);
- ``below_free``   share of the inferior directions with no bone beyond the surface (no tibia, no humeral shaft);
- ``neck``         share of the infero-lateral directions where bone continues through the surface: the neck;
- ``air_near``     share of samples 5-30 mm beyond the surface below -500 HU (lungs, skin: a shoulder, not a hip).

``cup`` and ``neck`` are computed for both lateral hypotheses (+x and -x); a femoral head shows them on one side.
A feature whose directions leave the scanned volume is NaN (unknown), not evidence either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sranet.runtime.localise_grid import fibonacci_directions, sample_hu
from sranet.runtime.volume import Volume

DIRS = fibonacci_directions(128)
RHO = np.arange(2.0, 48.0, 1.0)  # mm from the centre: the full profile, for the surroundings
NECK_HU = 150.0
EXIT_HU = 300.0  # beyond a bone surface: joint space, cartilage, muscle or fat
METAL_FILL_HU = 1500.0  # a sphere this dense inside is metal
MIN_SUPPORT = 0.4  # share of the directions in view falling on the first sphere: less is not a ball of bone
MIN_DIRECTIONS = 4  # visible directions a directional feature needs; fewer: unknown (NaN)


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
        """0-1: how much this looks like a femoral head whose lateral side is ``lateral`` (+1: +x, -1: -x).

        The geometric mean of one ramp per feature; a feature the scan does not show (its directions leave the
        volume) counts 0.8, so a head cut by the scan's edge can still be found on what is visible, except the
        acetabulum: without it in view nothing says this ball is a femoral head."""
        parts = (
            _ramp(self.edge_cover, 0.25, 0.55),
            _ramp(self.fill_hu, 120.0, 220.0),
            _ramp(self.cup.get(lateral, np.nan), 0.2, 0.55, unknown=0.0),  # the acetabulum must be in view
            _ramp(self.below_free, 0.3, 0.7),
            _ramp(self.neck.get(lateral, np.nan), 0.15, 0.45),
            1.0 - _ramp(self.air_near, 0.05, 0.2, unknown=0.0),
        )
        if self.fill_hu >= METAL_FILL_HU or self.visible < 0.2:
            return 0.0
        return float(np.prod(parts) ** (1.0 / len(parts)))

    @property
    def is_metal(self) -> bool:
        """A sphere of metal (a prosthetic ball), not bone."""
        return bool(self.fill_hu >= METAL_FILL_HU)

    def summary(self) -> dict:
        return {"centre_mm": [round(float(v), 2) for v in self.centre_mm], "radius_mm": round(self.radius_mm, 2),
                "votes": round(self.votes, 1), "edge_cover": round(self.edge_cover, 3),
                "fill_hu": round(float(self.fill_hu), 1), "cup": {k: round(v, 3) for k, v in self.cup.items()},
                "neck": {k: round(v, 3) for k, v in self.neck.items()}, "below_free": round(self.below_free, 3),
                "air_near": round(self.air_near, 3), "visible": round(self.visible, 3)}


def _ramp(x: float, lo: float, hi: float, unknown: float = 0.8) -> float:
    if not np.isfinite(x):
        return unknown
    return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0))


def _profiles(volume: Volume, centre: np.ndarray, rho: np.ndarray = RHO) -> np.ndarray:
    """(directions, radii) HU along DIRS at ``rho`` mm from ``centre`` (NaN outside the volume)."""
    pts = centre[None, None, :] + DIRS[:, None, :] * rho[None, :, None]
    return sample_hu(volume, pts)


def _falls(prof: np.ndarray, rho_all: np.ndarray, r_lo: float, r_hi: float) -> tuple[np.ndarray, np.ndarray]:
    """(directions, radii) radius in mm of every clear fall of HU within [r_lo, r_hi] (a local minimum of the
    2 mm difference, at least 150 HU, from bone inside), sub-millimetre by a parabola, NaN elsewhere; and whether
    the fall leaves bone (at most 300 HU within 3 mm beyond it).

    A direction may fall several times: the head's surface, a sclerotic band inside a necrotic head, the
    acetabulum's outer surface beyond the joint. ``_ransac_sphere`` finds the head's."""
    diff = prof[:, 2:] - prof[:, :-2]  # HU over 2 mm, centred on rho_all[1:-1] (1 mm steps)
    rho = rho_all[1:-1]
    window = (rho >= r_lo) & (rho <= r_hi)
    d = np.where(window[None, :] & np.isfinite(diff), diff, np.inf)
    left = np.concatenate([np.full((len(d), 1), np.inf), d[:, :-1]], axis=1)
    right = np.concatenate([d[:, 1:], np.full((len(d), 1), np.inf)], axis=1)
    before = 0.5 * (prof[:, :-2] + prof[:, 1:-1])  # just inside the fall (NaN outside the volume)
    with np.errstate(invalid="ignore", divide="ignore"):
        fall = (d <= left) & (d <= right) & (d <= -150.0) & (before >= NECK_HU)
        den = np.where(np.isfinite(left) & np.isfinite(right), left - 2 * d + right, np.nan)
        shift = np.where(den > 0, np.clip(0.5 * (left - right) / den, -0.5, 0.5), 0.0)
    # lowest HU 1-3 mm beyond each fall: out of bone (joint space, muscle, fat) or still in bone
    after = np.full(d.shape, np.inf)
    for k in (2, 3, 4):  # prof[:, j + k] lies k - 1 mm beyond rho_all[j + 1], the centre of diff[:, j]
        beyond = np.full(d.shape, np.inf)
        beyond[:, : d.shape[1] - k + 2] = np.nan_to_num(prof[:, k:], nan=np.inf)
        after = np.minimum(after, beyond)
    r = np.where(fall, rho[None, :] + np.nan_to_num(shift), np.nan)
    return r, fall & (after <= EXIT_HU)


def _nearest_fall(falls: tuple[np.ndarray, np.ndarray], radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Per direction the fall nearest to ``radius`` (within 2.5 mm) and whether there is one."""
    r = falls[0]
    dist = np.abs(np.where(np.isfinite(r), r, np.inf) - radius)
    j = np.argmin(dist, axis=1)
    rows = np.arange(len(r))
    ok = dist[rows, j] <= 2.5
    return np.where(ok, r[rows, j], np.nan), ok


def _ransac_sphere(centre: np.ndarray, falls: tuple[np.ndarray, np.ndarray], r_lo: float, r_hi: float,
                   seen: int, iterations: int = 256) -> tuple[np.ndarray, float, float] | None:
    """The sphere that the most directions fall on: every fall seen from ``centre`` is a 3D point; spheres through
    four random points (fixed seed) are scored by the directions with a fall within 1.5 mm of them (a fall that
    leaves bone counts 1, one into bone 0.6), less the directions that leave bone more than 3 mm inside them (a
    sphere is a ball of bone). The head's surface faces soft tissue almost all round; a sclerotic band inside a
    necrotic head or the acetabulum's outer surface covers only part of the directions.
    Returns (centre, radius, weighted share of the ``seen`` directions (those inside the scan) that support it)."""
    r, exits = falls
    d_idx, k_idx = np.nonzero(np.isfinite(r))
    if len(d_idx) < 12:
        return None
    pts = centre + DIRS[d_idx] * r[d_idx, k_idx][:, None]
    weight = np.where(exits[d_idx, k_idx], 1.0, 0.6)
    rng = np.random.default_rng(0)
    sample = pts[rng.integers(0, len(pts), size=(iterations, 4))]  # (I, 4, 3)
    a = np.concatenate([2.0 * sample, np.ones((iterations, 4, 1))], axis=2)
    b = (sample * sample).sum(axis=2)
    good = np.abs(np.linalg.det(a)) > 1e-3
    if not good.any():
        return None
    sol = np.linalg.solve(a[good], b[good][..., None])[..., 0]
    c = sol[:, :3]
    r2 = sol[:, 3] + (c * c).sum(axis=1)
    rad = np.sqrt(np.maximum(r2, 0.0))
    plausible = (r2 > 0) & (rad >= r_lo - 2.0) & (rad <= r_hi + 2.0) & (np.linalg.norm(c - centre, axis=1) < 12.0)
    if not plausible.any():
        return None
    c, rad = c[plausible], rad[plausible]
    diff = pts[None, :, :].astype(np.float32) - c[:, None, :].astype(np.float32)
    signed = np.sqrt((diff * diff).sum(axis=2)) - rad[:, None].astype(np.float32)  # (I, points)
    hit = np.where(np.abs(signed) <= 1.5, weight[None, :], 0.0)
    inside = ((signed < -3.0) & exits[d_idx, k_idx][None, :]).astype(float)  # soft tissue inside the sphere
    starts = np.flatnonzero(np.r_[True, d_idx[1:] != d_idx[:-1]])  # falls are grouped by direction
    support = np.maximum.reduceat(hit, starts, axis=1).sum(axis=1)  # a direction counts once, its best fall
    best = int(np.argmax(support - np.maximum.reduceat(inside, starts, axis=1).sum(axis=1)))
    inliers = pts[np.abs(signed[best]) <= 1.5]
    fit = _fit_sphere(inliers) or (c[best], float(rad[best]))
    return fit[0], fit[1], float(support[best] / max(1, seen))


def _fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Least-squares sphere through (N, 3) points, refitted without the points more than 1.5 mm off the first fit;
    None when they are too few or degenerate."""
    for _ in range(2):
        if len(points) < 12:
            return None
        a = np.hstack([2.0 * points, np.ones((len(points), 1))])
        b = (points * points).sum(axis=1)
        sol, *_ = np.linalg.lstsq(a, b, rcond=None)
        c = sol[:3]
        r2 = sol[3] + c @ c
        if r2 <= 0:
            return None
        residual = np.abs(np.linalg.norm(points - c, axis=1) - np.sqrt(r2))
        points = points[residual <= 1.5]
    return c, float(np.sqrt(r2))


def analyse_candidate(volume: Volume, centre_mm: np.ndarray, votes: float,
                      radius_range: tuple[float, float]) -> HeadCandidate | None:
    """Refine a voted centre to the fitted sphere and measure its surroundings; None if no sphere is found.

    The sphere comes from the falls seen from the voted centre (``_ransac_sphere``), then is refined twice:
    profiles from the new centre, the fall nearest the sphere per direction, a trimmed least-squares fit on the
    directions below the dome where enough of them are in view (collapse flattens the weight-bearing dome)."""
    r_lo, r_hi = radius_range
    c = np.asarray(centre_mm, dtype=np.float64)
    rho = np.arange(r_lo - 6.0, r_hi + 7.0, 1.0)  # the falls only: a short profile
    prof = _profiles(volume, c, rho)
    seen = int(np.isfinite(prof[:, rho <= r_hi]).all(axis=1).sum())
    first = _ransac_sphere(c, _falls(prof, rho, r_lo - 3.0, r_hi + 3.0), r_lo, r_hi, seen)
    if first is None or first[2] < MIN_SUPPORT:
        return None
    c, hint, _ = first
    for _ in range(2):
        r_dir, ok = _nearest_fall(_falls(_profiles(volume, c, rho), rho, r_lo - 3.0, r_hi + 3.0), hint)
        low = ok & (DIRS[:, 2] < 0.35)  # below the dome: a collapsed (ARCO III-IV) head keeps its shape there
        use = low if low.sum() >= 30 else ok
        fit = _fit_sphere(c + DIRS[use] * r_dir[use, None]) if use.sum() >= 12 else None
        if fit is None or np.linalg.norm(fit[0] - c) > 10.0:
            break
        c, hint = fit
    radius = float(hint)
    if not r_lo - 2.0 <= radius <= r_hi + 2.0:
        return None
    prof = _profiles(volume, c)
    r_dir, ok = _nearest_fall(_falls(prof, RHO, radius - 4.0, radius + 4.0), radius)
    valid = np.isfinite(prof[:, RHO <= radius + 10.0]).all(axis=1)
    cand = HeadCandidate(c, radius, votes, visible=float(valid.mean()))
    if valid.sum() < 20:
        return cand
    cand.edge_cover = float((ok & valid).sum() / valid.sum())
    cand.fill_hu = float(np.nanmedian(prof[:, RHO <= 0.6 * radius].ravel()))
    beyond = prof[:, (RHO >= radius + 2.0) & (RHO <= radius + 14.0)]
    with np.errstate(invalid="ignore"):
        bone_beyond = np.mean(beyond >= NECK_HU, axis=1) >= 0.35  # NaN compares False
        through = _nanmean(prof[:, (RHO >= radius + 2.0) & (RHO <= radius + 12.0)]) >= NECK_HU
    joint = ok & bone_beyond  # a surface, then bone again: a joint
    near = prof[:, (RHO >= radius + 5.0) & (RHO <= radius + 30.0)]
    cand.air_near = float(np.mean(near[np.isfinite(near)] < -500.0)) if np.isfinite(near).any() else 0.0
    sup = np.array([0.0, 0.0, 1.0])
    below = (DIRS @ -sup > np.cos(np.deg2rad(35.0))) & valid
    cand.below_free = _share(~bone_beyond, below)
    for lat in (1, -1):
        lateral = np.array([float(lat), 0.0, 0.0])
        u_cup = 0.85 * sup - 0.5 * lateral
        u_neck = -0.55 * sup + 0.8 * lateral
        cand.cup[lat] = _share(joint, (DIRS @ (u_cup / np.linalg.norm(u_cup)) > np.cos(np.deg2rad(40.0))) & valid)
        cand.neck[lat] = _share(through, (DIRS @ (u_neck / np.linalg.norm(u_neck)) > np.cos(np.deg2rad(25.0))) & valid)
    return cand


def surface_points(volume: Volume, centre_mm, radius_mm: float) -> np.ndarray:
    """(N, 3) LPS points where the radial profiles from ``centre_mm`` fall out of bone within 2.5 mm of the sphere
    of ``radius_mm``: the surface a head's sphere is fitted to (figures, diagnosis)."""
    c = np.asarray(centre_mm, dtype=np.float64)
    r_dir, ok = _nearest_fall(_falls(_profiles(volume, c), RHO, radius_mm - 4.0, radius_mm + 4.0), radius_mm)
    return c + DIRS[ok] * r_dir[ok, None]


def _nanmean(a: np.ndarray) -> np.ndarray:
    """Row means over the finite values (NaN for a row without any), without numpy's empty-slice warning."""
    finite = np.isfinite(a)
    count = finite.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(finite, a, 0.0).sum(axis=1) / count


def _share(flags: np.ndarray, directions: np.ndarray) -> float:
    """Share of ``directions`` where ``flags`` holds; NaN when too few of them are visible."""
    return float(flags[directions].mean()) if directions.sum() >= MIN_DIRECTIONS else float("nan")
