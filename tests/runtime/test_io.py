"""load_volume dispatch: .npy (+ spacing or sidecar), NIfTI geometry, argument checks, QC flags."""

import gzip
import json

import numpy as np
import pytest

from sranet.errors import (
    CorruptPixelDataError,
    InputError,
    NotDicomError,
    UnreadableFileError,
    UnsupportedFormatError,
)
from sranet.runtime.io import load_volume
from sranet.runtime.nifti import save_nifti
from sranet.runtime.volume import Volume
from tests.helpers import REAL_CT


def _hu(shape=(20, 24, 28)):
    return np.random.default_rng(1).uniform(-1000, 1500, shape).astype(np.float32)


def test_npy_with_spacing_argument(tmp_path):
    np.save(tmp_path / "a.npy", _hu())
    v = load_volume(tmp_path / "a.npy", spacing_mm=(2.0, 0.7, 0.7))
    assert v.shape == (20, 24, 28) and v.spacing_mm == (2.0, 0.7, 0.7) and v.meta["format"] == "npy"
    assert v.source == str(tmp_path / "a.npy")


def test_npy_sidecar_geometry(tmp_path):
    np.save(tmp_path / "a.npy", _hu().astype(np.int16))
    direction = [[1, 0, 0], [0, 0, 1], [0, -1, 0]]
    (tmp_path / "a.json").write_text(json.dumps({"spacing_mm": [3, 1, 1], "origin_mm": [1, 2, 3],
                                                 "direction": direction}))
    v = load_volume(tmp_path / "a.npy")
    assert v.hu.dtype == np.float32 and v.spacing_mm == (3.0, 1.0, 1.0)
    np.testing.assert_allclose(v.index_to_patient(np.array([1, 0, 0])), [4, 2, 3])
    with pytest.raises(InputError, match="disagrees with the sidecar"):
        load_volume(tmp_path / "a.npy", spacing_mm=(1, 1, 1))


@pytest.mark.parametrize("sidecar, words", [
    (None, "carries no voxel spacing"),
    ({"spacing_mm": [1, 1]}, "3 finite numbers"),
    ({"spacing_mm": [1, 0, 1]}, "must be positive"),
    ({"spacing_mm": [1, 1, 1], "spacing": 2}, "unknown keys"),
    ({"spacing_mm": [1, 1, 1], "direction": [[1, 0, 0], [0, 2, 0], [0, 0, 1]]}, "rotation"),
])
def test_npy_bad_geometry(tmp_path, sidecar, words):
    np.save(tmp_path / "a.npy", _hu())
    if sidecar is not None:
        (tmp_path / "a.json").write_text(json.dumps(sidecar))
    with pytest.raises(InputError, match=words) as e:
        load_volume(tmp_path / "a.npy")
    assert str(tmp_path) in str(e.value)


def test_npy_bad_arrays(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros((4, 4), np.float32))
    with pytest.raises(InputError, match="3D"):
        load_volume(tmp_path / "flat.npy", spacing_mm=(1, 1, 1))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UnsupportedFormatError, match="plain numeric"):
        load_volume(tmp_path / "obj.npy", spacing_mm=(1, 1, 1))
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY garbage")
    np.save(tmp_path / "full.npy", _hu())
    (tmp_path / "cut.npy").write_bytes((tmp_path / "full.npy").read_bytes()[:5000])
    for name in ("junk.npy", "cut.npy"):
        with pytest.raises((UnsupportedFormatError, UnreadableFileError)) as e:
            load_volume(tmp_path / name, spacing_mm=(1, 1, 1))
        assert name in str(e.value)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_round_trip_keeps_geometry(tmp_path, suffix):
    q = np.array([[0, 0, 1], [0, -1, 0], [1, 0, 0]], dtype=float)  # D -> +z, H -> -y (anterior), W -> +x
    v = Volume(_hu(), (2.5, 0.8, 0.6), (-100.0, 50.0, -700.0), q)
    save_nifti(v, tmp_path / f"ct{suffix}")
    w = load_volume(tmp_path / f"ct{suffix}")
    np.testing.assert_allclose(w.hu, v.hu)
    np.testing.assert_allclose(w.affine, v.affine, atol=1e-5)
    assert w.meta["format"] == "nifti"


def test_nifti_ras_is_converted_to_lps(tmp_path):
    import nibabel as nib

    data = np.zeros((4, 5, 6), np.float32)  # (i, j, k)
    data[1, 2, 3] = 500
    affine = np.diag([0.5, 0.6, 2.0, 1.0])
    affine[:3, 3] = [10, 20, 30]
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "ras.nii.gz")
    v = load_volume(tmp_path / "ras.nii.gz")
    assert v.shape == (6, 5, 4) and v.hu[3, 2, 1] == 500
    # voxel (i=1, j=2, k=3) is at RAS (10.5, 21.2, 36) = LPS (-10.5, -21.2, 36)
    np.testing.assert_allclose(v.index_to_patient(np.array([3, 2, 1])), [-10.5, -21.2, 36.0], atol=1e-5)


def test_nifti_errors(tmp_path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), np.eye(4)), tmp_path / "4d.nii.gz")
    from sranet.errors import GeometryError

    with pytest.raises(GeometryError, match="3D volume"):
        load_volume(tmp_path / "4d.nii.gz")
    (tmp_path / "junk.nii").write_bytes(b"not a nifti")
    with pytest.raises(NotDicomError, match="NIfTI"):
        load_volume(tmp_path / "junk.nii")
    nib.save(nib.Nifti1Image(_hu((32, 32, 32)), np.eye(4)), tmp_path / "cut.nii.gz")
    raw = gzip.decompress((tmp_path / "cut.nii.gz").read_bytes())
    (tmp_path / "cut.nii").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptPixelDataError, match="truncated"):
        load_volume(tmp_path / "cut.nii")


