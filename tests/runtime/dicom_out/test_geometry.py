"""The attention map lands where the model put it: read back from the DICOM tags alone (per-frame positions,
orientation, pixel spacing), a voxel of known attention sits at the right LPS position, for axial, feet-first and
coronal series and for a real Enhanced CT."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from tests.helpers import REAL_CT
from tests.runtime.dicom_out.builders import (
    GRID,
    HOT,
    SIZE,
    algorithm,
    finding_for,
    hot_patch_centre_mm,
    pixel_positions,
    write_phantom,
)
from tests.runtime.dicom_out.conftest import run_tool

DIRECTIONS = {  # column a = LPS direction of array axis a; axis 0 = axis 2 x axis 1
    "axial": None,
    "feet_first_flipped": np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]).T,
    "coronal": np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]).T,
}


@pytest.mark.integration
@pytest.mark.parametrize("orientation", list(DIRECTIONS))
def test_known_attention_voxel_maps_to_its_lps_position(tmp_path, orientation):
    from sranet.runtime.dicom_out import read_source_series, write_dicom_outputs

    phantom = write_phantom(tmp_path / "ct", direction=DIRECTIONS[orientation])
    finding = finding_for(phantom)
    paths = write_dicom_outputs(read_source_series(phantom.folder), [finding], algorithm(), tmp_path / "out")
    pm = pydicom.dcmread(paths[1])
    positions, values = pixel_positions(pm)
    hot = values == values.max()
    assert values.max() == pytest.approx(0.8)
    # every hot pixel maps back (through the attention map's own affine) into the hot patch's voxels (nearest
    # voxel: up to half a map voxel beyond its centres, where a CT pixel centre falls on a voxel border)
    inverse = np.linalg.inv(finding.attention.affine)
    idx = positions[hot] @ inverse[:3, :3].T + inverse[:3, 3]
    patch = SIZE // GRID
    first = np.array(HOT) * patch
    assert np.all(idx >= first - 0.5 - 1e-6) and np.all(idx <= first + patch - 1 + 0.5 + 1e-6)
    # and no pixel well inside the hot patch was left cold
    inside = np.all((idx_all := positions.reshape(-1, 3) @ inverse[:3, :3].T + inverse[:3, 3]) > first - 0.45, axis=1)
    inside &= np.all(idx_all < first + patch - 1 + 0.45, axis=1)
    assert inside.any() and np.all(values.reshape(-1)[inside] == pytest.approx(0.8))
    # and the hot pixels are centred on the hot patch's centre (to within one CT voxel)
    spacing = np.asarray(phantom.volume.spacing_mm)
    assert np.linalg.norm(positions[hot].mean(axis=0) - hot_patch_centre_mm(finding)) < spacing.max()
    # every frame lies on a CT slice, pixel for pixel: same orientation and spacing, integer pixel offsets
    ct = {ds.SOPInstanceUID: ds for ds in (pydicom.dcmread(p, stop_before_pixels=True) for p in phantom.folder.iterdir())}
    shared = pm.SharedFunctionalGroupsSequence[0]
    first = next(iter(ct.values()))
    assert np.allclose(shared.PlaneOrientationSequence[0].ImageOrientationPatient, first.ImageOrientationPatient)
    assert np.allclose(shared.PixelMeasuresSequence[0].PixelSpacing, first.PixelSpacing)
    for frame, pos in zip(pm.PerFrameFunctionalGroupsSequence, positions, strict=True):
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        source = ct[uid]
        iop = np.array(source.ImageOrientationPatient, dtype=float)
        offset = pos[0, 0] - np.array(source.ImagePositionPatient, dtype=float)
        along = np.array([offset @ iop[:3] / float(source.PixelSpacing[1]), offset @ iop[3:] / float(source.PixelSpacing[0]),
                          offset @ np.cross(iop[:3], iop[3:])])
        assert np.allclose(along[:2], np.rint(along[:2]), atol=1e-3) and abs(along[2]) < 1e-3


def test_enhanced_ct_source_frames_are_referenced_by_number(tmp_path):
    """A real multi-frame Enhanced CT: the map's frames point at the source frames at their positions."""
    from sranet.runtime.dicom_out import AttentionMap, HipFinding, SourceSeries, write_dicom_outputs

    ds = pydicom.dcmread(REAL_CT / "pydicom-data" / "eCT_Supplemental.dcm", stop_before_pixels=True)
    source = SourceSeries.from_datasets([ds])
    centre = source.pixel_to_patient(0, np.array(256.0), np.array(256.0))
    affine = np.eye(4)
    affine[:3, :3] = np.eye(3) * 2.0
    affine[:3, 3] = centre - 15
    weights = np.zeros((16, 16, 16), np.float32)
    weights[8, 8, 8] = 1.0
    roi = tuple((float(c) - 16, float(c) + 16) for c in centre)
    finding = HipFinding("L", 0.1, 0.5, False, roi_mm=roi, attention=AttentionMap(weights, affine))
    paths = write_dicom_outputs(source, [finding], algorithm(), tmp_path)
    pm = pydicom.dcmread(paths[1])
    by_number = {n + 1: np.array(f.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
                 for n, f in enumerate(ds.PerFrameFunctionalGroupsSequence)}
    for frame in pm.PerFrameFunctionalGroupsSequence:
        ref = frame.DerivationImageSequence[0].SourceImageSequence[0]
        assert ref.ReferencedSOPInstanceUID == ds.SOPInstanceUID
        pos = np.array(frame.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        assert abs((pos - by_number[int(ref.ReferencedFrameNumber)]) @ source.normal) < 1e-3
    positions, values = pixel_positions(pm)
    peak = positions[values == values.max()]
    assert np.allclose(peak.mean(axis=0), affine[:3, :3] @ [8, 8, 8] + affine[:3, 3], atol=1.0)
    for path in paths:
        result = run_tool("dciodvfy", str(path))
        assert not [line for line in result.stderr.splitlines() + result.stdout.splitlines() if line.startswith("Error")]
