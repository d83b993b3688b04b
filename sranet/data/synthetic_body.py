"""The body around the hips, slice by slice: skin, fat, muscle, pelvic organs, spine, sacrum, ilium, pubis, ischium,
femoral shafts and the CT table (the hip joints themselves are drawn in 3D by ``sranet.data.synthetic_hip``).

All lengths in mm in the anatomical frame of ``sranet.data.synthetic_canvas`` (xa patient left, ya posterior, za
superior; origin midway between the femoral head centres), values in HU. ``draw_pelvis_anatomy`` draws every
random number once per study; ``draw_pelvis_slice`` is then deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sranet.data.synthetic_canvas import Canvas, bezier, ellipsoid_section

FAT_HU, MUSCLE_HU, URINE_HU, BOWEL_HU, GAS_HU, AIR_HU = -100.0, 50.0, 10.0, 35.0, -1000.0, -1000.0


@dataclass(frozen=True)
class Bones:
    """Bone HU of one patient: trabecular (spine, pelvis) and cortical; denser bone with a younger patient."""

    trab_hu: float
    cortex_hu: float
    cortex_mm: float


@dataclass
class PelvisAnatomy:
    """Every size and position of one patient's pelvis region (mm, anatomical frame).

    k                  body size factor (about 0.85-1.15); head_half_sep: half the distance between head centres.
    head_radius        femoral head radius (both sides; the hips draw their own variation).
    head_z             {side: height of that head centre} (small asymmetry); side "L" is +xa.
    trunk              (half width at the hips, anterior depth, posterior depth, centre ya).
    fat_mm             subcutaneous fat thickness; crest_z the iliac crest height; s1_z the top of the sacrum.
    organs             [(centre, radii, HU)] ellipsoids drawn in order (bladder, rectum, bowel loops, gas).
    """

    k: float
    head_half_sep: float
    head_radius: float
    head_z: dict
    trunk: tuple[float, float, float, float]
    fat_mm: float
    crest_z: float
    s1_z: float
    bones: Bones
    organs: list = field(default_factory=list)

    def head_centre(self, side: str) -> tuple[float, float, float]:
        sgn = 1.0 if side == "L" else -1.0
        return (sgn * self.head_half_sep, 0.0, self.head_z[side])

    def sacrum(self, za: float) -> tuple[float, float, float]:
        """(centre ya, half width, half depth) of the sacrum at height za; half width 0 outside it."""
        k, tip = self.k, -5.0 * self.k
        if not tip <= za <= self.s1_z:
            return self.vertebra_y(self.s1_z) + 20 * k, 0.0, 0.0
        frac = (za - tip) / (self.s1_z - tip)
        ya = self.vertebra_y(self.s1_z) + 20 * k + (self.s1_z - za) * 0.3
        return ya, 10 * k + 44 * k * frac**0.8, 7 * k + 10 * k * frac

    def vertebra_y(self, za: float) -> float:
        """Centre ya of the lumbar vertebral body at height za (lordosis: forwards going up)."""
        return 18.0 * self.k - 0.12 * max(0.0, za - self.s1_z)


def draw_pelvis_anatomy(rng: np.random.Generator, k: float, head_radius: float) -> PelvisAnatomy:
    """One patient's pelvis region, sized by ``k`` (mm, anatomical frame; random numbers drawn once here)."""
    hw = float(rng.uniform(84.0, 96.0) * k)
    r = head_radius
    fat = float(rng.uniform(8.0, 40.0) * k)
    half_width = hw + 2.8 * r + rng.uniform(8.0, 20.0) + fat
    trunk = (float(half_width), float(rng.uniform(85.0, 110.0) * k + fat), float(rng.uniform(95.0, 120.0) * k + fat),
             float(rng.uniform(-5.0, 5.0)))
    crest = float(rng.uniform(105.0, 125.0) * k)
    anat = PelvisAnatomy(
        k=k, head_half_sep=hw, head_radius=r,
        head_z={"L": float(rng.uniform(-2.0, 2.0)), "R": float(rng.uniform(-2.0, 2.0))},
        trunk=trunk, fat_mm=fat, crest_z=crest, s1_z=crest - float(rng.uniform(8.0, 20.0) * k),
        bones=Bones(float(rng.uniform(160.0, 260.0)), float(rng.uniform(700.0, 1200.0)), float(rng.uniform(1.2, 2.2))),
    )
    bladder_fill = rng.uniform(0.6, 1.1)
    anat.organs.append(((0.0, -32.0 * k, 12.0 * k * bladder_fill), np.array([42.0, 34.0, 32.0]) * k * bladder_fill,
                        URINE_HU))
    sacrum_y = anat.sacrum(20.0 * k)[0]
    for _ in range(int(rng.integers(6, 14))):  # bowel loops in the pelvis and lower abdomen, some holding gas
        c = (rng.uniform(-0.6, 0.6) * hw, rng.uniform(-60.0, 20.0) * k, rng.uniform(35.0, 240.0) * k)
        radii = rng.uniform(14.0, 26.0, 3) * k
        anat.organs.append((c, radii, BOWEL_HU))
        if rng.random() < 0.6:
            anat.organs.append(((c[0], c[1] - 0.3 * radii[1], c[2]), radii * rng.uniform(0.3, 0.7), GAS_HU))
    for z in rng.uniform(-25.0, 40.0, int(rng.integers(1, 4))) * k:  # rectum, with a gas bubble now and then
        c = (rng.uniform(-8.0, 8.0), sacrum_y - 24.0 * k, float(z))
        anat.organs.append((c, np.array([16.0, 14.0, 18.0]) * k, 20.0))
        if rng.random() < 0.5:
            anat.organs.append((c, np.array([7.0, 6.0, 8.0]) * k * rng.uniform(0.6, 1.3), GAS_HU))
    return anat


