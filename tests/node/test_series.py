"""The node's series rule (sranet.runtime.node.series): among axial CT series of 16+ slices, the thinnest that
spans 80 mm; else the longest; scouts, other modalities, non-axial and short series passed over with a reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, MRImageStorage, generate_uid

from sranet.errors import NoUsableSeriesError
from sranet.runtime.node.series import choose_series

STUDY, FRAME = generate_uid(), generate_uid()
AXIAL = (1, 0, 0, 0, 1, 0)
CORONAL = (1, 0, 0, 0, 0, -1)


def series(n: int, slice_mm: float, *, orientation=AXIAL, pixel_mm: float = 0.8, modality: str = "CT",
           image_type=("ORIGINAL", "PRIMARY", "AXIAL"), number: int = 1) -> list[tuple[Path, Dataset]]:
    """Headers of one series: n slices slice_mm apart along the orientation's normal."""
    uid = generate_uid()
    normal = np.cross(orientation[:3], orientation[3:])
    out = []
    for k in range(n):
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage if modality == "CT" else MRImageStorage
        ds.SOPInstanceUID, ds.Modality, ds.ImageType = generate_uid(), modality, list(image_type)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = STUDY, uid, FRAME
        ds.SeriesNumber = number
        ds.ImageOrientationPatient = list(orientation)
        ds.ImagePositionPatient = [float(v) for v in np.array([-100.0, -100.0, -800.0]) + k * slice_mm * normal]
        ds.PixelSpacing, ds.Rows, ds.Columns = [pixel_mm, pixel_mm], 256, 256
        out.append((Path(f"{uid[-6:]}_{k}.dcm"), ds))
    return out


def test_thinnest_series_spanning_80_mm_wins(tmp_path):
    thick, thin, short_thinner = series(60, 3.0, number=2), series(150, 1.0, number=3), series(40, 0.5, number=4)
    choice = choose_series(tmp_path, thick + short_thinner + thin)  # arrival order does not matter
    assert choice.series == thin[0][1].SeriesInstanceUID and choice.path == tmp_path
    assert (choice.slices, choice.candidates) == (150, 3) and choice.slice_mm == pytest.approx(1.0)
    assert choice.span_mm == pytest.approx(149.0)
    assert len(choice.passed_over) == 2 and all("ranked lower" in p for p in choice.passed_over)
    summary = choice.summary()
    assert STUDY not in str(summary) and thin[0][1].SeriesInstanceUID not in str(summary)
    # equal slices: the longer span; then the finer pixels
    longer = series(120, 1.0, number=5)
    assert choose_series(tmp_path, series(90, 1.0) + longer).series == longer[0][1].SeriesInstanceUID
    finer = series(90, 1.0, pixel_mm=0.6)
    assert choose_series(tmp_path, series(90, 1.0) + finer).series == finer[0][1].SeriesInstanceUID


def test_without_an_80_mm_series_the_longest(tmp_path):
    a, b = series(20, 2.0), series(30, 2.5)
    assert choose_series(tmp_path, a + b).series == b[0][1].SeriesInstanceUID


def test_scouts_other_modalities_non_axial_and_short_series_are_passed_over(tmp_path):
    scout = series(2, 1.0, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    coronal, short, mr = series(100, 1.0, orientation=CORONAL), series(10, 1.0), series(100, 1.0, modality="MR")
    axial = series(80, 2.0)
    choice = choose_series(tmp_path, scout + coronal + short + mr + axial)
    assert choice.series == axial[0][1].SeriesInstanceUID and choice.candidates == 1
    text = "; ".join(choice.passed_over)
    assert "2 localizer (scout) objects" in text and "not axial" in text and "fewer than 16" in text
    with pytest.raises(NoUsableSeriesError, match="no CT series the model can read") as err:
        choose_series(tmp_path, scout + coronal + short + mr)
    assert "not axial" in str(err.value) and "fewer than 16" in str(err.value)


def test_inconsistent_series_is_passed_over_with_its_reason(tmp_path):
    broken = series(40, 2.0)
    broken[5][1].PixelSpacing = [0.5, 0.5]
    good = series(30, 3.0)
    choice = choose_series(tmp_path, broken + good)
    assert choice.series == good[0][1].SeriesInstanceUID
    assert any("PixelSpacing" in p for p in choice.passed_over)


def test_a_non_image_object_in_the_series_is_left_out_not_the_series(tmp_path):
    """A dose report stored as Secondary Capture with modality CT, in the series' UID, is not a slice: the series
    is chosen without it, as load_volume reads it without it."""
    from pydicom.uid import SecondaryCaptureImageStorage

    slices = series(40, 1.0)
    sheet = Dataset()
    sheet.SOPClassUID, sheet.SOPInstanceUID, sheet.Modality = SecondaryCaptureImageStorage, generate_uid(), "CT"
    sheet.StudyInstanceUID, sheet.SeriesInstanceUID = STUDY, slices[0][1].SeriesInstanceUID
    choice = choose_series(tmp_path, slices + [(Path("dose.dcm"), sheet)])
    assert choice.series == slices[0][1].SeriesInstanceUID and choice.slices == 40


def test_damaged_files_are_left_out_of_the_headers(tmp_path):
    from sranet.data.dicom_write import write_dicom_series
    from sranet.runtime.node.series import read_headers

    files = write_dicom_series(np.zeros((20, 16, 16), np.float32), (1.0, 0.8, 0.8), tmp_path)
    data = files[3].read_bytes()
    for cut in range(150, 700, 7):  # the header cut at many places: whatever pydicom raises, the file is left out
        files[3].write_bytes(data[:cut])
        names = [p.name for p, _ in read_headers(tmp_path)]
        assert files[0].name in names and len(names) in (19, 20)
    (tmp_path / "junk.dcm").write_bytes(b"not dicom at all")
    assert "junk.dcm" not in [p.name for p, _ in read_headers(tmp_path)]
