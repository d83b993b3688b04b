"""Write a (D, H, W) HU volume as a real CT DICOM series: one file per slice, int16 with rescale slope/intercept.

The series reads back through pydicom and ``sranet.runtime.io.load_volume`` onto the same grid: slice d sits at
``origin + d * sD * normal`` where ``normal = row_dir x col_dir`` (the volume's axis 0), image rows run along axis 1
(H) and columns along axis 2 (W). Tags follow the CT Image IOD (patient, study, series, frame of reference,
equipment, image plane, image pixel, CT image, SOP common modules). Patient name and ID are whatever the caller
passes; the synthetic writer uses fake, non-identifying ones like ``SYNTH^0001``.

Speed: pydicom encodes one slice's header; every slice reuses those bytes with its own fixed-width values (SOP
instance UID, instance number, position, slice location) written in place, then its pixels. Thousands of phantom
slices are written at file-copy speed, and each file is what pydicom itself would write for that slice.
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
    patient_position: str = "FFS",
    body_part: str = "HIP",
) -> list[Path]:
    """Write ``hu`` ((D, H, W) HU) as ``out_dir/slice_0000.dcm`` ...; returns the paths in slice order.

    spacing_mm   (sD, sH, sW): slice spacing (also SliceThickness: contiguous slices), then PixelSpacing (row, col).
    origin_mm    LPS position of the centre of voxel (0, 0, 0) = ImagePositionPatient of the first slice.
    direction    (3, 3), column a = LPS direction of array axis a. Default: axial, D along +z (feet to head),
                 H along +y (anterior to posterior), W along +x (right to left).
    patient_position  PatientPosition (HFS, FFS, HFP, FFP, ...); the caller keeps it consistent with ``direction``.
    body_part   BodyPartExamined.
    Stored values are round((hu - intercept) / slope) as int16; values that do not fit raise InputError.
    """
    from pydicom.uid import generate_uid

    hu = np.asarray(hu)
    if hu.ndim != 3:
        raise InputError(f"write_dicom_series needs a (D, H, W) volume, got shape {hu.shape}.")
    axial = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    direction = axial if direction is None else np.asarray(direction, dtype=float)
    if direction.shape != (3, 3) or not np.allclose(direction.T @ direction, np.eye(3), atol=1e-6):
        raise InputError("direction must be a (3, 3) orthonormal matrix (column a = LPS direction of axis a).")
    if not np.allclose(np.cross(direction[:, 2], direction[:, 1]), direction[:, 0], atol=1e-6):
        raise InputError("direction's axis 0 must equal row_dir x col_dir (axis 2 x axis 1) so slices stack along the normal.")
    lo, hi = (np.rint((float(v) - rescale_intercept) / rescale_slope) for v in (hu.min(), hu.max()))
    if min(lo, hi) < -32768 or max(lo, hi) > 32767:
        raise InputError(
            f"HU range [{hu.min()}, {hu.max()}] does not fit int16 with slope {rescale_slope} and intercept "
            f"{rescale_intercept}. Clip the volume or choose another rescale."
        )

    def stored(d: int) -> np.ndarray:  # one slice at a time: a 512 x 512 x 400 series needs no float64 copy
        return np.rint((hu[d].astype(np.float64) - rescale_intercept) / rescale_slope).astype(np.int16)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    # instance UIDs of one length (root + "." + 6 digits), so every slice's header has the same layout
    root = generate_uid()[:57].rstrip(".")
    sd = float(spacing_mm[0])
    origin = np.asarray(origin_mm, dtype=float)
    ds = _series_dataset(hu.shape, spacing_mm, direction, study_uid=study_uid or generate_uid(),
                         patient=(patient_name, patient_id), description=series_description,
                         rescale=(rescale_slope, rescale_intercept), position=patient_position, body_part=body_part)
    template = _SliceTemplate(ds, f"{root}.{100000:06d}", 2 * int(hu.shape[1]) * int(hu.shape[2]))
    paths = []
    for d in range(hu.shape[0]):
        position = origin + d * sd * direction[:, 0]
        path = out_dir / f"slice_{d:04d}.dcm"
        template.write(path, uid=f"{root}.{100000 + d:06d}", instance=d + 1, position=position,
                       location=float(position @ direction[:, 0]), pixels=stored(d))
        paths.append(path)
    return paths


def _series_dataset(shape, spacing_mm, direction: np.ndarray, *, study_uid: str, patient: tuple[str, str],
                    description: str, rescale: tuple[float, float], position: str, body_part: str):
    """The tags every slice of the series shares (CT Image IOD modules), file meta included."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    now = datetime.datetime(2000, 1, 1, 12, 0, 0)
    sd, sh, sw = (float(s) for s in spacing_mm)
    iop = [*direction[:, 2].tolist(), *direction[:, 1].tolist()]  # row direction (along W), column direction (along H)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName, ds.PatientID = patient
    ds.PatientBirthDate, ds.PatientSex = "", "O"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, generate_uid(), generate_uid()
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "", ""
    ds.Modality, ds.SeriesNumber, ds.AcquisitionNumber = "CT", 1, 1
    ds.SeriesDescription = description
    ds.Manufacturer, ds.ManufacturerModelName = "sranet", "synthetic phantom"
    ds.BodyPartExamined, ds.PositionReferenceIndicator, ds.PatientPosition = body_part, "", position
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.KVP, ds.ConvolutionKernel = 120, "STANDARD"
    ds.ImageOrientationPatient = [round(float(v), 6) for v in iop]
    ds.PixelSpacing = [round(sh, 6), round(sw, 6)]
    ds.SliceThickness = ds.SpacingBetweenSlices = round(sd, 6)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = int(shape[1]), int(shape[2])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = rescale
    ds.RescaleType = "HU"
    ds.WindowCenter, ds.WindowWidth = 400, 1800
    return ds


