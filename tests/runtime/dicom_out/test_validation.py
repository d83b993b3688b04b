"""Every object the writer makes passes dciodvfy without errors, reads back through pydicom and highdicom, and the
SR parses with dcmtk's dsrdump."""

from __future__ import annotations

import pydicom
import pytest

from tests.helpers import PATIENT_ID, PATIENT_NAME
from tests.runtime.dicom_out.conftest import run_tool

# The only warning dciodvfy may give, and why it is right: the private coding scheme of the localisation
# confidence (DICOM reserves designators starting with 99 for private schemes; it is declared in the
# Coding Scheme Identification Sequence, but no validator can know its terms).
EXPECTED_WARNINGS = {"Warning - Unrecognized defined term <99SRANET> for value 1 of attribute <Coding Scheme Designator>"}


def test_every_object_passes_dciodvfy(outputs):
    paths, _ = outputs
    assert [p.name for p in paths] == ["sr.dcm", "attention_right.dcm", "overview.dcm"]
    for path in paths:
        result = run_tool("dciodvfy", str(path))
        lines = [line.strip() for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("Error")]
        warnings = {line for line in lines if line.startswith("Warning")}
        assert not errors, f"{path.name}: {errors}"
        assert warnings <= EXPECTED_WARNINGS, f"{path.name}: unexpected warnings {warnings - EXPECTED_WARNINGS}"


def test_sr_parses_with_dsrdump(outputs):
    paths, finding = outputs
    result = run_tool("dsrdump", str(paths[0]))
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr and "Error" not in result.stderr, result.stderr
    text = result.stdout
    assert "Comprehensive 3D SR" in text and '"Imaging Measurement Report"' in text
    assert '<contains NUM:(,,"Probability")="0.83"' in text
    assert '<contains CODE:(,,"Necrosis")=(52101004,SCT,"Present")>' in text
    assert '"Quality Finding")="roi_truncated"' in text and "left hip not assessed" in text
    assert 'TEXT:(,,"Algorithm Parameters")="model_sha256=' in text


def test_objects_read_back_with_pydicom_and_highdicom(outputs, phantom):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    paths, finding = outputs
    source = pydicom.dcmread(next(phantom.folder.glob("*.dcm")), stop_before_pixels=True)
    datasets = [pydicom.dcmread(p) for p in paths]
    for ds in datasets:  # in the source study, in new series, with new instances
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert ds.SeriesInstanceUID != source.SeriesInstanceUID
        assert str(ds.PatientName) == PATIENT_NAME and ds.PatientID == PATIENT_ID  # copied, as DICOM requires
        for keyword in ("InstitutionName", "InstitutionAddress", "StationName", "OperatorsName",
                        "PerformingPhysicianName", "OtherPatientIDs"):
            assert keyword not in ds, keyword
    assert len({ds.SeriesInstanceUID for ds in datasets}) == len(datasets)
    assert len({ds.SOPInstanceUID for ds in datasets}) == len(datasets)

    sr = hd.sr.srread(paths[0])
    groups = sr.content.get_volumetric_roi_measurement_groups(tracking_uid=None)
    names = [g.tracking_identifier for g in groups]
    assert names[0] == "right hip AVNFH" and "right femoral head (localiser)" in names
    assert sum(n.startswith("right hip attention patch") for n in names) == 3
    hip = groups[0]
    assert hip.get_measurements(name=codes.DCM.Probability)[0].value == pytest.approx(0.83)
    assert hip.get_measurements(name=codes.DCM.ThresholdValue)[0].value == pytest.approx(0.5)
    assert hip.finding_sites[0].laterality == codes.SCT.Right
    import numpy as np

    surface = [item for item in hip.roi if item.ValueType == "SCOORD3D"]  # the ROI box: six closed faces
    assert len(surface) == 6 and all(item.GraphicType == "POLYGON" for item in surface)
    points = np.concatenate([item.value for item in surface])
    lo, hi = points.min(axis=0), points.max(axis=0)
    assert np.allclose(np.c_[lo, hi], np.array(finding.roi_mm), atol=1e-3)
    assert all(item.ReferencedFrameOfReferenceUID == source.FrameOfReferenceUID for item in surface)
    assert sr.CurrentRequestedProcedureEvidenceSequence[0].StudyInstanceUID == source.StudyInstanceUID

    pm = hd.imread(paths[1])
    assert pm.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30" and pm.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert pm.Laterality == "R" and pm.pixel_array.dtype == np.float32
    sc = hd.imread(paths[2])
    assert sc.BurnedInAnnotation == "YES" and sc.pixel_array.shape == (60, 90, 3)


def test_file_names_carry_no_identifiers(outputs):
    paths, _ = outputs
    for path in paths:
        for secret in (PATIENT_NAME, PATIENT_ID, "DOE", "4711"):
            assert secret.lower() not in str(path).lower()


def test_device_observer_uid_is_the_same_for_the_same_model_only():
    from pydicom.uid import UID

    from sranet.runtime.dicom_out.finding import AlgorithmInfo
    from sranet.runtime.dicom_out.sr import device_uid

    a, b = AlgorithmInfo("a" * 64, "model.onnx"), AlgorithmInfo("b" * 64, "model.onnx")
    assert device_uid(a) == device_uid(AlgorithmInfo("a" * 64, "other.onnx")) != device_uid(b)
    uid = UID(device_uid(a))
    assert uid.is_valid and uid.startswith("2.25.") and int(uid[5:]) < 2**128
