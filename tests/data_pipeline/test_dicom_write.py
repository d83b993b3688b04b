"""The DICOM series that ``sranet synth`` writes: valid CT tags, exact HU and geometry through pydicom and load_volume."""

import json

import numpy as np
import pydicom
import pytest

from sranet.data.dicom_write import CT_IMAGE_STORAGE, write_dicom_series
from sranet.data.synthetic import generate_case
from sranet.data.synthetic_dataset import write_dataset
from sranet.errors import InputError
from sranet.runtime.io import load_volume
from sranet.runtime.manifest import read_manifest

SHAPE = (24, 40, 36)


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    case = generate_case(3, 2, shape=SHAPE)
    out = tmp_path_factory.mktemp("series")
    paths = write_dicom_series(case.hu, case.spacing_mm, out, origin_mm=case.origin_mm, direction=case.direction,
                               patient_name="SYNTH^0007", patient_id="SYNTH0007")
    return case, out, paths


def test_files_are_valid_ct_with_fake_patient_and_fresh_uids(series):
    case, _, paths = series
    assert len(paths) == SHAPE[0]
    datasets = [pydicom.dcmread(p) for p in paths]
    ds = datasets[0]
    assert ds.file_meta.MediaStorageSOPClassUID == CT_IMAGE_STORAGE == ds.SOPClassUID
    assert ds.Modality == "CT" and str(ds.PatientName) == "SYNTH^0007" and ds.PatientID == "SYNTH0007"
    assert (ds.Rows, ds.Columns) == SHAPE[1:] and ds.BitsAllocated == 16 and ds.PixelRepresentation == 1
    assert ds.pixel_array.dtype == np.int16 and ds.RescaleType == "HU"
    assert len({d.SOPInstanceUID for d in datasets}) == SHAPE[0]
    assert len({d.SeriesInstanceUID for d in datasets}) == 1 and len({d.StudyInstanceUID for d in datasets}) == 1
    assert [d.InstanceNumber for d in datasets] == list(range(1, SHAPE[0] + 1))


def test_pixels_and_geometry_through_pydicom(series):
    case, _, paths = series
    for d in (0, SHAPE[0] // 2, SHAPE[0] - 1):
        ds = pydicom.dcmread(paths[d])
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert np.array_equal(hu, case.hu[d])
        expected = np.array(case.origin_mm) + d * case.spacing_mm[0] * np.array([0.0, 0.0, 1.0])
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], expected, atol=1e-3)
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert [float(v) for v in ds.PixelSpacing] == list(case.spacing_mm[1:])
        assert float(ds.SliceThickness) == case.spacing_mm[0]


def test_load_volume_returns_the_phantom_grid(series):
    case, out, _ = series
    vol = load_volume(out)
    assert vol.hu.shape == case.hu.shape == case.lesion_mask.shape
    assert np.array_equal(np.asarray(vol.hu, dtype=np.float32), case.hu)
    np.testing.assert_allclose(vol.spacing_mm, case.spacing_mm, atol=1e-4)
    np.testing.assert_allclose(vol.origin_mm, case.origin_mm, atol=1e-3)
    np.testing.assert_allclose(vol.direction, case.direction, atol=1e-6)


def test_other_rescale_and_shuffled_file_order_read_back(tmp_path):
    case = generate_case(4, 0, shape=(16, 24, 24))
    paths = write_dicom_series(case.hu, case.spacing_mm, tmp_path / "s", origin_mm=case.origin_mm,
                               rescale_slope=0.5, rescale_intercept=-1000.0)
    ds = pydicom.dcmread(paths[3])
    assert not np.array_equal(ds.pixel_array, case.hu[3] + 1024)  # really stored with the other rescale
    for i, p in enumerate(paths):  # file names no longer follow slice order
        p.rename(p.with_name(f"img_{(7 * i) % len(paths):03d}.dcm"))
    assert np.array_equal(np.asarray(load_volume(tmp_path / "s").hu, dtype=np.float32), case.hu)


def test_out_of_range_hu_is_refused(tmp_path):
    with pytest.raises(InputError, match="int16"):
        write_dicom_series(np.full((2, 4, 4), 40000.0), (1.0, 1.0, 1.0), tmp_path)
    with pytest.raises(InputError, match="orthonormal"):
        write_dicom_series(np.zeros((2, 4, 4)), (1.0, 1.0, 1.0), tmp_path, direction=np.ones((3, 3)))


def test_dataset_lesion_masks_align_with_load_volume(tmp_path):
    manifest = write_dataset(tmp_path / "ds", 4, seed=2, shape=(24, 40, 40), stage_mix={0: 0.25, 2: 0.5, 4: 0.25})
    cases = read_manifest(manifest)
    assert sorted(c.stage for c in cases) == [0, 2, 2, 4]
    info = json.loads((tmp_path / "ds" / "synth.json").read_text())["cases"]
    for case in cases:
        vol = load_volume(case.path)
        lesion = np.load(case.lesion_mask)
        truth = generate_case(info[case.case_id]["seed"], case.stage, shape=(24, 40, 40))
        assert lesion.shape == vol.hu.shape and np.array_equal(lesion, truth.lesion_mask)
        assert np.array_equal(np.asarray(vol.hu, dtype=np.float32), truth.hu)
        if case.stage >= 2:  # the mask sits on the sclerotic, cystic head, not on soft tissue
            hu = np.asarray(vol.hu)[lesion.astype(bool)]
            assert (hu > 150).mean() > 0.5 and np.percentile(hu, 95) > 500
        ds = pydicom.dcmread(next(case.path.glob("*.dcm")))
        assert str(ds.PatientName) == f"SYNTH^{case.case_id[-4:]}"
