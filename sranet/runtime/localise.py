"""Find both femoral heads in a CT study: centre, radius, confidence and QC per side, or a reason why not.

Torch-free (numpy + OpenCV), cheap (a downsampled copy), and geometric in patient space: side "L" is the patient's
left (LPS +x) whatever the array order, the patient position or the scanner's orientation. The method
(docs/localisation.md):

1. ``downsample``: every k-th slice, area-averaged in-plane, about 4 mm voxels.
2. ``sphere_votes``: each strong bone edge votes for the points 17-32 mm inside it along its gradient (a Hough
   transform for spheres); the vote peaks are the candidate centres.
3. ``analyse_candidate``: at full resolution, radial HU profiles fit the sphere (centre and radius to about a
   millimetre) and measure what surrounds it: a femoral head is a ball of bone (clear surface all round) under an
   acetabular cup (bone again supero-medially), free below, with its neck leaving infero-laterally, far from air.
4. Pairing: two heads 120-270 mm apart along the patient's left-right axis, at similar height and depth, of similar
   radius. The better pair wins; with no pair, a single head must pass stricter checks and show its neck on one
   side, which says which hip it is. A scan without hips (chest, abdomen, knees, head) yields no head.
5. QC per head: ``metal_near_head`` (HU >= 2800 within 15 mm of the head: prosthesis, screws), ``roi_truncated``
   (the ROI box reaches past the scan), ``head_truncated`` (the sphere itself is cut by the scan's edge: its centre
   and radius come from the part in view and are less certain), ``low_confidence``. A metal prosthesis with no bone head left is reported
   at the metal ball when it pairs with the other head, flagged ``metal_near_head`` (never predicted by default).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from sranet.config import PreprocessConfig
from sranet.runtime.localise_grid import DEFAULT_GRID_MM, WorkGrid, downsample, local_maxima, sample_grid, sphere_votes
from sranet.runtime.localise_heads import HeadCandidate, analyse_candidate
from sranet.runtime.localise_roi import FemoralHead, head_roi, roi_truncated
from sranet.runtime.volume import Volume

SIDES = ("L", "R")
SIDE_NAMES = {"L": "left", "R": "right"}


@dataclass(frozen=True)
class LocaliserSettings:
    """The localiser's knobs (defaults are what the evaluation in benchmarks/results used).

    grid_mm          voxel size of the downsampled copy the votes are counted on.
    radius_mm        femoral head radii searched (adult heads are 18-30 mm).
    candidates       vote peaks examined at full resolution.
    pair_sep_mm      distance between the two head centres.
    min_pair_score   both heads of a pair must score at least this; min_single_score a head found alone.
    metal_hu         HU counted as metal; metal_reach_mm how far beyond the head's surface metal raises a flag.
    min_extent_mm    the volume must span this along every axis (a head is 36-60 mm across).
    """

    grid_mm: float = DEFAULT_GRID_MM
    radius_mm: tuple[float, float] = (17.0, 32.0)
    candidates: int = 12
    pair_sep_mm: tuple[float, float] = (120.0, 270.0)
    min_pair_score: float = 0.65
    min_single_score: float = 0.8
    metal_hu: float = 2800.0
    metal_reach_mm: float = 15.0
    min_extent_mm: float = 40.0


@dataclass
class Localisation:
    """Both sides of one study: ``heads`` for the sides found, ``reasons`` ("no femoral head found: ...") for the
    others; ``candidates`` summarises every sphere examined (diagnosis, figures); ``timings_ms`` per stage."""

    heads: dict[str, FemoralHead] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    candidates: list[dict] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"heads": {s: h.to_dict() for s, h in self.heads.items()}, "reasons": dict(self.reasons),
                "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()}}


def locate_femoral_heads(volume: Volume, *, settings: LocaliserSettings | None = None,
                         preprocess: PreprocessConfig | None = None) -> Localisation:
    """Find the femoral heads in ``volume`` (hu (D, H, W) HU, spacing mm, any orientation; a series in memory).

    ``preprocess`` gives the ROI margin (``roi_margin_mm``) for each head's ``roi`` and the ``roi_truncated``
    flag. Never raises on what the volume shows: a study with no head, or one it cannot read as a body, gets a
    reason per side. Takes well under a second for a 512 x 512 x 300 series (benchmarks/localise_speed.py).
    """
    s = settings or LocaliserSettings()
    cfg = preprocess or PreprocessConfig()
    out = Localisation()
    t0 = time.perf_counter()
    why = _unusable(volume, s)
    if why:
        out.reasons = {side: f"no femoral head found: {why}" for side in SIDES}
        return out
    grid = downsample(volume, s.grid_mm)
    if not np.all(np.isfinite(grid.hu)):
        out.reasons = {side: "no femoral head found: the volume holds non-finite values (NaN or infinity); "
                             "check the file's pixel data" for side in SIDES}
        return out
    t1 = time.perf_counter()
    acc = sphere_votes(grid, np.arange(s.radius_mm[0], s.radius_mm[1] + 0.1, 2.5), edge_hu_per_mm=25.0)
    peaks = local_maxima(acc, grid.spacing_mm, 3 * s.candidates, min_votes=15.0, min_separation_mm=15.0)
    centres = [(grid.affine[:3, :3] @ p + grid.affine[:3, 3], votes) for p, votes in peaks]
    centres = _drop_columns(centres)[: s.candidates]
    t2 = time.perf_counter()
    cands = []
    for centre, votes in centres:
        c = analyse_candidate(volume, centre, votes, s.radius_mm)
        if c is not None:
            cands.append(c)
    t3 = time.perf_counter()
    out.candidates = [c.summary() for c in cands]
    chosen, reason = _choose(cands, grid, s)
    metal = _metal_heads(grid, chosen, [c for c in cands if c.is_metal], s)
    for side, (cand, conf) in {**chosen, **metal}.items():
        out.heads[side] = _finish(volume, side, cand, conf, s, cfg, prosthesis=side in metal)
    for side in SIDES:
        if side not in out.heads:
            out.reasons[side] = reason if not out.heads else (
                f"no femoral head found on the {SIDE_NAMES[side]}: only the {SIDE_NAMES[_other(side)]} head passed "
                "the checks (the other hip may lie outside the field of view)")
    out.timings_ms = {"downsample": (t1 - t0) * 1e3, "vote": (t2 - t1) * 1e3, "analyse": (t3 - t2) * 1e3,
                      "total": (time.perf_counter() - t0) * 1e3}
    return out


def _drop_columns(centres: list) -> list:
    """Without the peaks stacked along the body axis: a peak with three or more others of similar strength (votes
    within a factor of 0.6 either way) within 10 mm of its vertical line, 20 mm or more away. That is a column of
    vertebral bodies; a femoral head has at most its acetabulum above and its femur below, and outvotes the
    ilium's bumps above it."""
    pts = np.array([c for c, _ in centres]) if centres else np.zeros((0, 3))
    votes = np.array([v for _, v in centres]) if centres else np.zeros(0)
    keep = []
    for i in range(len(pts)):
        horizontal = np.linalg.norm(pts[:, :2] - pts[i, :2], axis=1) < 10.0
        similar = (votes >= 0.6 * votes[i]) & (votes <= votes[i] / 0.6)
        if (horizontal & similar & (np.abs(pts[:, 2] - pts[i, 2]) >= 20.0)).sum() < 3:
            keep.append(centres[i])
    return keep


