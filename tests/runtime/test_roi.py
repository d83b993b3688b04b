"""ROI text form, voxel and mm boxes, empty ROIs."""

import numpy as np
import pytest

from sranet.errors import EmptyRoiError, InputError
from sranet.runtime.roi import Roi, parse_roi, roi_box, volume_roi_box
from sranet.runtime.volume import Volume


def _volume(shape=(40, 50, 60), spacing=(2.0, 0.5, 0.8), origin=(10.0, -20.0, 30.0), direction=None):
    return Volume(np.zeros(shape, np.float32), spacing, origin, np.eye(3) if direction is None else direction)


def test_parse_voxel_and_mm_forms_round_trip():
    r = parse_roi("4:20, 10:30,0:60", side="r")
    assert (r.units, r.lo, r.hi, r.side) == ("voxel", (4, 10, 0), (20, 30, 60), "R")
    assert parse_roi(r.text()) == r.with_side(None)
    m = parse_roi("mm:-1.5:2e1,0:10,-900:-850")
    assert m.units == "mm" and m.lo == (-1.5, 0, -900) and m.hi == (20.0, 10, -850)
    assert parse_roi(m.text()) == m


@pytest.mark.parametrize("text, error", [
    ("1:2,3:4", InputError), ("a:b,1:2,3:4", InputError), ("", InputError), ("5:5,0:1,0:1", EmptyRoiError),
    ("9:3,0:1,0:1", EmptyRoiError), ("0.5:3,0:1,0:1", InputError), ("mm:0:1,0:1,nan:3", InputError),
])
def test_bad_roi_text(text, error):
    with pytest.raises(error):
        parse_roi(text)


def test_bad_side():
    with pytest.raises(InputError, match="side"):
        parse_roi("0:1,0:1,0:1", side="left")


def test_voxel_box_is_clipped_and_shifted_by_index_offset():
    v = _volume()
    assert volume_roi_box(v, parse_roi("-5:10,45:80,0:60")) == ((0, 10), (45, 50), (0, 60))
    assert volume_roi_box(v, None) == ((0, 40), (0, 50), (0, 60))
    v.index_offset = (10, 0, 0)
    assert volume_roi_box(v, parse_roi("12:20,0:5,0:5")) == ((2, 10), (0, 5), (0, 5))


def test_mm_box_touches_the_voxels_it_covers():
    v = _volume()
    # voxel d spans [10 + 2d - 1, 10 + 2d + 1] mm in x (axis D runs along x here)
    box = volume_roi_box(v, parse_roi("mm:14:20,-20:-15,30:38"))
    assert box == ((2, 6), (0, 11), (0, 11))
    lo_mm = v.index_to_patient(np.array([b[0] for b in box]) - 0.5)
    hi_mm = v.index_to_patient(np.array([b[1] for b in box]) - 0.5)
    assert np.all(lo_mm <= [14, -20, 30]) and np.all(hi_mm >= [20, -15, 38])


def test_mm_box_through_a_flipped_rotated_geometry():
    direction = np.array([[0, 0, 1], [0, -1, 0], [1, 0, 0]], float)  # D -> +z, H -> -y, W -> +x
    v = _volume(direction=direction, origin=(0.0, 0.0, 0.0))
    box = volume_roi_box(v, parse_roi("mm:1.6:8,-10:-4.9,2:20"))
    # x 1.6..8 over W (0.8 mm): voxels 2..10; y -10..-4.9 over H (-0.5 mm): 10..20; z 2..20 over D (2 mm): 1..10
    assert box == ((1, 11), (10, 21), (2, 11))


def test_empty_roi_outside_the_volume_names_shape():
    v = _volume()
    with pytest.raises(EmptyRoiError, match=r"does not overlap the volume of shape \(40, 50, 60\)"):
        volume_roi_box(v, parse_roi("mm:500:600,0:1,0:1"))
    with pytest.raises(EmptyRoiError):
        roi_box(parse_roi("40:45,0:5,0:5"), (40, 50, 60), v.affine)


def test_voxel_and_patient_mapping_round_trip():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    v = _volume(direction=q)
    idx = rng.uniform(0, 40, size=(100, 3))
    np.testing.assert_allclose(v.patient_to_index(v.index_to_patient(idx)), idx, atol=1e-9)
    # one voxel step along axis a moves spacing[a] mm along direction column a
    step = v.index_to_patient(np.array([0, 1, 0])) - v.index_to_patient(np.array([0, 0, 0]))
    np.testing.assert_allclose(step, 0.5 * q[:, 1])


def test_roi_dataclass_rejects_bad_units():
    with pytest.raises(InputError):
        Roi((0, 0, 0), (1, 1, 1), units="cm")
