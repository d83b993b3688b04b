"""DICOM series folders: real GE tilt/irregular series, gaps, localizers, sorting, series choice, ROI decode."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from sranet.config import PreprocessConfig
from sranet.errors import CorruptPixelDataError, GeometryError, NoUsableSeriesError
from sranet.runtime import dicom_stack as dicom_module
from sranet.runtime.io import load_volume
from sranet.runtime.preprocess import preprocess
from sranet.runtime.roi import parse_roi
from tests.helpers import REAL_CT, unpack_ge_series

DIRTESTS = REAL_CT / "pydicom" / "dicomdirtests"


@pytest.fixture(scope="module")
def ge_series(tmp_path_factory) -> Path:
    return unpack_ge_series(tmp_path_factory.mktemp("ge"))


@pytest.fixture(scope="module")
def ge_volume(ge_series):
    return load_volume(ge_series)


def test_ge_tilted_irregular_series_matches_reference_geometry(ge_volume):
    ref = json.loads((REAL_CT / "dcm_qa_ct" / "GE_reference_2.json").read_text())
    iop = np.array(ref["ImageOrientationPatientDICOM"], dtype=float)
    v = ge_volume
    # column 2 (W) runs along the row cosines, column 1 (H) along the column cosines, column 0 along their normal
    np.testing.assert_allclose(v.direction[:, 2], iop[:3], atol=1e-5)
    np.testing.assert_allclose(v.direction[:, 1], iop[3:], atol=1e-5)
    np.testing.assert_allclose(v.direction[:, 0], np.cross(iop[:3], iop[3:]), atol=1e-5)
    assert v.meta["tilt_deg"] == pytest.approx(np.degrees(np.arccos(iop[4])), abs=0.01)  # 18.5 degrees
    assert v.meta["slice_thickness_mm"] == ref["SliceThickness"]
    assert v.meta["ManufacturerModelName"] == ref["ManufacturersModelName"]
    assert v.meta["ConvolutionKernel"] == ref["ConvolutionKernel"]
    assert v.meta["series_number"] == str(ref["SeriesNumber"])
    assert {"tilt_corrected", "spacing_irregular"} <= set(v.qc)
    # spacing along the normal: the finest gap of 1.08 / 4.0 / 7.0 mm
    assert v.spacing_mm[0] == pytest.approx(1.081, abs=2e-3)
    assert v.spacing_mm[1:] == pytest.approx((0.4882812, 0.4882812))
    assert v.meta["n_files"] == 28 and v.meta["decoded_slices"] == 28
    # the regular grid spans the stack: 13 gaps of 4.0 mm, one of 1.08 mm, 13 of 7.0 mm
    assert (v.shape[0] - 1) * v.spacing_mm[0] == pytest.approx(13 * 4.0 + 1.08 + 13 * 7.0, abs=1.5)
    assert v.hu.dtype == np.float32 and -1100 < float(np.median(v.hu)) < 100


def test_ge_series_is_refused_under_strict_policy(ge_series):
    with pytest.raises(GeometryError, match=r"gantry tilt of 18\.50 degrees.*slice spacing from 1\.08 to 7\.00") as e:
        load_volume(ge_series, policy="strict")
    assert str(ge_series) in str(e.value)


def test_ge_roi_decodes_only_the_slices_it_needs_and_prepares_identically(ge_series, ge_volume):
    roi = parse_roi("10:40,150:350,140:360")
    part = load_volume(ge_series, roi=roi)
    assert part.index_offset == (10, 150, 140) and part.shape == (30, 200, 220)
    assert part.meta["decoded_slices"] < 12  # 30 output slices of 1.08 mm lie in the first 4 mm-spaced slices
    np.testing.assert_array_equal(part.hu, ge_volume.hu[10:40, 150:350, 140:360])
    cfg = PreprocessConfig(output_size=48)
    np.testing.assert_array_equal(preprocess(part, cfg, roi).input, preprocess(ge_volume, cfg, roi).input)


def test_roi_limited_decode_counts_decodes(ge_series, monkeypatch):
    calls = []
    real = dicom_module.read_slice_hu
    monkeypatch.setattr(dicom_module, "read_slice_hu", lambda h, *a: calls.append(h.path.name) or real(h, *a))
    mm = load_volume(ge_series, roi="mm:-30:30,-60:0,60:80")
    assert 0 < len(calls) == mm.meta["decoded_slices"] < 10
    # every decoded file lies in the ROI's z range (files are numbered along z)
    assert all(5 <= int(name[:2]) <= 24 for name in calls)


def test_gap_of_202_mm_is_detected():
    with pytest.raises(GeometryError, match=r"202\.5 mm gap") as e:
        load_volume(DIRTESTS / "77654033" / "CT2")
    assert "CT2" in str(e.value)


def test_localizers_are_excluded_with_a_reason():
    with pytest.raises(NoUsableSeriesError, match="localizer") as e:
        load_volume(DIRTESTS / "98892001" / "CT2N")
    assert "CT2N" in str(e.value)
    v = load_volume(DIRTESTS / "98892001")  # CT2N (2 scouts) next to CT5N (5 axial slices)
    assert v.shape == (5, 16, 16)
    assert [s["reason"] for s in v.meta["skipped"]] == ["localizer (scout) image"] * 2
    assert "files_skipped" not in v.qc


def test_slices_sorted_by_position_not_instance_number():
    v = load_volume(DIRTESTS / "98892001" / "CT5N")  # InstanceNumber rises while z falls
    z = v.index_to_patient(np.array([[d, 0, 0] for d in range(5)]))[:, 2]
    np.testing.assert_allclose(z, [-1.2375, 1.2625, 3.7625, 6.2625, 8.7625], atol=1e-4)
    assert v.spacing_mm[0] == pytest.approx(2.5)
    assert "too_few_slices" in v.qc


def test_several_series_must_be_chosen_and_are_listed_without_identifiers():
    with pytest.raises(NoUsableSeriesError, match=r"2 CT series found.*#\S+ \(4 slices") as e:
        load_volume(DIRTESTS)
    assert "series=" in str(e.value)
    # free-text descriptions may hold names (DICOM de-identification removes them): neither the listing nor meta carries them
    assert "Routine Brain" not in str(e.value) and "SmartScore" not in str(e.value)
    v = load_volume(DIRTESTS, series="6302.0.6")  # a UID suffix
    assert v.shape == (5, 16, 16) and "series_description" not in v.meta
    assert "SmartScore" not in repr(v.meta)
    with pytest.raises(NoUsableSeriesError, match="matches 0"):
        load_volume(DIRTESTS, series="999999")


def test_corrupt_file_in_a_folder_is_reported_and_skipped(tmp_path):
    shutil.copytree(DIRTESTS / "98892001" / "CT5N", tmp_path / "s")
    (tmp_path / "s" / "notes.txt").write_text("not dicom")
    (tmp_path / "s" / "broken").write_bytes((DIRTESTS / "98892001" / "CT5N" / "2062").read_bytes()[:300])
    v = load_volume(tmp_path / "s")
    assert v.shape == (5, 16, 16) and "files_skipped" in v.qc
    reasons = {s["file"]: s["reason"] for s in v.meta["skipped"]}
    assert reasons["notes.txt"].startswith("NotDicomError") and set(reasons) == {"notes.txt", "broken"}


def test_missing_middle_slice_is_interpolated_or_refused(tmp_path):
    shutil.copytree(DIRTESTS / "98892001" / "CT5N", tmp_path / "s")
    (tmp_path / "s" / "2693").unlink()  # z = 3.76 of -1.24 .. 8.76 in 2.5 mm steps
    with pytest.raises(GeometryError, match="1 missing slice"):
        load_volume(tmp_path / "s", policy="strict")
    v = load_volume(tmp_path / "s")
    assert v.shape[0] == 5 and "missing_slices" in v.qc and v.spacing_mm[0] == pytest.approx(2.5)


def test_duplicate_positions_policy(tmp_path):
    shutil.copytree(DIRTESTS / "98892001" / "CT5N", tmp_path / "s")
    shutil.copy(tmp_path / "s" / "2392", tmp_path / "s" / "copy")
    with pytest.raises(GeometryError, match="share a position"):
        load_volume(tmp_path / "s", policy="strict")
    v = load_volume(tmp_path / "s")
    assert v.shape[0] == 5 and "duplicate_positions_dropped" in v.qc


def _tilted_headers(tilt_deg: float, gaps_mm: list[float], rows=40, cols=50, ps=(0.5, 0.6)):
    from sranet.runtime.dicom_decode import SliceHeader

    row = np.array([1.0, 0, 0])
    col = np.array([0, np.cos(np.radians(tilt_deg)), -np.sin(np.radians(tilt_deg))])
    zs = np.cumsum([0.0, *gaps_mm])  # the gantry moves along z; the image planes are tilted
    return [SliceHeader(path=Path(f"s{i}"), modality="CT", rows=rows, columns=cols, position=(-10.0, -12.0, z),
                        orientation=(*row, *col), pixel_spacing=ps, instance=i) for i, z in enumerate(zs)], row, col


@pytest.mark.parametrize("tilt_deg", [0.0, 18.5, -25.0])
def test_resampled_stack_maps_voxels_to_the_right_patient_positions(tilt_deg):
    """Slices carry a linear field f(patient mm); after resampling, every valid voxel must hold f(its position)."""
    from sranet.runtime.dicom_stack import build_volume

    hs, row, col = _tilted_headers(tilt_deg, [4.2] * 5 + [1.1] + [7.4] * 5, rows=80)
    coeff = np.array([2.0, 3.0, 5.0])

    def decode(i):
        h = hs[i]
        hh, ww = np.meshgrid(np.arange(h.rows), np.arange(h.columns), indexing="ij")
        points = np.array(h.position) + hh[..., None] * h.pixel_spacing[0] * col + ww[..., None] * h.pixel_spacing[1] * row
        return (points @ coeff).astype(np.float32)

    order = list(range(len(hs)))[::-1]  # files in reverse order: sorting must not rely on it
    v = build_volume([hs[i] for i in order], where=Path("synthetic"), roi=None, policy="resample",
                     decode=lambda i: decode(order[i]))
    assert ("tilt_corrected" in v.qc) == (tilt_deg != 0) and "spacing_irregular" in v.qc
    assert v.meta["tilt_deg"] == pytest.approx(abs(tilt_deg), abs=1e-6)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in v.shape], indexing="ij"), -1)
    expected = v.index_to_patient(idx) @ coeff
    exact = np.abs(v.hu - expected) < 1e-3
    padded = v.hu == -1024.0
    assert exact.mean() > 0.55 and (exact | padded).all()  # no blend of tissue and padding
    assert exact[:, v.shape[1] // 2, v.shape[2] // 2].all()  # the central column never leaves the images


def _truncate_pixels(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:-100])  # the header is intact, the 16 x 16 pixel data is short


def test_slice_with_corrupt_pixels_is_dropped_where_the_series_stays_whole(tmp_path):
    shutil.copytree(DIRTESTS / "98892001" / "CT5N", tmp_path / "s")
    _truncate_pixels(tmp_path / "s" / "3353")  # z = -1.24, the first slice: the rest is still a regular stack
    v = load_volume(tmp_path / "s", policy="strict")
    assert v.shape == (4, 16, 16) and "files_skipped" in v.qc and "missing_slices" not in v.qc
    assert v.meta["skipped"][0]["file"] == "3353" and "CorruptPixelDataError" in v.meta["skipped"][0]["reason"]


def test_slice_with_corrupt_pixels_in_the_middle_leaves_a_hole(tmp_path):
    shutil.copytree(DIRTESTS / "98892001" / "CT5N", tmp_path / "s")
    _truncate_pixels(tmp_path / "s" / "2693")  # z = 3.76, the middle slice
    # the cause leads the message: the unreadable slice, then the hole it leaves
    with pytest.raises(CorruptPixelDataError, match=r"1 slice\(s\) have unreadable pixel data \(2693\).*missing slice"):
        load_volume(tmp_path / "s", policy="strict")
    v = load_volume(tmp_path / "s")
    assert v.shape == (5, 16, 16) and {"files_skipped", "missing_slices"} <= set(v.qc)


def test_plan_stack_spacing_rules():
    from sranet.runtime.dicom_geometry import plan_stack

    iop, ps = (1, 0, 0, 0, 1, 0), (0.7, 0.7)
    z = lambda s: np.array([[0.0, 0.0, v] for v in s])  # noqa: E731
    jitter = plan_stack(z([0, 1.01, 1.99, 3.0, 4.02]), iop, ps, policy="strict")
    assert jitter.spacing_mm[0] == pytest.approx(1.005) and not jitter.resampled
    drift = np.cumsum([0] + [1.0] * 20 + [1.04] * 20)  # each gap within 5 %, but mid-stack slices sit 0.2 mm off
    with pytest.raises(GeometryError, match="slice spacing"):
        plan_stack(z(drift), iop, ps, policy="strict")
    resampled = plan_stack(z(drift), iop, ps)
    assert resampled.resampled and "spacing_irregular" in resampled.qc
    single = plan_stack(z([5.0]), iop, ps, slice_thickness_mm=3.0)
    assert single.spacing_mm[0] == 3.0 and single.depth == 1
    with pytest.raises(GeometryError, match="PixelSpacing"):
        plan_stack(z([0, 1]), iop, (0.0, 0.7))
    with pytest.raises(GeometryError, match="orthogonal"):
        plan_stack(z([0, 1]), (1, 0, 0, 1, 0, 0), ps)


def test_a_compressed_series_reads_the_same_and_leaves_the_warning_filters_alone(tmp_path):
    """Slices that go through pydicom's decoders are read on one thread: those decoders set warning filters
    (`warnings.catch_warnings`, not thread-safe), and threads would leave a filter behind for the whole process."""
    import warnings

    import pydicom
    from pydicom.uid import RLELossless

    from sranet.data.dicom_write import write_dicom_series
    from sranet.runtime.io import load_volume

    hu = np.random.default_rng(5).integers(-1000, 1500, size=(24, 32, 32)).astype(np.float32)
    plain_dir = tmp_path / "plain"
    plain = write_dicom_series(hu, (2.0, 0.8, 0.8), plain_dir)
    rle = tmp_path / "rle"
    rle.mkdir()
    for f in plain:
        ds = pydicom.dcmread(f)
        ds.compress(RLELossless)
        ds.save_as(rle / f.name)
    before = list(warnings.filters)
    for _ in range(5):
        np.testing.assert_array_equal(load_volume(rle).hu, load_volume(plain_dir).hu)
    assert warnings.filters == before
