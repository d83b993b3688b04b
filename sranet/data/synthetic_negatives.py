"""Studies without femoral heads, for the localiser's refusal: the chest (with the humeral heads in some, a pair of
bone spheres mirrored about the midline) and both knees (femoral condyles, rounded and paired). The abdomen above
the pelvis reuses the pelvis anatomy (``sranet.data.synthetic_body``) with abdominal organs added.

Anatomical frame and units as in ``sranet.data.synthetic_canvas``; the origin is the middle of the structure the
study is centred on (the carina region for the chest, between the knee joints for the knees).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sranet.data.synthetic_body import FAT_HU, MUSCLE_HU, Bones, PelvisAnatomy
from sranet.data.synthetic_canvas import Canvas, bezier

LUNG_HU = -850.0


@dataclass(frozen=True)
class ChestAnatomy:
    """Sizes of one chest (mm): trunk (half width, anterior depth, posterior depth), fat, lungs' z range,
    shoulders (None: arms up, no humeral heads in the field of view)."""

    k: float
    trunk: tuple[float, float, float]
    fat_mm: float
    lung_z: tuple[float, float]
    heart_z: float
    shoulder: tuple[float, float, float] | None  # (half separation of the humeral heads, their height, radius)
    bones: Bones


def draw_chest_anatomy(rng: np.random.Generator, k: float) -> ChestAnatomy:
    fat = float(rng.uniform(8.0, 30.0) * k)
    shoulder = None
    if rng.random() < 0.6:
        shoulder = (float(rng.uniform(160.0, 190.0) * k), float(rng.uniform(110.0, 140.0) * k),
                    float(rng.uniform(21.0, 25.0) * k))
    return ChestAnatomy(
        k=k, trunk=(float(rng.uniform(140.0, 165.0) * k + fat), float(rng.uniform(95.0, 115.0) * k + fat),
                    float(rng.uniform(100.0, 120.0) * k + fat)),
        fat_mm=fat, lung_z=(float(-rng.uniform(110.0, 140.0) * k), float(rng.uniform(130.0, 160.0) * k)),
        heart_z=float(-rng.uniform(40.0, 70.0) * k), shoulder=shoulder,
        bones=Bones(float(rng.uniform(150.0, 240.0)), float(rng.uniform(700.0, 1100.0)), float(rng.uniform(1.2, 2.0))),
    )


def draw_chest_slice(cv: Canvas, za: float, a: ChestAnatomy) -> None:
    """One axial chest slice at height ``za``: trunk, lungs, heart, spine, ribs, sternum, scapulae, shoulders."""
    k, b = a.k, a.bones
    w, ant, post = a.trunk
    cv.hu[:] = -1000.0
    cv.egg(0.0, 0.0, w, ant, post, FAT_HU)
    cv.egg(0.0, 0.0, w - a.fat_mm, ant - a.fat_mm, post - a.fat_mm, MUSCLE_HU)
    lo, hi = a.lung_z
    if lo < za < hi:
        frac = (za - lo) / (hi - lo)
        size = float(np.sqrt(max(0.0, np.sin(np.pi * min(1.0, 0.15 + 0.85 * frac)))))
        for sgn in (-1.0, 1.0):
            cv.ellipse(sgn * 62.0 * k, 12.0 * k, 52.0 * k * size, 72.0 * k * size, LUNG_HU)
        if abs(za - a.heart_z) < 60.0 * k:
            s = float(np.sqrt(1.0 - ((za - a.heart_z) / (60.0 * k)) ** 2))
            cv.ellipse(18.0 * k, -28.0 * k, 55.0 * k * s, 45.0 * k * s, 40.0)
        cv.ellipse(-8.0 * k, 30.0 * k, 13.0 * k, 13.0 * k, 40.0)  # descending aorta
        cage = [(np.cos(t) * (w - a.fat_mm - 6.0), np.sin(t) * ((post if np.sin(t) > 0 else ant) - a.fat_mm - 6.0))
                for t in np.linspace(0.0, 2 * np.pi, 73)]
        phase = (za / (24.0 * k)) % 1.0
        for start in (0.15, 0.55, 0.95, 1.35):  # ribs cut obliquely: short arcs around the chest wall
            t0 = int(((start + 0.25 * phase) % 2.0) * 36)
            arc = [cage[(t0 + j) % 72] for j in range(6)]
            for sgn in (-1.0, 1.0):
                cv.bone_polyline([(sgn * x, y) for x, y in arc], 7.0 * k, b.cortex_mm, b.cortex_hu, b.trab_hu)
        cv.bone_ellipse(0.0, -(ant - a.fat_mm - 8.0), 16.0 * k, 6.0 * k, b.cortex_mm, b.cortex_hu, b.trab_hu)
        for sgn in (-1.0, 1.0):  # scapulae
            cv.bone_polyline([(sgn * 45.0 * k, post - 35.0 * k), (sgn * 115.0 * k, post - 70.0 * k)], 5.0 * k,
                             b.cortex_mm, b.cortex_hu, b.trab_hu)
    yv = 40.0 * k
    cv.bone_ellipse(0.0, yv, 17.0 * k, 14.0 * k, b.cortex_mm, b.cortex_hu * 0.8, b.trab_hu)
    cv.bone_polyline(bezier((-12 * k, yv + 14 * k), (0.0, yv + 38 * k), (12 * k, yv + 14 * k)), 6.0 * k, b.cortex_mm,
                     b.cortex_hu * 0.8, b.trab_hu)
    if a.shoulder is not None:
        _shoulders(cv, za, a)


def _shoulders(cv: Canvas, za: float, a: ChestAnatomy) -> None:
    """Arms at the sides: deltoid and arm outline, humeral head and shaft, glenoid, acromion and clavicle."""
    k, b = a.k, a.bones
    half, zh, r = a.shoulder  # type: ignore[misc]
    for sgn in (-1.0, 1.0):
        head = (sgn * half, 5.0 * k, zh)
        if za < zh + r + 15.0:
            cv.ellipse(sgn * (half + 8.0), 5.0 * k, r + 28.0 * k, r + 30.0 * k, FAT_HU)
            cv.ellipse(sgn * (half + 8.0), 5.0 * k, r + 20.0 * k, r + 22.0 * k, MUSCLE_HU)
        cv.bar(head, head, r, r, za, b.cortex_hu)  # humeral head, a sphere
        cv.bar(head, head, r - b.cortex_mm, r - b.cortex_mm, za, b.trab_hu + 40.0)
        shaft_end = (sgn * (half + 12.0 * k), 8.0 * k, zh - 260.0 * k)
        cv.bar((sgn * (half + 6.0 * k), 6.0 * k, zh - 0.7 * r), shaft_end, 13.0 * k, 11.0 * k, za, b.cortex_hu)
        cv.bar((sgn * (half + 6.0 * k), 6.0 * k, zh - 1.4 * r), shaft_end, 7.0 * k, 6.0 * k, za, -30.0)
        glenoid = (sgn * (half - r - 9.0 * k), 10.0 * k, zh)
        cv.bar(glenoid, (sgn * (half - r - 30.0 * k), 30.0 * k, zh + 5.0 * k), 11.0 * k, 9.0 * k, za, b.cortex_hu)
        cv.bar((sgn * (half - 5.0 * k), 15.0 * k, zh + r + 10.0 * k), (sgn * (half - 45.0 * k), 45.0 * k, zh + r),
               8.0 * k, 8.0 * k, za, b.cortex_hu)  # acromion and scapular spine
        cv.bar((sgn * 18.0 * k, -80.0 * k, zh + 5.0 * k), (sgn * (half - 20.0 * k), -15.0 * k, zh + r + 12.0 * k),
               7.0 * k, 6.0 * k, za, b.cortex_hu)  # clavicle


@dataclass(frozen=True)
class KneeAnatomy:
    """Both knees (mm): half separation of the knee centres, leg radius, fat, condyle radius, joint line at za 0."""

    k: float
    half_sep: float
    leg_r: float
    fat_mm: float
    condyle_r: float
    bones: Bones


def draw_knee_anatomy(rng: np.random.Generator, k: float) -> KneeAnatomy:
    return KneeAnatomy(k=k, half_sep=float(rng.uniform(65.0, 115.0) * k), leg_r=float(rng.uniform(50.0, 65.0) * k),
                       fat_mm=float(rng.uniform(6.0, 20.0) * k), condyle_r=float(rng.uniform(19.0, 24.0) * k),
                       bones=Bones(float(rng.uniform(180.0, 280.0)), float(rng.uniform(800.0, 1300.0)),
                                   float(rng.uniform(1.2, 2.2))))


def draw_knee_slice(cv: Canvas, za: float, a: KneeAnatomy) -> None:
    """One axial slice through both knees at height ``za`` (the joint line at 0; femur above, tibia below)."""
    k, b, rc = a.k, a.bones, a.condyle_r
    cv.hu[:] = -1000.0
    for sgn in (-1.0, 1.0):
        x = sgn * a.half_sep
        leg = a.leg_r * (1.0 + 0.15 * np.tanh(za / 120.0))
        cv.ellipse(x, 0.0, leg, leg * 0.95, FAT_HU)
        cv.ellipse(x, 0.0, leg - a.fat_mm, leg * 0.95 - a.fat_mm, MUSCLE_HU)
        for dx in (-20.0 * k, 20.0 * k):  # medial and lateral femoral condyles
            c = (x + dx, 8.0 * k, rc + 2.0)
            cv.bar(c, c, rc, rc, za, b.cortex_hu)
            cv.bar(c, c, rc - b.cortex_mm, rc - b.cortex_mm, za, b.trab_hu)
        cv.bar((x, 0.0, rc + 10.0 * k), (x, -4.0 * k, 320.0), 30.0 * k, 14.0 * k, za, b.cortex_hu)  # metaphysis, shaft
        cv.bar((x, 0.0, rc + 10.0 * k), (x, -4.0 * k, 320.0), 30.0 * k - b.cortex_mm, 7.0 * k, za, b.trab_hu * 0.7)
        cv.bar((x, -40.0 * k, rc + 15.0 * k), (x, -40.0 * k, rc + 35.0 * k), 12.0 * k, 12.0 * k, za, b.cortex_hu)
        if -32.0 * k < za < -5.0 * k:  # tibial plateau, flat on top
            cv.bone_ellipse(x, 2.0 * k, 37.0 * k, 27.0 * k, b.cortex_mm, b.cortex_hu, b.trab_hu)
        cv.bar((x, 2.0 * k, -45.0 * k), (x, 2.0 * k, -300.0), 26.0 * k, 13.0 * k, za, b.cortex_hu)  # tibial shaft
        cv.bar((x, 2.0 * k, -45.0 * k), (x, 2.0 * k, -300.0), 26.0 * k - b.cortex_mm, 7.0 * k, za, b.trab_hu * 0.7)
        cv.bar((x + sgn * 32.0 * k, 22.0 * k, -20.0 * k), (x + sgn * 30.0 * k, 20.0 * k, -300.0), 8.0 * k, 6.0 * k,
               za, b.cortex_hu)  # fibula


def add_abdominal_organs(a: PelvisAnatomy, rng: np.random.Generator) -> None:
    """Liver, kidneys and spleen above the iliac crest, drawn before the bowel (the abdomen negatives)."""
    k, crest = a.k, a.crest_z
    organs = [((-65.0 * k, -5.0 * k, crest + 150.0 * k), np.array([95.0, 85.0, 90.0]) * k, 60.0),
              ((75.0 * k, 35.0 * k, crest + 160.0 * k), np.array([40.0, 35.0, 55.0]) * k, 50.0)]
    for sgn in (-1.0, 1.0):
        organs.append(((sgn * 70.0 * k, 45.0 * k, crest + rng.uniform(50.0, 80.0) * k),
                       np.array([28.0, 24.0, 55.0]) * k, 35.0))
    a.organs[:0] = organs
