"""Render docs/figures/dicom_overlay.png: the attention Parametric Map over its CT slice, from the DICOM files alone.

    .venv/bin/python docs/figures/render_dicom_overlay.py [--out docs/figures/dicom_overlay.png] [--keep DIR]

Step 1 makes the inputs: a phantom CT series (sranet.data.synthetic + sranet.data.dicom_write, a stage II hip) and
a synthetic finding on it (not a model's output: the attention grid gives most weight to the patch holding the
phantom's lesion), written by sranet.runtime.dicom_out as an SR and a Parametric Map.
Step 2 reads only DICOM back, with pydicom: the CT slices, the Parametric Map and the SR. Every CT pixel of the slice
through the map's peak is mapped to patient coordinates (ImagePositionPatient, ImageOrientationPatient,
PixelSpacing) and looked up in the map's frames by their own per-frame geometry; the SR's ROI box and top patch
(SCOORD3D volume surfaces) are cut with the slice plane and drawn as outlines.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

GRID, SIZE = 4, 32


def make_inputs(folder: Path) -> tuple[Path, list[Path]]:
    from sranet.data.dicom_write import write_dicom_series
    from sranet.data.synthetic import generate_case
    from sranet.runtime.dicom_out import (
        AlgorithmInfo,
        AttentionMap,
        AttentionPatch,
        HeadLocation,
        HipFinding,
        read_source_series,
        write_dicom_outputs,
    )
    from sranet.runtime.io import load_volume

    case = generate_case(4, 2, shape=(80, 128, 128), side="R")
    ct = folder / "ct"
    write_dicom_series(case.hu, case.spacing_mm, ct, origin_mm=case.origin_mm, patient_name="SYNTH^0004",
                       patient_id="SYNTH0004")
    vol = load_volume(ct)
    box = np.array(case.roi_box, dtype=float)
    lo, hi = box[:, 0] - 0.5, box[:, 1] - 0.5
    step = (hi - lo) / SIZE
    vox = np.eye(4)
    vox[:3, :3], vox[:3, 3] = np.diag(step), lo + step / 2
    affine = vol.affine @ vox  # map voxel -> source index -> LPS
    lesion = np.argwhere(case.lesion_mask > 0).mean(axis=0)  # lesion centroid, source voxel indices
    hot = tuple(np.clip(((lesion - lo) / step // (SIZE // GRID)).astype(int), 0, GRID - 1))
    grid = np.full((GRID,) * 3, 0.4 / (GRID**3 - 1), np.float32)
    grid[hot] = 0.6
    weights = np.kron(grid, np.ones((SIZE // GRID,) * 3, np.float32))
    corners = vol.index_to_patient(np.array([lo, hi]))
    roi = tuple((float(min(corners[:, a])), float(max(corners[:, a]))) for a in range(3))
    patch = SIZE // GRID
    centre = affine[:3, :3] @ (np.array(hot) * patch + (patch - 1) / 2) + affine[:3, 3]
    size = tuple(float(v) for v in np.abs(step) * patch * np.asarray(vol.spacing_mm))
    head = HeadLocation(tuple(vol.index_to_patient(np.asarray(case.head_center_mm) / case.spacing_mm)),
                        case.head_radius_mm, 0.9)
    finding = HipFinding("R", 0.81, 0.5, True, roi_mm=roi, head=head,
                         top_patches=(AttentionPatch(tuple(centre), size, 0.6),), attention=AttentionMap(weights, affine))
    outputs = write_dicom_outputs(read_source_series(ct), [finding], AlgorithmInfo("0" * 64, "synthetic-finding"),
                                  folder / "out", overwrite=True)
    return ct, outputs


def frame_geometry(pm):
    shared = pm.SharedFunctionalGroupsSequence[0]
    iop = np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, dtype=float)
    spacing = np.array(shared.PixelMeasuresSequence[0].PixelSpacing, dtype=float)
    ipps = np.array([f.PlanePositionSequence[0].ImagePositionPatient for f in pm.PerFrameFunctionalGroupsSequence],
                    dtype=float)
    return ipps, iop[:3], iop[3:], spacing


def render(ct_folder: Path, pm_path: Path, sr_path: Path, out: Path) -> Path:
    import cv2
    import pydicom

    pm = pydicom.dcmread(pm_path)
    values = pm.pixel_array.astype(np.float32).reshape(int(pm.NumberOfFrames), pm.Rows, pm.Columns)
    ipps, row_dir, col_dir, (rs, cs) = frame_geometry(pm)
    normal = np.cross(row_dir, col_dir)
    peak_frame = int(np.argmax(values.reshape(len(values), -1).max(axis=1)))
    slices = [pydicom.dcmread(p) for p in sorted(ct_folder.glob("*.dcm"))]
    along = np.array([np.array(s.ImagePositionPatient, dtype=float) @ normal for s in slices])
    ct = slices[int(np.argmin(np.abs(along - ipps[peak_frame] @ normal)))]
    hu = ct.pixel_array * float(ct.RescaleSlope) + float(ct.RescaleIntercept)
    ct_ipp = np.array(ct.ImagePositionPatient, dtype=float)
    ct_iop = np.array(ct.ImageOrientationPatient, dtype=float)
    ct_rs, ct_cs = (float(v) for v in ct.PixelSpacing)
    rr, cc = np.meshgrid(np.arange(ct.Rows), np.arange(ct.Columns), indexing="ij")
    lps = ct_ipp + cc[..., None] * ct_cs * ct_iop[:3] + rr[..., None] * ct_rs * ct_iop[3:]  # (R, C, 3)
    # look every CT pixel up in the map frame at its position (nearest frame, nearest pixel; outside -> none)
    frame = np.argmin(np.abs((lps @ normal)[..., None] - (ipps @ normal)[None, None, :]), axis=-1)
    rel = lps - ipps[frame]
    mc, mr = np.rint(rel @ row_dir / cs).astype(int), np.rint(rel @ col_dir / rs).astype(int)
    near = np.abs((lps @ normal) - (ipps @ normal)[frame]) < 0.5 * float(ct.SliceThickness)
    inside = near & (mr >= 0) & (mr < pm.Rows) & (mc >= 0) & (mc < pm.Columns)
    attention = np.zeros(hu.shape, np.float32)
    attention[inside] = values[frame[inside], mr[inside], mc[inside]]

    grey = np.clip((hu + 250.0) / 1500.0 * 255.0, 0, 255).astype(np.uint8)
    base = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    heat = cv2.applyColorMap(np.clip(attention / attention.max() * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    alpha = np.where(attention > 0, 0.45, 0.0)[..., None]
    picture = (base * (1 - alpha) + heat * alpha).astype(np.uint8)
    scale = 4
    picture = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)

    sr = pydicom.dcmread(sr_path)
    colours = {"hip AVNFH": (255, 255, 255), "attention patch 1": (0, 255, 255)}
    for group in _groups(sr):
        name = next((str(i.TextValue) for i in group.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "112039"), "")
        colour = next((c for key, c in colours.items() if name.endswith(key)), None)
        if colour is None:
            continue
        points = np.concatenate([np.array(i.GraphicData, dtype=float).reshape(-1, 3) for i in group.ContentSequence
                                 if i.ValueType == "SCOORD3D"])
        d = points - ct_ipp  # the box's extent on this slice (boxes are aligned with the CT axes here)
        cols, rows = d @ ct_iop[:3] / ct_cs, d @ ct_iop[3:] / ct_rs
        top_left = (int((cols.min() + 0.5) * scale), int((rows.min() + 0.5) * scale))
        bottom_right = (int((cols.max() + 0.5) * scale), int((rows.max() + 0.5) * scale))
        cv2.rectangle(picture, top_left, bottom_right, colour, 1, cv2.LINE_AA)
        cv2.putText(picture, name, (top_left[0], max(12, top_left[1] - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1,
                    cv2.LINE_AA)
    cv2.putText(picture, "CT + Parametric Map (attention) + SR boxes, read back from DICOM", (6, 16),
                cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), picture)
    return out


def _groups(sr):
    """Measurement groups (CONTAINER 125007) of a TID 1500 report, walked with pydicom only."""
    stack = list(sr.ContentSequence)
    while stack:
        item = stack.pop()
        if item.ValueType == "CONTAINER" and item.ConceptNameCodeSequence[0].CodeValue == "125007":
            yield item
        stack.extend(getattr(item, "ContentSequence", []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("dicom_overlay.png"))
    parser.add_argument("--keep", type=Path, default=None, help="write the DICOM files here instead of a temp folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        ct, outputs = make_inputs(folder)
        print(render(ct, outputs[1], outputs[0], args.out))


if __name__ == "__main__":
    main()