def _other(side: str) -> str:
    return "R" if side == "L" else "L"


def _unusable(volume: Volume, s: LocaliserSettings) -> str | None:
    hu = volume.hu
    if hu.ndim != 3 or min(hu.shape) < 1:
        return f"the volume has shape {hu.shape}, not (D, H, W)"
    extent = np.asarray(volume.shape) * np.asarray(volume.spacing_mm, dtype=float)
    thin = int(np.argmin(extent))
    if extent[thin] < s.min_extent_mm:
        return (f"the volume spans only {extent[thin]:.1f} mm along its axis {thin} ({volume.shape[thin]} voxel(s)); "
                f"at least {s.min_extent_mm:g} mm along every axis are needed to see a femoral head")
    return None


def _choose(cands: list[HeadCandidate], grid: WorkGrid, s: LocaliserSettings) -> tuple[dict, str]:
    """{side: (candidate, confidence)} for the best pair, or a single head; and the reason when none is found."""
    bone = [c for c in cands if not c.is_metal]
    best, best_score = None, 0.0
    for a in bone:
        for b in bone:
            if a is b or a.centre_mm[0] <= b.centre_mm[0]:
                continue  # a is the patient's left (+x) of the two
            if not _paired(a, b, s):
                continue
            sa, sb = a.score(+1), b.score(-1)
            if min(sa, sb) >= s.min_pair_score and np.sqrt(sa * sb) > best_score:
                best, best_score = {"L": (a, sa), "R": (b, sb)}, float(np.sqrt(sa * sb))
    if best:
        return best, ""
    singles = sorted(((max(c.score(1), c.score(-1)), c) for c in bone), key=lambda t: -t[0])
    if singles and singles[0][0] >= s.min_single_score:
        c = singles[0][1]
        lateral = _single_side(c, grid) or _side_from_metal(c, grid, s)
        if lateral and c.score(lateral) >= s.min_single_score:
            return {"L" if lateral > 0 else "R": (c, c.score(lateral))}, ""
        return {}, (f"no femoral head found: one femoral head (radius {c.radius_mm:.0f} mm at LPS {_fmt(c.centre_mm)}) "
                    "but not which hip it is: no second head, and its neck and femoral shaft are not both in view")
    if not bone:
        return {}, f"no femoral head found: no bone sphere of radius {s.radius_mm[0]:g}-{s.radius_mm[1]:g} mm in the scan"
    top = max(bone, key=lambda c: max(c.score(1), c.score(-1)))
    return {}, ("no femoral head found: no bone sphere looks like a femoral head (the best, radius "
                f"{top.radius_mm:.0f} mm at LPS {_fmt(top.centre_mm)}, scored {max(top.score(1), top.score(-1)):.2f}: "
                f"surface {top.edge_cover:.2f}, acetabulum {_best(top.cup)}, free below {_best({0: top.below_free})}, "
                f"neck {_best(top.neck)}, air near {_best({0: top.air_near})})")