class _SliceTemplate:
    """One slice file's bytes as pydicom encodes them, with the per-slice values at known offsets.

    The per-slice values have fixed widths: the SOP instance UID (given length, in the file meta and the dataset),
    InstanceNumber (IS, 8 characters), ImagePositionPatient (DS, three 14-character numbers) and SliceLocation
    (DS, 14 characters), all space-padded as DICOM allows; PixelData is last, of a fixed length.
    """

    _IS, _DS = 8, 14

    def __init__(self, ds, uid: str, pixel_bytes: int):
        import io

        import pydicom

        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = uid
        ds.InstanceNumber = pydicom.valuerep.IS("9" * self._IS)
        ds.ImagePositionPatient = [pydicom.valuerep.DS("7" * self._DS)] * 3
        ds.SliceLocation = pydicom.valuerep.DS("8" * self._DS)
        ds.PixelData = bytes(pixel_bytes)
        ds["PixelData"].VR = "OW"
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        raw = buf.getvalue()
        self.header = bytearray(raw[: len(raw) - pixel_bytes])
        self.uid_len = len(uid)
        uid_bytes = uid.encode("ascii")
        first = raw.index(uid_bytes)
        self.uid_at = [first, raw.index(uid_bytes, first + 1)]
        self.instance_at = raw.index(b"9" * self._IS)
        self.position_at = raw.index(b"\\".join([b"7" * self._DS] * 3))
        self.location_at = raw.index(b"8" * self._DS)

    def write(self, path: Path, *, uid: str, instance: int, position: np.ndarray, location: float,
              pixels: np.ndarray) -> None:
        if len(uid) != self.uid_len:
            raise InputError(f"slice UID {uid!r} must have {self.uid_len} characters like the template's.")
        head = self.header
        for at in self.uid_at:
            head[at:at + self.uid_len] = uid.encode("ascii")
        head[self.instance_at:self.instance_at + self._IS] = f"{instance:>{self._IS}d}".encode("ascii")
        text = "\\".join(_ds_text(v, self._DS) for v in position)
        head[self.position_at:self.position_at + len(text)] = text.encode("ascii")
        head[self.location_at:self.location_at + self._DS] = _ds_text(location, self._DS).encode("ascii")
        with open(path, "wb") as fh:
            fh.write(head)
            fh.write(pixels.tobytes())


def _ds_text(value: float, width: int) -> str:
    """A decimal string of exactly ``width`` characters (right-aligned, 4 decimals; fewer where the value is large)."""
    for decimals in (4, 3, 2, 1, 0):
        text = f"{value:>{width}.{decimals}f}"
        if len(text) == width:
            return text
    raise InputError(f"position {value} mm does not fit a {width}-character DICOM decimal string.")