def _soft_tissue(cv: Canvas, za: float, a: PelvisAnatomy, fat_field: np.ndarray) -> None:
    """Skin outline, subcutaneous fat, muscle with fat streaks, the pelvic cavity and its organs."""
    k, f = a.k, a.fat_mm
    width, ant, post, yc = a.trunk
    fold = -75.0 * k
    body = np.zeros(cv.hu.shape, np.uint8)
    inner = np.zeros(cv.hu.shape, np.uint8)
    if za > fold:  # trunk: widest at the trochanters, a waist above the iliac crest, buttocks behind the hips
        taper = float(np.clip((za - fold) / (45.0 * k), 0.0, 1.0)) ** 0.5
        waist = 1.0 - 0.12 * float(np.clip((za - a.crest_z + 30 * k) / (60 * k), 0.0, 1.0))
        buttock = 1.0 + 0.12 * float(np.exp(-(((za + 30 * k) / (45 * k)) ** 2)))
        w = width * taper * waist
        cv.egg(0.0, yc, w, ant * taper, post * taper * buttock, 1, target=body)
        cv.egg(0.0, yc, w - f, ant * taper - f, post * taper * buttock - 1.3 * f, 1, target=inner)
    if za < fold + 40.0 * k:  # the thighs
        for sgn in (-1.0, 1.0):
            tx, tw, td = sgn * (a.head_half_sep + 22.0 * k), 70.0 * k + f, 66.0 * k + f
            cv.ellipse(tx, 4.0 * k, tw, td, 1, target=body)
            cv.ellipse(tx, 4.0 * k, tw - f, td - f, 1, target=inner)
    cv.hu[body > 0] = FAT_HU
    muscle = inner > 0
    cv.hu[muscle] = MUSCLE_HU
    cv.hu[muscle & (fat_field > 1.1)] = FAT_HU + 10.0
    if -40.0 * k < za < a.crest_z + 60.0 * k:  # pelvic cavity: visceral fat, psoas muscles, organs
        grow = float(np.clip((za + 40 * k) / (a.crest_z + 40 * k), 0.0, 1.0))
        cw = a.head_half_sep * (0.62 + 0.55 * grow)
        cv.ellipse(0.0, -8.0 * k, cw, 52.0 * k + 20.0 * k * grow, FAT_HU + 15.0)
        if za > 20.0 * k:
            for sgn in (-1.0, 1.0):
                pr = 10.0 * k + 12.0 * k * float(np.clip((za - 20 * k) / (100 * k), 0.0, 1.0))
                cv.ellipse(sgn * (28.0 * k + pr), a.vertebra_y(za) + 4.0 * k, pr, pr * 0.9, MUSCLE_HU)
    for centre, radii, hu in a.organs:
        ab = ellipsoid_section(centre, radii, za)
        if ab is not None:
            cv.ellipse(centre[0], centre[1], ab[0], ab[1], hu)
    outside = body == 0
    cv.hu[outside] = AIR_HU


