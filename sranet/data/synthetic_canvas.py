"""Drawing one axial slice of a synthetic study with OpenCV primitives, in anatomical millimetres.

A whole-pelvis study is mostly structures that change slowly along the body axis (skin, fat, muscle, organs, spine,
ilium, femoral shafts), so each slice is drawn in 2D: filled ellipses and thick polylines, about 15 microseconds
each, instead of signed distances over the whole 3D grid. Only the hip joints are drawn in 3D
(``sranet.data.synthetic_hip``), each in its own small box.

Coordinates. The canonical grid of a study has array axes (D, H, W) along LPS (+z, +y, +x): superior, posterior,
patient left. Anatomy is written in an anatomical frame centred on the pelvis (xa to the patient's left, ya
posterior, za superior, millimetres); a study's pose (``Pose``) places that frame in the grid: a roll about the body
axis, a small tilt written as a shear (exact enough for tilts under 10 degrees: a cross-section stretches by under
2 %) and a translation. ``Pose.slice_affine(za)`` is the 2x3 map from (xa, ya) on the slice at height za to pixel
(column, row).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_SHIFT = 4  # OpenCV fixed-point bits: coordinates are drawn to 1/16 pixel
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class Pose:
    """Where the anatomical frame sits in a study's canonical grid.

    centre_mm     LPS (x, y, z) of the anatomical origin (the midpoint between the femoral head centres).
    roll_deg      rotation about the body axis (+z), the patient lying turned to one side.
    tilt          (sx, sy): in-plane shift per mm of height (a tilt of atan(s) about the y and x axes).
    grid_origin   LPS (x, y, z) of canonical voxel (0, 0, 0); pixel_mm the in-plane spacing, slice_mm along z.
    """

    centre_mm: tuple[float, float, float]
    roll_deg: float
    tilt: tuple[float, float]
    grid_origin: tuple[float, float, float]
    pixel_mm: float
    slice_mm: float

    @property
    def rotation(self) -> np.ndarray:
        """(3, 3) rotation from anatomical (xa, ya, za) to LPS (x, y, z) axes (the tilt as a true rotation)."""
        t = np.deg2rad(self.roll_deg)
        roll = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])
        ax, ay = np.arctan(self.tilt[1]), np.arctan(self.tilt[0])
        rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(ax), np.sin(ax)], [0.0, -np.sin(ax), np.cos(ax)]])
        ry = np.array([[np.cos(ay), 0.0, np.sin(ay)], [0.0, 1.0, 0.0], [-np.sin(ay), 0.0, np.cos(ay)]])
        return roll @ ry @ rx

    def to_lps(self, point_a) -> np.ndarray:
        """Anatomical (xa, ya, za) mm -> LPS mm, through the same shear-and-roll map the slices are drawn with."""
        xa, ya, za = (float(v) for v in point_a)
        t = np.deg2rad(self.roll_deg)
        u, v = xa + za * self.tilt[0], ya + za * self.tilt[1]
        c = self.centre_mm
        return np.array([c[0] + np.cos(t) * u - np.sin(t) * v, c[1] + np.sin(t) * u + np.cos(t) * v, c[2] + za])

    def slice_za(self, d: int) -> float:
        """Anatomical height of canonical slice ``d``."""
        return self.grid_origin[2] + d * self.slice_mm - self.centre_mm[2]

    def slice_affine(self, za: float) -> np.ndarray:
        """(2, 3): (xa, ya, 1) on the slice at height ``za`` -> pixel (column, row) of the canonical grid."""
        t = np.deg2rad(self.roll_deg)
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        shift = np.array([self.centre_mm[0], self.centre_mm[1]]) + rot @ (za * np.asarray(self.tilt, dtype=float))
        a = np.empty((2, 3))
        a[:, :2] = rot / self.pixel_mm
        a[:, 2] = (shift - np.array(self.grid_origin[:2])) / self.pixel_mm
        return a


class Canvas:
    """One slice being drawn: ``hu`` (H, W) float32 and the (2, 3) map from anatomical (xa, ya) mm to pixels.

    Every method takes anatomical millimetres and HU; ``angle_deg`` turns an ellipse in the anatomical frame.
    """

    def __init__(self, hu: np.ndarray, affine: np.ndarray, roll_deg: float, pixel_mm: float):
        self.hu = hu
        self.affine = affine
        self.roll_deg = roll_deg
        self.px = pixel_mm

    def _pt(self, xa: float, ya: float) -> tuple[int, int]:
        c, r = self.affine @ np.array([xa, ya, 1.0])
        return int(round(c * _ONE)), int(round(r * _ONE))

    def _pts(self, points) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64)
        px = p @ self.affine[:, :2].T + self.affine[:, 2]
        return np.round(px * _ONE).astype(np.int32).reshape(-1, 1, 2)

    def ellipse(self, xa: float, ya: float, ax: float, ay: float, hu: float, angle_deg: float = 0.0,
                target: np.ndarray | None = None, arc: tuple[float, float] = (0.0, 360.0)) -> None:
        """Fill the ellipse with half-axes (ax, ay) mm centred at (xa, ya) with ``hu`` (into ``target`` if given).

        ``arc`` (start, end) degrees fills a sector only: (0, 180) is the posterior half (+ya), (180, 360) the
        anterior half."""
        import cv2

        if ax <= 0 or ay <= 0:
            return
        axes = (max(1, int(round(ax / self.px * _ONE))), max(1, int(round(ay / self.px * _ONE))))
        img = self.hu if target is None else target
        cv2.ellipse(img, self._pt(xa, ya), axes, angle_deg + self.roll_deg, arc[0], arc[1], float(hu), -1,
                    cv2.LINE_8, _SHIFT)

    def egg(self, xa, ya, half_width, depth_ant, depth_post, hu, target: np.ndarray | None = None) -> None:
        """A body cross-section: half-ellipses of one width, ``depth_ant`` in front and ``depth_post`` behind."""
        self.ellipse(xa, ya, half_width, depth_post, hu, target=target, arc=(0.0, 180.0))
        self.ellipse(xa, ya, half_width, depth_ant, hu, target=target, arc=(180.0, 360.0))

    def bar(self, p0, p1, radius0: float, radius1: float, za: float, hu: float, step: float = 0.5) -> None:
        """The cross-section at height ``za`` of a tapered capsule from 3D anatomical point p0 to p1: discs at
        samples along the axis, each of the radius the capsule has where that sample is ``za`` away."""
        p0, p1 = np.asarray(p0, dtype=np.float64), np.asarray(p1, dtype=np.float64)
        if min(p0[2], p1[2]) - max(radius0, radius1) > za or max(p0[2], p1[2]) + max(radius0, radius1) < za:
            return
        length = float(np.linalg.norm(p1 - p0))
        n = max(2, int(np.ceil(length / (step * max(1.0, min(radius0, radius1))))) + 1)
        for t in np.linspace(0.0, 1.0, n):
            r = radius0 + (radius1 - radius0) * t
            dz = p0[2] + (p1[2] - p0[2]) * t - za
            if abs(dz) < r:
                h = float(np.sqrt(r * r - dz * dz))
                self.ellipse(p0[0] + (p1[0] - p0[0]) * t, p0[1] + (p1[1] - p0[1]) * t, h, h, hu)

    def bone_ellipse(self, xa, ya, ax, ay, cortex_mm, cortex_hu, trab_hu, angle_deg=0.0) -> None:
        """An ellipse of trabecular bone inside a cortical shell ``cortex_mm`` thick."""
        self.ellipse(xa, ya, ax, ay, cortex_hu, angle_deg)
        self.ellipse(xa, ya, ax - cortex_mm, ay - cortex_mm, trab_hu, angle_deg)

    def ring(self, xa, ya, r_out, r_in, wall_hu, inside_hu) -> None:
        """A tube cross-section: wall between radii r_in and r_out, ``inside_hu`` within r_in."""
        self.ellipse(xa, ya, r_out, r_out, wall_hu)
        self.ellipse(xa, ya, r_in, r_in, inside_hu)

    def polyline(self, points, thickness_mm: float, hu: float, target: np.ndarray | None = None) -> None:
        """A thick open polyline through (xa, ya) points."""
        import cv2

        thick = max(1, int(round(thickness_mm / self.px)))
        img = self.hu if target is None else target
        cv2.polylines(img, [self._pts(points)], False, float(hu), thick, cv2.LINE_8, _SHIFT)

    def bone_polyline(self, points, thickness_mm, cortex_mm, cortex_hu, trab_hu) -> None:
        """A thick polyline of trabecular bone with a cortical rim (a plate seen edge-on)."""
        self.polyline(points, thickness_mm, cortex_hu)
        if thickness_mm - 2 * cortex_mm > self.px:
            self.polyline(points, thickness_mm - 2 * cortex_mm, trab_hu)

    def polygon(self, points, hu: float, target: np.ndarray | None = None) -> None:
        """Fill a closed polygon through (xa, ya) points."""
        import cv2

        img = self.hu if target is None else target
        cv2.fillPoly(img, [self._pts(points)], float(hu), cv2.LINE_8, _SHIFT)


def bezier(p0, p1, p2, n: int = 12) -> np.ndarray:
    """(n, 2) points on the quadratic Bezier curve from p0 to p2 pulled towards p1."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, p1, p2 = (np.asarray(p, dtype=np.float64) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def ellipsoid_section(centre, radii, za: float) -> tuple[float, float] | None:
    """Half-axes (ax, ay) of the cross-section at height ``za`` of an axis-aligned ellipsoid, None if it misses."""
    dz = (za - centre[2]) / radii[2]
    if abs(dz) >= 1.0:
        return None
    k = float(np.sqrt(1.0 - dz * dz))
    return radii[0] * k, radii[1] * k
