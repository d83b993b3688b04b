"""Single DICOM files: transfer syntaxes, sign/bit-depth mismatches, orientation, enhanced CT, typed errors."""

import shutil

import numpy as np
import pytest

from sranet.config import PreprocessConfig
from sranet.errors import (
    CorruptPixelDataError,
    NoPixelDataError,
    NotDicomError,
    NoUsableSeriesError,
    UnreadableFileError,
    UnsupportedFormatError,
    VolumeError,
    WrongModalityError,
)
from sranet.runtime.dicom_decode import decode_pixels, read_dataset
from sranet.runtime.io import load_volume
from sranet.runtime.preprocess import preprocess
from tests.helpers import REAL_CT

PD, PDD, LJ = REAL_CT / "pydicom", REAL_CT / "pydicom-data", REAL_CT / "pylibjpeg-data"


@pytest.mark.parametrize("compressed, plain", [
    (PD / "693_J2KI.dcm", PDD / "693_UNCI.dcm"),  # JPEG 2000 (lossy syntax, lossless content) vs uncompressed
    (PDD / "693_J2KR.dcm", PDD / "693_UNCR.dcm"),  # JPEG 2000 lossless; header BitsStored 16 vs 14
    (LJ / "TOSHIBA_J2K_SIZ1_PixRep0.dcm", LJ / "TOSHIBA_J2K_SIZ0_PixRep1.dcm"),  # codestream vs header sign
])
def test_compressed_and_uncompressed_twins_decode_to_identical_hu(compressed, plain):
    a, b = load_volume(compressed), load_volume(plain)
    np.testing.assert_array_equal(a.hu, b.hu)
    assert a.hu.min() < -1000  # negative HU survived (no unsigned wrap)


def test_pixel_representation_mismatch_keeps_negative_values():
    v = load_volume(PD / "J2K_pixelrep_mismatch.dcm")  # header PR 1, BitsStored 13, codestream unsigned
    assert v.hu.min() == -2000 and v.hu.max() < 3000
    assert "hu_out_of_range" not in v.qc


@pytest.mark.parametrize("name", ["CT1_JLSN.dcm", "ELSCINT1_JP2vsJ2K.dcm"])
def test_other_transfer_syntaxes_decode_to_plausible_hu(name):
    v = load_volume(LJ / name)
    assert v.shape == (1, 512, 512) and -3100 < v.hu.min() < -900 and 500 < v.hu.max() < 4000


def test_jpeg_lossless_with_bad_sequence_tags_decodes():
    v = load_volume(PDD / "bad_sequence.dcm")  # JPEG Lossless P14 SV1, unsigned 12 bit, intercept -1024
    assert -1100 < v.hu.min() < -900 and v.hu.max() > 1000


def test_noise_from_a_bad_decode_is_refused_with_the_path():
    path = LJ / "JPEGLossless_1s_1f_i_16_16_bad.dcm"
    with pytest.raises(CorruptPixelDataError, match="outside -4096..20000 HU") as e:
        load_volume(path)
    assert str(path) in str(e.value)


def test_posterior_to_anterior_rows_come_out_the_right_way_up():
    v = load_volume(PDD / "explicit_VR-UN.dcm")  # IOP 1,0,0,0,-1,0: rows run posterior -> anterior
    np.testing.assert_allclose(v.direction[:, 1], [0, -1, 0])
    p0, p1 = v.index_to_patient(np.array([[0, 0, 0], [0, 511, 0]]))
    assert p1[1] - p0[1] == pytest.approx(-511 * 0.859375)  # row 511 is 439 mm anterior of row 0
    prepared = preprocess(v, PreprocessConfig(output_size=32))
    to_mm = prepared.plan.output_to_patient(v)
    assert to_mm[1, 1] > 0 and to_mm[0, 2] > 0  # network H runs to posterior, W to patient left
    # the flipped network input equals the raw rows reversed
    raw = preprocess(v, PreprocessConfig(output_size=32, canonical=False))
    np.testing.assert_allclose(prepared.hu, raw.hu[:, ::-1, :], atol=1e-3)


def test_enhanced_multiframe_ct_geometry_from_functional_groups():
    v = load_volume(PDD / "eCT_Supplemental.dcm")
    assert v.shape == (2, 512, 512) and v.spacing_mm == pytest.approx((10.0, 0.388672, 0.388672))
    np.testing.assert_allclose(v.direction[:, 2], [-1, 0, 0])  # row cosines from the shared groups
    # D runs along row x col = -z (feet-ward), so the frame at z = -149 comes first
    np.testing.assert_allclose(v.index_to_patient(np.array([[0, 0, 0], [1, 0, 0]])),
                               [[99.5, -301.5, -149.0], [99.5, -301.5, -159.0]], atol=1e-4)
    assert v.meta["enhanced"] and "derived_image" in v.qc  # a perfusion map, not plain HU
    assert v.hu.min() == -1024  # per-frame transformation group's intercept applied


