"""Render docs/localisation.png: the femoral-head localiser at work on one whole-pelvis phantom.

Three panels, drawn with OpenCV from ``generate_pelvis_study(seed)`` (head first, supine):
  a. coronal slice through both head centres: the heads found (circle = fitted sphere), their ROI boxes (head
     cube + PreprocessConfig.roi_margin_mm), and the truth's centres (small crosses);
  b. the sphere votes on the 4 mm copy (coronal maximum projection) with the vote peaks examined: green the two
     heads chosen, orange the spheres that are not femoral heads (acetabular roof, trochanter, spine, ...);
  c. axial slice through the left head: every surface point the sphere was fitted to (radial falls of HU).

    .venv/bin/python benchmarks/localisation_figure.py            # writes docs/localisation.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _gray(hu, lo=-250.0, hi=1000.0):
    import numpy as np

    return np.clip((hu - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)


def _label(img, text):
    import cv2

    cv2.putText(img, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "localisation.png")
    args = ap.parse_args()

    import cv2
    import numpy as np

    from sranet.data.synthetic_pelvis import generate_pelvis_study
    from sranet.runtime.localise import locate_femoral_heads
    from sranet.runtime.localise_grid import downsample, sphere_votes
    from sranet.runtime.localise_heads import surface_points

    study = generate_pelvis_study(args.seed, stages={"L": 3, "R": 0}, patient_position="HFS", slice_mm=1.5,
                                  slices=180)
    vol = study.to_volume()  # HFS: array axes run along LPS +z, +y, +x
    loc = locate_femoral_heads(vol)
    sd, sh, sw = vol.spacing_mm
    scale = 2.0  # display pixels per mm
    heads = loc.heads

    def to_px(point_mm):  # coronal display: x to the right, z up
        idx = vol.patient_to_index(np.asarray(point_mm))
        return int(round(idx[2] * sw * scale)), int(round((vol.shape[0] - 1 - idx[0]) * sd * scale))

    # a. coronal slice through the head centres
    y = int(round(np.mean([vol.patient_to_index(np.asarray(h.centre_mm))[1] for h in heads.values()])))
    cor = _gray(vol.hu[::-1, y, :])
    cor = cv2.resize(cor, (int(vol.shape[2] * sw * scale), int(vol.shape[0] * sd * scale)))
    cor = cv2.cvtColor(cor, cv2.COLOR_GRAY2BGR)
    for side, h in heads.items():
        c = to_px(h.centre_mm)
        cv2.circle(cor, c, int(h.radius_mm * scale), (60, 220, 60), 2, cv2.LINE_AA)
        lo, hi = np.array(h.roi.lo), np.array(h.roi.hi)
        cv2.rectangle(cor, to_px([lo[0], 0, hi[2]]), to_px([hi[0], 0, lo[2]]), (0, 200, 255), 2)
        t = to_px(study.hips[side].centre_mm)
        cv2.drawMarker(cor, t, (255, 80, 80), cv2.MARKER_CROSS, 12, 2)
        cv2.putText(cor, f"{side}: r {h.radius_mm:.1f} mm, conf {h.confidence:.2f}", (c[0] - 75, c[1] - 80),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (60, 220, 60), 1, cv2.LINE_AA)
    _label(cor, "a  coronal: heads, ROI boxes (orange), truth (blue +)")

    # b. votes on the 4 mm copy, coronal maximum projection
    grid = downsample(vol, 4.0)
    acc = sphere_votes(grid, np.arange(17.0, 32.1, 2.5), 25.0)
    mip = acc.max(axis=1)[::-1]
    mip = (np.clip(mip / max(mip.max(), 1.0), 0, 1) * 255).astype(np.uint8)
    mip = cv2.applyColorMap(cv2.resize(mip, (cor.shape[1], cor.shape[0]), interpolation=cv2.INTER_NEAREST),
                            cv2.COLORMAP_INFERNO)
    chosen = [np.asarray(h.centre_mm) for h in heads.values()]
    for cand in loc.candidates:
        c = np.asarray(cand["centre_mm"])
        good = any(np.linalg.norm(c - h) < 0.05 for h in chosen)  # summaries are rounded
        cv2.circle(mip, to_px(c), 7, (60, 220, 60) if good else (0, 140, 255), 2, cv2.LINE_AA)
    _label(mip, "b  sphere votes (4 mm): heads (green), other spheres (orange)")

    # c. axial slice through the left head, with the surface points of the fit
    head = heads["L"]
    d = int(round(vol.patient_to_index(np.asarray(head.centre_mm))[0]))
    ax = cv2.cvtColor(_gray(vol.hu[d]), cv2.COLOR_GRAY2BGR)
    ax = cv2.resize(ax, (int(vol.shape[2] * sw * scale), int(vol.shape[1] * sh * scale)))
    c = np.asarray(head.centre_mm)
    for point in surface_points(vol, c, head.radius_mm):
        p = vol.patient_to_index(point)
        if abs(p[0] - d) < 4:  # the points near this slice
            cv2.circle(ax, (int(p[2] * sw * scale), int(p[1] * sh * scale)), 3, (60, 220, 60), -1, cv2.LINE_AA)
    pc = vol.patient_to_index(c)
    cv2.circle(ax, (int(pc[2] * sw * scale), int(pc[1] * sh * scale)), int(head.radius_mm * scale), (0, 200, 255),
               1, cv2.LINE_AA)
    x0, x1 = int((pc[2] * sw - 60) * scale), int((pc[2] * sw + 60) * scale)
    y0, y1 = int((pc[1] * sh - 60) * scale), int((pc[1] * sh + 60) * scale)
    ax = cv2.resize(ax[max(0, y0):y1, max(0, x0):x1], (cor.shape[0], cor.shape[0]))
    _label(ax, "c  left head, axial: surface points of the fit")

    row = np.hstack([cor, np.zeros((cor.shape[0], 6, 3), np.uint8), mip, np.zeros((cor.shape[0], 6, 3), np.uint8), ax])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), row, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {args.out} ({row.shape[1]} x {row.shape[0]}); heads {loc.to_dict()['heads']}")


if __name__ == "__main__":
    main()