def _paired(a: HeadCandidate, b: HeadCandidate, s: LocaliserSettings) -> bool:
    """Could ``a`` (further +x) and ``b`` be the two femoral heads of one patient?"""
    d = a.centre_mm - b.centre_mm
    sep = float(np.linalg.norm(d))
    return (s.pair_sep_mm[0] <= sep <= s.pair_sep_mm[1] and abs(d[2]) <= 0.25 * sep and abs(d[1]) <= 0.35 * sep
            and max(a.radius_mm, b.radius_mm) <= 1.3 * min(a.radius_mm, b.radius_mm))


def _best(values: dict) -> str:
    finite = [v for v in values.values() if np.isfinite(v)]
    return f"{max(finite):.2f}" if finite else "not in view"


def _single_side(c: HeadCandidate, grid: WorkGrid) -> int:
    """+1 (lateral is +x: a left hip) or -1 for a head found alone, from its neck and from the femoral shaft below
    it; 0 when neither says or they disagree. Never guessed from array order or from where the head sits."""
    n_pos, n_neg = c.neck.get(1, np.nan), c.neck.get(-1, np.nan)
    by_neck = 0
    if np.isfinite(n_pos) and np.isfinite(n_neg) and abs(n_pos - n_neg) >= 0.3:
        by_neck = 1 if n_pos > n_neg else -1
    by_shaft = _shaft_side(c, grid)
    if by_neck and by_shaft and by_neck != by_shaft:
        return 0
    return by_neck or by_shaft


def _side_from_metal(c: HeadCandidate, grid: WorkGrid, s: LocaliserSettings) -> int:
    """+1 / -1 when metal (a prosthesis) sits where the other head would be on exactly one side, else 0."""
    metal = np.argwhere(grid.hu >= s.metal_hu)
    if len(metal) < 4:
        return 0
    d = metal @ grid.affine[:3, :3].T + grid.affine[:3, 3] - c.centre_mm
    sep = np.linalg.norm(d, axis=1)
    placed = (sep >= s.pair_sep_mm[0]) & (sep <= s.pair_sep_mm[1]) & (np.abs(d[:, 2]) <= 0.25 * sep)
    towards_minus, towards_plus = int((placed & (d[:, 0] < 0)).sum()), int((placed & (d[:, 0] > 0)).sum())
    if towards_minus >= 4 and towards_plus == 0:
        return 1  # the prosthesis lies towards -x: this head is the left one
    if towards_plus >= 4 and towards_minus == 0:
        return -1
    return 0