def _spine_and_sacrum(cv: Canvas, za: float, a: PelvisAnatomy) -> None:
    b, k = a.bones, a.k
    if za > a.s1_z:  # lumbar vertebrae: bodies 28 mm high, discs 9 mm, posterior arch and processes
        yv = a.vertebra_y(za)
        level = (za - a.s1_z) % (37.0 * k)
        if level < 9.0 * k:
            cv.ellipse(0.0, yv, 24.0 * k, 18.0 * k, 90.0)  # intervertebral disc
        else:
            cv.bone_ellipse(0.0, yv, 24.0 * k, 18.0 * k, b.cortex_mm, b.cortex_hu * 0.8, b.trab_hu)
            arch = bezier((-14 * k, yv + 17 * k), (0.0, yv + 44 * k), (14 * k, yv + 17 * k))
            cv.bone_polyline(arch, 7.0 * k, b.cortex_mm, b.cortex_hu * 0.8, b.trab_hu)
            if level > 18.0 * k:
                cv.bone_polyline([(0.0, yv + 38 * k), (0.0, yv + 64 * k)], 7.0 * k, b.cortex_mm, b.cortex_hu * 0.8,
                                 b.trab_hu)
            else:
                cv.bone_polyline([(-48 * k, yv + 20 * k), (48 * k, yv + 20 * k)], 8.0 * k, b.cortex_mm,
                                 b.cortex_hu * 0.8, b.trab_hu)
            cv.ellipse(0.0, yv + 29 * k, 9.0 * k, 8.0 * k, 15.0)  # spinal canal
    ys, ws, ds = a.sacrum(za)
    if ws > 0:
        cv.bone_ellipse(0.0, ys, ws, ds, b.cortex_mm, b.cortex_hu * 0.8, b.trab_hu)
        if za > a.s1_z - 30.0 * k:
            cv.bone_ellipse(0.0, ys - 6 * k, 23.0 * k, 16.0 * k, b.cortex_mm, b.cortex_hu * 0.8, b.trab_hu)


def _pelvic_bones(cv: Canvas, za: float, a: PelvisAnatomy) -> None:
    """Ilium (wing to crest), pubis and symphysis, ischium and the ischiopubic rami, on both sides."""
    b, k, r, hw = a.bones, a.k, a.head_radius, a.head_half_sep
    z0 = 1.2 * r
    for sgn, side in ((1.0, "L"), (-1.0, "R")):
        hz = a.head_z[side]
        if hz + z0 <= za <= a.crest_z:
            u = (za - hz - z0) / max(a.crest_z - hz - z0, 1.0)
            ys, ws, _ = a.sacrum(za)
            u_post = min(1.0, 1.6 * u)
            back = (sgn * ((1 - u_post) * 0.8 * hw + u_post * (max(ws, 30.0 * k) + 4.0 * k)),
                    (1 - u_post) * 28.0 * k + u_post * (ys - 4.0 * k))
            front = (sgn * (hw + 5.0 * k + 28.0 * k * u), -12.0 * k - 24.0 * k * u)
            mid = (sgn * (hw + 14.0 * k + 40.0 * k * u), 6.0 * k)
            thick = 7.0 * k + 19.0 * k * (1.0 - u) ** 2 + (5.0 * k if za > a.crest_z - 8.0 * k else 0.0)
            cv.bone_polyline(bezier(back, mid, front), thick, b.cortex_mm, b.cortex_hu * 0.85, b.trab_hu)
        acet_front = (sgn * (hw - 0.7 * r), -1.0 * r, hz + 0.1 * r)  # leaves the acetabulum in front
        symphysis = (sgn * 8.0 * k, -46.0 * k, hz - 25.0 * k)
        cv.bar(acet_front, symphysis, 9.0 * k, 8.0 * k, za, b.cortex_hu * 0.85)  # superior pubic ramus
        cv.bar(acet_front, symphysis, 9.0 * k - b.cortex_mm, 8.0 * k - b.cortex_mm, za, b.trab_hu)
        cv.bar((sgn * 8.0 * k, -46.0 * k, hz - 44.0 * k), (sgn * 8.0 * k, -46.0 * k, hz - 12.0 * k), 8.0 * k, 8.0 * k,
               za, b.cortex_hu * 0.85)  # pubic body at the symphysis
        ischium_top = (sgn * (hw - 0.4 * r), 1.1 * r, hz - 0.3 * r)  # and behind; the obturator foramen below
        tuberosity = (sgn * (hw - 22.0 * k), 38.0 * k, hz - 60.0 * k)
        cv.bar(ischium_top, tuberosity, 12.0 * k, 13.0 * k, za, b.cortex_hu * 0.85)
        cv.bar(ischium_top, tuberosity, 12.0 * k - b.cortex_mm, 13.0 * k - b.cortex_mm, za, b.trab_hu)
        cv.bar(tuberosity, (sgn * 12.0 * k, -42.0 * k, hz - 44.0 * k), 7.0 * k, 6.0 * k, za, b.cortex_hu * 0.85)