@pytest.mark.parametrize("path, error, words", [
    (PD / "MR_small.dcm", WrongModalityError, "modality is MR"),
    (PD / "rtdose.dcm", WrongModalityError, "RTDOSE"),
    (PD / "liver_1frame.dcm", WrongModalityError, "SEG"),
    (PD / "MR_truncated.dcm", WrongModalityError, "MR"),
    (PD / "zipMR.gz", UnsupportedFormatError, "'.gz'"),
    (PD / "no_meta.dcm", NotDicomError, "not a DICOM"),
    (PD / "meta_missing_tsyntax.dcm", NotDicomError, "no DICOM data set"),
    (LJ / "MAROTECH_CT_JP2Lossy.dcm", NoUsableSeriesError, "localizer"),
    (REAL_CT / "nope.dcm", UnreadableFileError, "does not exist"),
])
def test_bad_inputs_raise_typed_errors_naming_the_path(path, error, words):
    with pytest.raises(error, match=words) as e:
        load_volume(path)
    assert str(e.value).startswith(str(path))


@pytest.mark.parametrize("path, error, words", [
    (PD / "MR_truncated.dcm", CorruptPixelDataError, "8130 bytes, but Rows 64 x Columns 64 x 2 bytes need 8192"),
    (PD / "JPEG2000-embedded-sequence-delimiter.dcm", CorruptPixelDataError, "cannot be decoded"),
    (PDD / "emri_small_jpeg_2k_lossless_too_short.dcm", CorruptPixelDataError, "ends inside its pixel data"),
])
def test_damaged_pixel_data_raises_typed_errors(path, error, words):
    with pytest.raises(error, match=words) as e:
        decode_pixels(read_dataset(path, header_only=False), path)
    assert str(path) in str(e.value)


def test_object_without_pixel_data(tmp_path):
    import pydicom

    ds = pydicom.dcmread(PD / "CT_small.dcm")
    del ds.PixelData
    ds.save_as(tmp_path / "nopix.dcm")
    with pytest.raises(NoPixelDataError, match="has no pixel data") as e:
        load_volume(tmp_path / "nopix.dcm")
    assert str(tmp_path / "nopix.dcm") in str(e.value)


def test_truncated_ct_slice_and_non_dicom_file(tmp_path):
    data = (PD / "CT_small.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 5000])
    with pytest.raises(CorruptPixelDataError) as e:
        load_volume(tmp_path / "cut.dcm")
    assert str(tmp_path / "cut.dcm") in str(e.value)
    shutil.copy(PD / "zipMR.gz", tmp_path / "zipMR")  # gzip bytes, no extension: tried as DICOM
    with pytest.raises(NotDicomError, match="not a DICOM"):
        load_volume(tmp_path / "zipMR")
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(VolumeError):
        load_volume(tmp_path / "empty")


def test_ct_small_slice_hu_and_meta_are_non_identifying():
    v = load_volume(PD / "CT_small.dcm")
    assert v.shape == (1, 128, 128) and v.hu.min() == -896 and "too_few_slices" in v.qc
    text = repr(v.meta).upper()
    for tag_value in ("CompressedSamples^CT1".upper(), "1CT1"):  # PatientName, PatientID of the file
        assert tag_value not in text


@pytest.fixture
def jpeg2000_without_decoders():
    """pydicom's real JPEG 2000 decoder with its plugins removed through pydicom's own API (as on an install that
    lacks pylibjpeg-openjpeg and Pillow); restored afterwards."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEG2000, JPEG2000Lossless

    removed = []
    for uid in (JPEG2000Lossless, JPEG2000):
        decoder = get_decoder(uid)
        for label, func in list(decoder._available.items()):
            decoder.remove_plugin(label)
            removed.append((decoder, label, (func.__module__, func.__name__)))
    try:
        yield
    finally:
        for decoder, label, import_path in removed:
            decoder.add_plugin(label, import_path)


def test_missing_decoder_plugin_is_a_dependency_error_not_corrupt_data(jpeg2000_without_decoders):
    from sranet.errors import DependencyMissingError

    path = REAL_CT / "pydicom" / "693_J2KI.dcm"
    with pytest.raises(DependencyMissingError, match="no decoder is installed.*JPEG 2000.*pip install pylibjpeg") as e:
        decode_pixels(read_dataset(path, header_only=False), path)
    assert str(path) in str(e.value)


def test_decoders_are_back_after_the_fixture():
    path = REAL_CT / "pydicom" / "693_J2KI.dcm"
    assert decode_pixels(read_dataset(path, header_only=False), path).ndim == 2