def test_argument_checks(tmp_path):
    with pytest.raises(UnreadableFileError, match="does not exist"):
        load_volume(tmp_path / "missing")
    with pytest.raises(InputError, match="only .npy inputs take a spacing"):
        load_volume(REAL_CT / "pydicom" / "CT_small.dcm", spacing_mm=(1, 1, 1))
    with pytest.raises(InputError, match="is a file, not a DICOM folder"):
        load_volume(REAL_CT / "pydicom" / "CT_small.dcm", series="2")
    with pytest.raises(InputError, match="'strict'"):
        load_volume(REAL_CT / "pydicom" / "CT_small.dcm", policy="strikt")
    (tmp_path / "x.mha").write_bytes(b"")
    with pytest.raises(UnsupportedFormatError, match="NIfTI"):
        load_volume(tmp_path / "x.mha")


def test_qc_flags_from_hu(tmp_path):
    hu = np.full((20, 32, 32), 40.0, np.float32)
    hu[:, :4] = -3024  # outside the field of view: not an error
    hu[5, 10, 10:40] = 8000  # 22 voxels of metal
    np.save(tmp_path / "m.npy", hu)
    v = load_volume(tmp_path / "m.npy", spacing_mm=(1, 1, 1))
    assert "metal_present" in v.qc and "hu_out_of_range" not in v.qc and "too_few_slices" not in v.qc
    np.save(tmp_path / "wrap.npy", hu + 65536 / 2)  # a sign error pushes everything up
    assert "hu_out_of_range" in load_volume(tmp_path / "wrap.npy", spacing_mm=(1, 1, 1)).qc


def test_nifti_roi_reads_only_the_box_and_matches_the_full_volume(tmp_path):
    from sranet.config import PreprocessConfig
    from sranet.runtime.preprocess import preprocess
    from sranet.runtime.roi import parse_roi

    q = np.array([[0, 0, 1], [0, -1, 0], [1, 0, 0]], dtype=float)
    save_nifti(Volume(_hu((30, 40, 50)), (2.0, 0.8, 0.6), (-10.0, 20.0, -300.0), q), tmp_path / "ct.nii.gz")
    full = load_volume(tmp_path / "ct.nii.gz")
    for text in ("5:25,10:30,20:45", "mm:-5:10,10:20,-290:-270"):
        roi = parse_roi(text)
        part = load_volume(tmp_path / "ct.nii.gz", roi=roi)
        d, h, w = part.index_offset
        np.testing.assert_array_equal(part.hu, full.hu[d:d + part.shape[0], h:h + part.shape[1], w:w + part.shape[2]])
        np.testing.assert_allclose(part.index_to_patient(np.zeros(3)), full.index_to_patient(np.array([d, h, w])))
        cfg = PreprocessConfig(output_size=16)
        np.testing.assert_array_equal(preprocess(part, cfg, roi).input, preprocess(full, cfg, roi).input)


def test_npy_volume_is_a_writable_copy_not_the_memory_map(tmp_path):
    """Like DICOM and NIfTI volumes, a .npy volume's HU array is the caller's own (writable, detached from the file)."""
    hu = _hu()
    np.save(tmp_path / "a.npy", hu)
    for roi in (None, "2:10,0:24,0:28"):
        v = load_volume(tmp_path / "a.npy", spacing_mm=(2.0, 0.7, 0.7), roi=roi)
        assert v.hu.flags.writeable and v.hu.flags.c_contiguous and v.hu.dtype == np.float32
        assert not isinstance(v.hu.base, np.memmap) and not np.shares_memory(v.hu, np.load(tmp_path / "a.npy", mmap_mode="r"))
        v.hu[0, 0, 0] = -1024.0  # e.g. a user clamping values in place
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), hu)


@pytest.mark.parametrize("unit, factor", [("meter", 1000.0), ("micron", 1e-3), ("mm", 1.0)])
def test_nifti_length_units_are_converted_to_mm(tmp_path, unit, factor):
    import nibabel as nib

    data = np.zeros((4, 5, 6), np.float32)
    affine = np.diag([0.5, 0.6, 2.0, 1.0]) / factor
    affine[3, 3] = 1.0
    affine[:3, 3] = np.array([10.0, 20.0, 30.0]) / factor
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units(unit)
    nib.save(image, tmp_path / "u.nii.gz")
    v = load_volume(tmp_path / "u.nii.gz")
    np.testing.assert_allclose(v.spacing_mm, (2.0, 0.6, 0.5), rtol=1e-6)
    np.testing.assert_allclose(v.origin_mm, (-10.0, -20.0, 30.0), rtol=1e-6)


@pytest.mark.parametrize("suffix", [".npy", ".nii.gz"])
def test_non_finite_voxels_are_refused(tmp_path, suffix):
    hu = np.full((16, 8, 8), 40.0, np.float32)
    hu[3, 2, 1], hu[5, 5, 5] = np.nan, np.inf
    path = tmp_path / f"holes{suffix}"
    if suffix == ".npy":
        np.save(path, hu)
    else:
        save_nifti(Volume(hu, (1.0, 1.0, 1.0)), path)
    with pytest.raises(CorruptPixelDataError, match="2 of 1024 voxels are NaN or infinite"):
        load_volume(path, spacing_mm=(1, 1, 1) if suffix == ".npy" else None)
    # a ROI away from the holes loads: only what is read is judged
    assert load_volume(path, roi="8:16,0:8,0:8", spacing_mm=(1, 1, 1) if suffix == ".npy" else None).shape == (8, 8, 8)
