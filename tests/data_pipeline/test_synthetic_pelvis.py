"""Whole-pelvis phantoms: geometry per patient position, the truth they carry, variants, negatives, DICOM on disk."""

import numpy as np
import pydicom
import pytest

from sranet.data.synthetic_pelvis import POSITIONS, generate_pelvis_study, storage_direction
from sranet.data.synthetic_pelvis_dataset import plan_studies, read_truth, write_pelvis_dataset
from sranet.data.synthetic_pelvis_hips import METAL_MIN_HU
from sranet.errors import InputError
from sranet.runtime.io import load_volume
from sranet.runtime.manifest import read_manifest

# a small grid for fast tests: 256 x 256 x 80 slices of 3 mm (the presets draw 150-400 slices)
SMALL = {"slices": 80, "slice_mm": 3.0}


@pytest.fixture(scope="module")
def by_position():
    return {p: generate_pelvis_study(4, stages={"L": 3, "R": 0}, patient_position=p, **SMALL) for p in POSITIONS}


def _hu_at(study, point_mm) -> float:
    idx = np.rint(study.to_volume().patient_to_index(np.asarray(point_mm))).astype(int)
    return float(study.hu[tuple(idx)])


@pytest.mark.integration
def test_study_shape_values_and_truth(by_position):
    s = by_position["HFS"]
    assert s.hu.shape == (80, 256, 256) and s.hu.dtype == np.float32
    assert np.array_equal(s.hu, np.rint(s.hu)) and s.hu.min() >= -1024 and s.hu.max() <= 3071
    assert set(s.hips) == {"L", "R"} and s.kind == "pelvis"
    left, right = s.hips["L"], s.hips["R"]
    assert left.centre_mm[0] > right.centre_mm[0]  # patient left is LPS +x
    assert 120 < np.linalg.norm(np.subtract(left.centre_mm, right.centre_mm)) < 260
    for hip in (left, right):
        assert 19 <= hip.radius_mm <= 28 and hip.visibility == "full" and hip.metal == "none"
        assert _hu_at(s, hip.centre_mm) > 150  # the head is bone
        # air and soft tissue around, bone in the middle: the body is there
    assert (s.hu < -900).mean() > 0.05 and ((s.hu > -150) & (s.hu < 100)).mean() > 0.2


def test_patient_positions_store_the_same_patient_flipped(by_position):
    for position, s in by_position.items():
        ref = by_position["HFP" if position.endswith("P") else "HFS"]  # prone: the table lies in front
        np.testing.assert_array_equal(s.direction, storage_direction(position))
        assert s.patient_position == position
        canonical = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]])
        flips = tuple(slice(None, None, -1) if s.direction[:, a] @ canonical[:, a] < 0 else slice(None)
                      for a in range(3))
        ref_flips = tuple(slice(None, None, -1) if ref.direction[:, a] @ canonical[:, a] < 0 else slice(None)
                          for a in range(3))
        np.testing.assert_array_equal(s.hu[flips], ref.hu[ref_flips])  # one patient, in the scanner's order
        vol = s.to_volume()
        np.testing.assert_allclose(vol.index_to_patient(np.zeros(3)), s.origin_mm)
        for side in ("L", "R"):
            assert s.hips[side].centre_mm == by_position["HFS"].hips[side].centre_mm
            assert _hu_at(s, s.hips[side].centre_mm) == _hu_at(ref, ref.hips[side].centre_mm)
    ffs = by_position["FFS"].to_volume()  # feet first: array axis W runs to the patient's right
    w_left = ffs.patient_to_index(np.array(by_position["FFS"].hips["L"].centre_mm))[2]
    w_right = ffs.patient_to_index(np.array(by_position["FFS"].hips["R"].centre_mm))[2]
    assert w_left < w_right


@pytest.mark.integration
def test_same_seed_same_patient_other_stage_changes_only_that_hip():
    a = generate_pelvis_study(9, stages={"L": 0, "R": 0}, **SMALL)
    b = generate_pelvis_study(9, stages={"L": 4, "R": 0}, **SMALL)
    again = generate_pelvis_study(9, stages={"L": 0, "R": 0}, **SMALL)
    assert np.array_equal(a.hu, again.hu)
    changed = np.argwhere(a.hu != b.hu)
    assert len(changed) > 100
    pts = a.to_volume().index_to_patient(changed)
    assert np.linalg.norm(pts - np.array(a.hips["L"].centre_mm), axis=1).max() < 4.0 * a.hips["L"].radius_mm
    assert a.hips["L"].lesion_mask.sum() == 0 and b.hips["L"].lesion_mask.sum() > 50


def test_lesion_mask_lies_in_the_head(by_position):
    for s in by_position.values():
        hip = s.hips["L"]  # stage 3
        (d0, d1), (h0, h1), (w0, w1) = hip.lesion_box
        assert hip.lesion_mask.shape == (d1 - d0, h1 - h0, w1 - w0) and hip.stage == 3
        idx = np.argwhere(hip.lesion_mask) + [d0, h0, w0]
        dist = np.linalg.norm(s.to_volume().index_to_patient(idx) - np.array(hip.centre_mm), axis=1)
        assert len(idx) > 50 and dist.max() <= hip.radius_mm + 2.0