def femoral_shaft_axis(a: PelvisAnatomy, side: str) -> tuple[np.ndarray, np.ndarray]:
    """(top, bottom) anatomical points of the femoral shaft's axis below the trochanter (bottom 300 mm lower)."""
    sgn, r = (1.0 if side == "L" else -1.0), a.head_radius
    hz = a.head_z[side]
    top = np.array([sgn * (a.head_half_sep + 1.3 * r), 0.1 * r, hz - 1.2 * r])
    bottom = top + np.array([-sgn * 0.14 * 300.0, 6.0, -300.0])
    return top, bottom


def _femoral_shafts(cv: Canvas, za: float, a: PelvisAnatomy) -> None:
    b, r = a.bones, a.head_radius
    for side in ("L", "R"):
        top, bottom = femoral_shaft_axis(a, side)
        meta = top + (bottom - top) * 0.22  # the metaphysis: trabecular bone flaring up into the trochanters
        cv.bar(top, meta, 1.05 * r, 0.62 * r, za, b.cortex_hu)
        cv.bar(top, meta, 1.05 * r - b.cortex_mm, 0.62 * r - 2.5, za, b.trab_hu * 0.8)
        cv.bar(meta, bottom, 0.62 * r, 0.6 * r, za, b.cortex_hu * 1.1)  # cortical tube, fatty marrow
        cv.bar(meta, bottom, 0.62 * r - 5.5, 0.6 * r - 6.0, za, -40.0)
        sgn = 1.0 if side == "L" else -1.0
        lesser = (top[0] - sgn * 0.55 * r, top[1] + 0.55 * r, top[2] - 1.3 * r)
        cv.bar(lesser, lesser, 0.38 * r, 0.38 * r, za, b.cortex_hu)


def draw_pelvis_slice(cv: Canvas, za: float, a: PelvisAnatomy, fat_field: np.ndarray) -> None:
    """Draw the slice at anatomical height ``za`` into ``cv.hu`` (H, W): everything but the hip joints, with a
    clear sphere (muscle) around each femoral head where ``draw_hip_bones`` draws the joint."""
    _soft_tissue(cv, za, a, fat_field)
    _spine_and_sacrum(cv, za, a)
    _pelvic_bones(cv, za, a)
    _femoral_shafts(cv, za, a)
    for side in ("L", "R"):
        x, y, z = a.head_centre(side)
        reach = a.head_radius + 6.0
        if abs(za - z) < reach:
            h = float(np.sqrt(reach * reach - (za - z) ** 2))
            cv.ellipse(x, y, h, h, MUSCLE_HU)


def table_masks(shape_hw, row_mm: float, grid_origin_xy, pixel_mm: float, prone: bool):
    """The CT table on a canonical (H, W) slice, in the scanner frame (not rolled with the patient).

    The patient rests on the table at LPS y = ``row_mm`` (behind a supine patient, in front of a prone one).
    Returns boolean (H, W) masks: ``clear`` (beyond the table surface: air), ``foam`` and ``skin`` of a 10 mm
    carbon-fibre board, gently curved."""
    h, w = shape_hw
    cols = grid_origin_xy[0] + np.arange(w) * pixel_mm
    centre = 0.5 * (cols[0] + cols[-1])
    sign = -1.0 if prone else 1.0
    surface = row_mm - sign * 0.00025 * (cols - centre) ** 2
    rows = grid_origin_xy[1] + np.arange(h)[:, None] * pixel_mm
    depth = sign * (rows - surface[None, :])  # mm beyond the table surface, away from the patient
    board = (depth > 2.0) & (depth < 12.0) & (np.abs(cols - centre) < 230.0)[None, :]
    return depth > 0, board, board & ((depth < 3.5) | (depth > 10.5))


def apply_table(hu2d: np.ndarray, masks) -> None:
    """Clear everything beyond the table surface to air and draw the board (``table_masks``) into a slice."""
    clear, foam, skin = masks
    hu2d[clear] = AIR_HU
    hu2d[foam] = -850.0
    hu2d[skin] = 250.0
