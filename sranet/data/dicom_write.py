"""Write a (D, H, W) HU volume as a real CT DICOM series: one file per slice, int16 with rescale slope/intercept.

The series reads back through pydicom and ``sranet.runtime.io.load_volume`` onto the same grid: slice d sits at
``origin + d * sD * normal`` where ``normal = row_dir x col_dir`` (the volume's axis 0), image rows run along axis 1
(H) and columns along axis 2 (W). Tags follow the CT Image IOD (patient, study, series, frame of reference,
equipment, image plane, image pixel, CT image, SOP common modules). Patient name and ID are whatever the caller
passes; the synthetic writer uses fake, non-identifying ones like ``SYNTH^0001``.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import numpy as np

from sranet.errors import InputError

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def write_dicom_series(
    hu: np.ndarray,
    spacing_mm: tuple[float, float, float],
    out_dir: str | os.PathLike,
    *,
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
    direction: np.ndarray | None = None,
    patient_name: str = "SYNTH^0000",
    patient_id: str = "SYNTH0000",
    series_description: str = "sranet synthetic phantom",
    rescale_slope: float = 1.0,
    rescale_intercept: float = -1024.0,
    study_uid: str | None = None,
) -> list[Path]:
    """Write ``hu`` ((D, H, W) HU) as ``out_dir/slice_0000.dcm`` ...; returns the paths in slice order.

    spacing_mm   (sD, sH, sW): slice spacing (also SliceThickness: contiguous slices), then PixelSpacing (row, col).
    origin_mm    LPS position of the centre of voxel (0, 0, 0) = ImagePositionPatient of the first slice.
    direction    (3, 3), column a = LPS direction of array axis a. Default: axial, D along +z (feet to head),
                 H along +y (anterior to posterior), W along +x (right to left).
    Stored values are round((hu - intercept) / slope) as int16; values that do not fit raise InputError.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    hu = np.asarray(hu)
    if hu.ndim != 3:
        raise InputError(f"write_dicom_series needs a (D, H, W) volume, got shape {hu.shape}.")
    axial = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    direction = axial if direction is None else np.asarray(direction, dtype=float)
    if direction.shape != (3, 3) or not np.allclose(direction.T @ direction, np.eye(3), atol=1e-6):
        raise InputError("direction must be a (3, 3) orthonormal matrix (column a = LPS direction of axis a).")
    if not np.allclose(np.cross(direction[:, 2], direction[:, 1]), direction[:, 0], atol=1e-6):
        raise InputError("direction's axis 0 must equal row_dir x col_dir (axis 2 x axis 1) so slices stack along the normal.")
    stored = np.rint((hu.astype(np.float64) - rescale_intercept) / rescale_slope)
    if stored.min() < -32768 or stored.max() > 32767:
        raise InputError(
            f"HU range [{hu.min()}, {hu.max()}] does not fit int16 with slope {rescale_slope} and intercept "
            f"{rescale_intercept}. Clip the volume or choose another rescale."
        )
    stored = stored.astype(np.int16)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    now = datetime.datetime(2000, 1, 1, 12, 0, 0)
    study_uid = study_uid or generate_uid()
    series_uid, frame_uid = generate_uid(), generate_uid()
    sd, sh, sw = (float(s) for s in spacing_mm)
    origin = np.asarray(origin_mm, dtype=float)
    iop = [*direction[:, 2].tolist(), *direction[:, 1].tolist()]  # row direction (along W), column direction (along H)
    paths = []
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()  # the series-constant tags, set once; per-slice tags are updated in the loop below
    ds.file_meta = meta
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName, ds.PatientID = patient_name, patient_id
    ds.PatientBirthDate, ds.PatientSex = "", "O"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "", ""
    ds.Modality, ds.SeriesNumber, ds.AcquisitionNumber = "CT", 1, 1
    ds.SeriesDescription = series_description
    ds.Manufacturer, ds.ManufacturerModelName = "sranet", "synthetic phantom"
    ds.BodyPartExamined, ds.PositionReferenceIndicator, ds.PatientPosition = "HIP", "", "FFS"
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.KVP, ds.ConvolutionKernel = 120, "STANDARD"
    ds.ImageOrientationPatient = [round(float(v), 6) for v in iop]
    ds.PixelSpacing = [round(sh, 6), round(sw, 6)]
    ds.SliceThickness = ds.SpacingBetweenSlices = round(sd, 6)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = int(hu.shape[1]), int(hu.shape[2])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = rescale_intercept, rescale_slope, "HU"
    ds.WindowCenter, ds.WindowWidth = 400, 1800
    for d in range(hu.shape[0]):
        sop_uid = generate_uid()
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = d + 1
        position = origin + d * sd * direction[:, 0]
        ds.ImagePositionPatient = [round(float(v), 4) for v in position]
        ds.SliceLocation = round(float(position @ direction[:, 0]), 4)
        ds.PixelData = np.ascontiguousarray(stored[d]).tobytes()
        path = out_dir / f"slice_{d:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