@pytest.mark.parametrize("variant", ["prosthesis", "screws"])
def test_metal_variants(variant):
    s = generate_pelvis_study(12, variant=variant, metal_side="R", **SMALL)
    hip = s.hips["R"]
    assert hip.metal == variant and s.hips["L"].metal == "none"
    near = np.linalg.norm(s.to_volume().index_to_patient(np.argwhere(s.hu > METAL_MIN_HU))
                          - np.array(hip.centre_mm), axis=1)
    assert near.size > 20 and near.min() < hip.radius_mm  # metal in the head
    assert (hip.stage is None) == (variant == "prosthesis") and (hip.lesion_mask is None) == (variant == "prosthesis")


def test_hip_out_of_view_and_head_cut_are_reported_in_the_truth():
    out = generate_pelvis_study(21, variant="hip_out_of_fov", **SMALL)
    assert sorted(h.visibility for h in out.hips.values()) == ["full", "none"]
    cut = generate_pelvis_study(22, variant="head_cut", **SMALL)
    assert any(h.visibility == "partial" and 0.02 <= h.visible_fraction < 0.999 for h in cut.hips.values())


@pytest.mark.parametrize("kind", ["abdomen", "chest", "knee"])
def test_negative_studies_have_no_hips(kind):
    s = generate_pelvis_study(5, kind=kind, **SMALL)
    assert s.hips == {} and s.kind == kind and (s.hu > 300).any() and (s.hu < -900).any()


def test_bad_arguments_are_typed_errors():
    with pytest.raises(InputError, match="variant"):
        generate_pelvis_study(0, kind="chest", variant="screws")
    with pytest.raises(InputError, match="patient_position"):
        generate_pelvis_study(0, patient_position="LFS")
    with pytest.raises(InputError, match="stages"):
        generate_pelvis_study(0, stages={"L": 5})
    with pytest.raises(InputError, match="slices"):
        generate_pelvis_study(0, slices=0)


def test_study_plan_mixes_kinds_variants_stages_and_splits():
    jobs = plan_studies(40, seed=1, negatives=0.15, stage_mix={0: 0.5, 2: 0.5},
                        split_fractions={"train": 0.7, "val": 0.15, "test": 0.15})
    kinds = [j["kind"] for j in jobs]
    assert kinds.count("pelvis") == 34 and {"abdomen", "chest", "knee"} <= set(kinds)
    stages = [s for j in jobs for s in j["stages"].values()]
    assert stages.count(0) == stages.count(2) == 34
    assert {j["split"] for j in jobs} == {"train", "val", "test"}
    assert [j["seed"] for j in jobs] == [j["seed"] for j in plan_studies(40, 1, 0.15, {0: 0.5, 2: 0.5},
                                                                        {"train": 1.0})]


@pytest.mark.integration
def test_dataset_on_disk_reads_back_with_its_truth(tmp_path):
    manifest = write_pelvis_dataset(tmp_path / "ds", 3, seed=2, negatives=0.34, grid=SMALL)
    cases = read_manifest(manifest)
    truth = read_truth(tmp_path / "ds" / "truth.csv")
    assert {r["kind"] for r in truth} >= {"pelvis"} and len(cases) >= 2
    assert all(c.roi is None and c.side in ("L", "R") and c.stage is not None for c in cases)
    row = next(r for r in truth if r["side"] == cases[0].side and r["path"] == "cases/" + cases[0].path.name)
    vol = load_volume(cases[0].path)
    files = sorted(cases[0].path.glob("*.dcm"))
    ds = pydicom.dcmread(files[0])
    assert ds.PatientPosition == row["patient_position"] and str(ds.PatientName).startswith("SYNTH^P")
    np.testing.assert_allclose(vol.direction, storage_direction(row["patient_position"]), atol=1e-6)
    centre = np.array([row["centre_x_mm"], row["centre_y_mm"], row["centre_z_mm"]])
    assert vol.hu[tuple(np.rint(vol.patient_to_index(centre)).astype(int))] > 150
    if row["lesion_mask"]:
        mask = np.load(tmp_path / "ds" / row["lesion_mask"])
        assert mask.shape == tuple(b - a for a, b in row["lesion_box"])
    with pytest.raises(InputError, match="already exists"):
        write_pelvis_dataset(tmp_path / "ds", 1, grid=SMALL)


@pytest.mark.slow
def test_realistic_512_study():
    s = generate_pelvis_study(3, preset="512", stages={"L": 2, "R": 4})
    d, h, w = s.hu.shape
    assert (h, w) == (512, 512) and 150 <= d <= 400 and 0.6 <= s.spacing_mm[1] <= 1.0
    assert 1.0 <= s.spacing_mm[0] <= 3.0 and all(hip.visibility == "full" for hip in s.hips.values())
