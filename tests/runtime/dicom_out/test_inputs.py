"""Bad input to the DICOM writers gets a typed error naming the value, never a malformed object."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from sranet.errors import EmptyRoiError, GeometryError, InputError, NoUsableSeriesError, WrongModalityError
from tests.helpers import REAL_CT
from tests.runtime.dicom_out.builders import algorithm, finding_for

ROI = ((-10.0, 10.0), (-5.0, 5.0), (-800.0, -780.0))


def hip(**overrides):
    from sranet.runtime.dicom_out import HipFinding

    values = dict(side="R", probability=0.7, threshold=0.5, decision=True, roi_mm=ROI)
    values.update(overrides)
    return HipFinding(**values)


@pytest.mark.parametrize(("overrides", "words"), [
    ({"side": "left"}, "not 'L' or 'R'"),
    ({"probability": 1.5}, "[0, 1]"),
    ({"probability": float("nan")}, "[0, 1]"),
    ({"decision": False}, "disagrees"),
    ({"roi_mm": None}, "no roi_mm"),
    ({"roi_mm": ((10.0, -10.0), (-5.0, 5.0), (0.0, 1.0))}, "low < high"),
    ({"probability": None, "threshold": None, "decision": None}, "no QC flag says why"),
    ({"probability": None, "decision": None, "qc": ("metal",)}, "not assessed"),
    ({"qc": ("",)}, "non-empty"),
])
def test_hip_finding_refuses_inconsistent_values(overrides, words):
    with pytest.raises(InputError, match=None) as info:
        hip(**overrides)
    assert words in str(info.value)


def test_attention_map_and_patch_checks():
    from sranet.runtime.dicom_out import AlgorithmInfo, AttentionMap, AttentionPatch, HeadLocation

    with pytest.raises(InputError, match="finite and non-negative"):
        AttentionMap(np.full((4, 4, 4), np.nan, np.float32), np.eye(4))
    with pytest.raises(InputError, match="3-D"):
        AttentionMap(np.zeros((4, 4), np.float32), np.eye(4))
    with pytest.raises(InputError, match="singular"):
        AttentionMap(np.zeros((4, 4, 4), np.float32), np.diag([1.0, 0.0, 1.0, 1.0]))
    with pytest.raises(InputError, match="positive edge lengths"):
        AttentionPatch((0, 0, 0), (1, 0, 1), 0.5)
    with pytest.raises(InputError, match="confidence"):
        HeadLocation((0, 0, 0), 22.0, 1.2)
    with pytest.raises(InputError, match="64 hex digits"):
        AlgorithmInfo("abc", "model.onnx")
    assert AlgorithmInfo("AB" * 32, "C:\\Users\\dr-x\\model.onnx").artifact == "model.onnx"  # no folders


def test_source_series_refusals(tmp_path):
    from sranet.runtime.dicom_out import SourceSeries, read_source_series

    mr = pydicom.dcmread(REAL_CT / "pydicom" / "MR_small.dcm", stop_before_pixels=True)
    with pytest.raises(WrongModalityError, match="CT Image"):
        SourceSeries.from_datasets([mr])
    with pytest.raises(InputError, match="no source datasets"):
        SourceSeries.from_datasets([])
    ct = pydicom.dcmread(REAL_CT / "pydicom" / "CT_small.dcm", stop_before_pixels=True)
    other = pydicom.dcmread(REAL_CT / "pydicom" / "CT_small.dcm", stop_before_pixels=True)
    other.SeriesInstanceUID, other.SOPInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    with pytest.raises(NoUsableSeriesError, match="SeriesInstanceUID"):
        SourceSeries.from_datasets([ct, other])
    del other.ImageOrientationPatient
    other.SeriesInstanceUID = ct.SeriesInstanceUID
    with pytest.raises(GeometryError, match="ImageOrientationPatient"):
        SourceSeries.from_datasets([ct, other])
    with pytest.raises(NoUsableSeriesError, match="found 0 CT series"):
        read_source_series(tmp_path)


def test_map_outside_the_series_and_duplicate_sides(phantom):
    from sranet.runtime.dicom_out import AttentionMap, build_dicom_outputs, read_source_series

    source = read_source_series(phantom.folder)
    finding = finding_for(phantom)
    far = np.eye(4)
    far[:3, 3] = (0.0, 0.0, 5000.0)  # five metres away
    moved = hip(attention=AttentionMap(np.ones((8, 8, 8), np.float32), far))
    with pytest.raises(EmptyRoiError, match="outside the source series"):
        build_dicom_outputs(source, [moved], algorithm())
    with pytest.raises(InputError, match="same side twice"):
        build_dicom_outputs(source, [finding, finding], algorithm())
    with pytest.raises(InputError, match="no findings"):
        build_dicom_outputs(source, [], algorithm())


def test_existing_outputs_are_not_overwritten_silently(phantom, tmp_path):
    from sranet.runtime.dicom_out import read_source_series, write_dicom_outputs

    source = read_source_series(phantom.folder)
    write_dicom_outputs(source, [finding_for(phantom)], algorithm(), tmp_path)
    with pytest.raises(InputError, match="already exist"):
        write_dicom_outputs(source, [finding_for(phantom)], algorithm(), tmp_path)
    assert len(write_dicom_outputs(source, [finding_for(phantom)], algorithm(), tmp_path, overwrite=True)) == 2
    assert not list(tmp_path.glob(".*partial"))
