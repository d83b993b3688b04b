"""A phantom CT series written by the project's phantom writer, and a synthetic finding placed on it.

The attention map is a P x P x P patch grid upsampled onto an S^3 grid laid over the ROI box along the volume's
axes (as the predictor's prepared volume is), with one patch given most of the weight so tests can check where
it lands.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.helpers import PATIENT_ID, PATIENT_NAME

GRID, SIZE = 4, 32  # patches per axis, map voxels per axis
HOT = (1, 2, 3)  # the patch that gets most of the weight


@dataclass
class Phantom:
    folder: Path
    volume: object  # sranet.runtime.volume.Volume read back from the series
    case: object  # sranet.data.synthetic.PhantomCase


def write_phantom(folder: Path, *, seed: int = 3, shape=(40, 64, 64), direction=None, study_uid=None) -> Phantom:
    from sranet.data.dicom_write import write_dicom_series
    from sranet.data.synthetic import generate_case
    from sranet.runtime.io import load_volume

    case = generate_case(seed, 2, shape=shape)
    write_dicom_series(case.hu, case.spacing_mm, folder, origin_mm=case.origin_mm, direction=direction,
                       patient_name=PATIENT_NAME, patient_id=PATIENT_ID, study_uid=study_uid)
    return Phantom(folder, load_volume(folder), case)


def attention_grid() -> np.ndarray:
    grid = np.full((GRID,) * 3, 0.2 / (GRID**3 - 1), dtype=np.float32)
    grid[HOT] = 0.8
    return grid


def finding_for(phantom: Phantom, side: str = "R", probability: float = 0.83, threshold: float = 0.5):
    """A HipFinding on the phantom's ROI box: attention map over the box, top patches, head location."""
    from sranet.runtime.dicom_out import AttentionMap, AttentionPatch, HeadLocation, HipFinding

    vol = phantom.volume
    box = np.array(phantom.case.roi_box, dtype=float)  # ((d0, d1), (h0, h1), (w0, w1)) voxels, half-open
    lo_idx, hi_idx = box[:, 0] - 0.5, box[:, 1] - 0.5  # outer voxel faces
    corners = np.array([[a, b, c] for a in (lo_idx[0], hi_idx[0]) for b in (lo_idx[1], hi_idx[1])
                        for c in (lo_idx[2], hi_idx[2])])
    mm = vol.index_to_patient(corners)
    roi_mm = tuple((float(mm[:, a].min()), float(mm[:, a].max())) for a in range(3))
    # map voxel v along axis a sits at source index lo + (v + 0.5) * step - 0.5 ... as a (4, 4) affine
    step = (hi_idx - lo_idx) / SIZE
    vox = np.eye(4)
    vox[:3, :3] = np.diag(step)
    vox[:3, 3] = lo_idx + step / 2
    affine = vol.affine @ vox
    weights = np.kron(attention_grid(), np.ones((SIZE // GRID,) * 3, dtype=np.float32))
    amap = AttentionMap(weights, affine)
    patch = SIZE // GRID
    order = np.argsort(-attention_grid().reshape(-1), kind="stable")[:3]
    patches = []
    for n in order:
        g = np.array(np.unravel_index(int(n), (GRID,) * 3))
        centre_vox = g * patch + (patch - 1) / 2
        centre = affine[:3, :3] @ centre_vox + affine[:3, 3]
        size = np.abs(np.diag(vox[:3, :3])) * patch * np.asarray(vol.spacing_mm)
        patches.append(AttentionPatch(tuple(centre), tuple(size), float(attention_grid().reshape(-1)[n])))
    centre_idx = np.asarray(phantom.case.head_center_mm) / np.asarray(phantom.case.spacing_mm)
    head = HeadLocation(tuple(vol.index_to_patient(centre_idx)), phantom.case.head_radius_mm, 0.93)
    return HipFinding(side=side, probability=probability, threshold=threshold, decision=probability >= threshold,
                      roi_mm=roi_mm, head=head, top_patches=tuple(patches), qc=("roi_truncated",), attention=amap)


def hot_patch_centre_mm(finding) -> np.ndarray:
    """LPS mm of the centre of the hot patch, from the map's own affine."""
    patch = SIZE // GRID
    centre_vox = np.array(HOT) * patch + (patch - 1) / 2
    a = finding.attention.affine
    return a[:3, :3] @ centre_vox + a[:3, 3]


def algorithm():
    from sranet.runtime.dicom_out import AlgorithmInfo

    return AlgorithmInfo(model_sha256="ab" * 32, artifact="/home/someone/models/sranet-demo.onnx")


def pixel_positions(pm) -> tuple[np.ndarray, np.ndarray]:
    """(F, R, C, 3) LPS mm of every pixel of a Parametric Map and its (F, R, C) values, from the tags only."""
    shared = pm.SharedFunctionalGroupsSequence[0]
    iop = np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, dtype=float)
    rs, cs = (float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing)
    rr, cc = np.meshgrid(np.arange(pm.Rows), np.arange(pm.Columns), indexing="ij")
    out = []
    for frame in pm.PerFrameFunctionalGroupsSequence:
        ipp = np.array(frame.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        out.append(ipp + cc[..., None] * cs * iop[:3] + rr[..., None] * rs * iop[3:])
    return np.stack(out), pm.pixel_array.reshape(len(out), pm.Rows, pm.Columns)


def sr_hips(sr) -> dict[str, dict]:
    """What an SR (a pydicom Dataset or a path) says per side, read from its content tree: an assessed hip's
    {"probability", "threshold", "decision", "qc"}, a hip not assessed {"not_assessed": [its texts]}."""
    import pydicom

    if not isinstance(sr, pydicom.Dataset):
        sr = pydicom.dcmread(sr)

    def meaning(item) -> str:
        return item.ConceptNameCodeSequence[0].CodeMeaning

    [measurements] = [item for item in sr.ContentSequence if meaning(item) == "Imaging Measurements"]
    out: dict[str, dict] = {}
    for group in measurements.ContentSequence:
        items = list(group.ContentSequence)
        [name] = [i.TextValue for i in items if meaning(i) == "Tracking Identifier"]
        if not name.endswith(("hip AVNFH", "hip not assessed")):
            continue
        side = "R" if name.startswith("right") else "L"
        texts = [i.TextValue for i in items if i.ValueType == "TEXT" and meaning(i) == "Quality Finding"]
        if name.endswith("not assessed"):
            out[side] = {"not_assessed": texts}
            continue
        numbers = {meaning(i): float(i.MeasuredValueSequence[0].NumericValue) for i in items if i.ValueType == "NUM"}
        [necrosis] = [i for i in items if i.ValueType == "CODE" and meaning(i) == "Necrosis"]
        out[side] = {"probability": numbers["Probability"], "threshold": numbers["Threshold Value"],
                     "decision": necrosis.ConceptCodeSequence[0].CodeMeaning == "Present", "qc": texts}
    return out