def _shaft_side(c: HeadCandidate, grid: WorkGrid) -> int:
    """The femoral shaft runs 85-160 mm below its head, 15-45 mm lateral of the head's centre; below the pelvis
    nothing else is bone that close. +1 / -1 for the side holding the bone there, 0 when the scan does not show it."""
    x, y, z = c.centre_mm
    gx, gy, gz = np.meshgrid(np.arange(-80.0, 80.1, 4.0), np.arange(-50.0, 50.1, 4.0), np.arange(-160.0, -84.9, 4.0),
                             indexing="ij")
    pts = np.stack([gx.ravel() + x, gy.ravel() + y, gz.ravel() + z], axis=1)
    hu = sample_grid(grid, pts)
    seen = np.isfinite(hu)
    if seen.mean() < 0.3:
        return 0
    bone = seen & (hu >= 250.0)
    if bone.sum() < 8:
        return 0
    off = gx.ravel()[bone]
    side = 1 if np.median(off) > 0 else -1
    if abs(np.median(off)) < 12.0 or np.mean(np.sign(off) == side) < 0.75:
        return 0
    return side


def _fmt(p) -> str:
    return "(" + ", ".join(f"{v:.0f}" for v in p) + ")"


def _metal_count(volume: Volume, centre: np.ndarray, reach_mm: float, metal_hu: float) -> int:
    """Voxels at or above ``metal_hu`` in the full-resolution box of half-size ``reach_mm`` around ``centre``."""
    corners = centre[None, :] + reach_mm * np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)])
    idx = volume.patient_to_index(corners)
    lo = np.clip(np.floor(idx.min(axis=0)).astype(int), 0, np.asarray(volume.shape))
    hi = np.clip(np.ceil(idx.max(axis=0)).astype(int) + 1, 0, np.asarray(volume.shape))
    if np.any(hi <= lo):
        return 0
    return int(np.count_nonzero(volume.hu[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] >= metal_hu))


def _metal_heads(grid: WorkGrid, chosen: dict, metal_spheres: list[HeadCandidate], s: LocaliserSettings) -> dict:
    """A hip prosthesis where the other head of a pair should be: a metal ball at head distance and height from the
    one head found, or else the densest metal there. {side: (candidate at the metal's centre, confidence)}."""
    if len(chosen) != 1:
        return {}
    side, (found, _) = next(iter(chosen.items()))
    other = _other(side)
    toward = -1.0 if side == "L" else 1.0  # the other hip lies towards -x from a left head

    def placed(p: np.ndarray) -> bool:  # where the other head would be: across, at the same height and depth
        d = p - found.centre_mm
        sep = float(np.linalg.norm(d))
        return (s.pair_sep_mm[0] <= sep <= s.pair_sep_mm[1] and d[0] * toward > 0 and abs(d[2]) <= 40.0
                and abs(d[1]) <= 40.0)

    balls = [m for m in metal_spheres if placed(m.centre_mm)]
    if balls:  # the ball is smaller than the head it replaced: the ROI takes the other head's size
        return {other: (HeadCandidate(balls[0].centre_mm, found.radius_mm, 0.0, visible=balls[0].visible), 0.5)}
    metal = np.argwhere(grid.hu >= s.metal_hu)
    if len(metal) < 4:
        return {}
    pts = metal @ grid.affine[:3, :3].T + grid.affine[:3, 3]
    sel = pts[[placed(p) for p in pts]]  # the ball and the cup, not the stem below them
    if len(sel) < 4:
        return {}
    centre = np.median(sel, axis=0)
    near = sel[np.linalg.norm(sel - centre, axis=1) < found.radius_mm + 10.0]
    if len(near) < 4:
        return {}
    return {other: (HeadCandidate(near.mean(axis=0), found.radius_mm, 0.0), 0.5)}


def _finish(volume: Volume, side: str, cand: HeadCandidate, conf: float, s: LocaliserSettings,
            cfg: PreprocessConfig, prosthesis: bool) -> FemoralHead:
    qc = []
    if prosthesis or _metal_count(volume, cand.centre_mm, cand.radius_mm + s.metal_reach_mm, s.metal_hu) >= 8:
        qc.append("metal_near_head")
    head = FemoralHead(side, tuple(float(v) for v in cand.centre_mm), float(cand.radius_mm), float(conf))
    roi = head_roi(head, cfg)
    if roi_truncated(roi, volume):
        qc.append("roi_truncated")
    if cand.visible < 0.9:
        qc.append("head_truncated")
    if conf < 0.8:
        qc.append("low_confidence")
    return FemoralHead(side, head.centre_mm, head.radius_mm, round(float(conf), 4), tuple(qc), roi)
