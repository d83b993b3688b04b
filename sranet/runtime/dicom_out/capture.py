"""A Secondary Capture of a rendered PNG (the overview heatmap), for viewers that show neither SR nor maps."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sranet.errors import InputError, UnreadableFileError
from sranet.runtime.dicom_out.finding import AlgorithmInfo
from sranet.runtime.dicom_out.source import SourceSeries


def read_png_rgb(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of a PNG (or any image OpenCV reads)."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise UnreadableFileError("does not exist or is not a file.", path=path, hint="Give the overview PNG.")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UnreadableFileError("is not an image OpenCV can read.", path=path, hint="Give a PNG file.")
    return np.ascontiguousarray(image[:, :, ::-1])


def build_secondary_capture(source: SourceSeries, rgb: np.ndarray, algorithm: AlgorithmInfo, *, series_uid: str,
                            sop_uid: str, series_number: int, burned_in_text: bool = True,
                            patient_orientation: tuple[str, str] | None = None):
    """Build a Secondary Capture (highdicom ``SCImage``) of ``rgb`` ((H, W, 3) uint8) in the source study.

    burned_in_text       the picture carries text (the overview's title names the case): BurnedInAnnotation YES.
    patient_orientation  the directions of the picture's rows and columns, e.g. ("L", "P"), when it shows one
                         plane; None for a picture of several views, whose Patient Orientation is then left empty
                         (Type 2: known to be unknown) instead of being given one panel's directions.
    """
    from highdicom.sc import SCImage

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or min(rgb.shape[:2]) < 1:
        raise InputError(f"the capture needs (H, W, 3) uint8 RGB pixels, got {rgb.dtype} {rgb.shape}.")
    sc = SCImage.from_ref_dataset(
        ref_dataset=source.first, pixel_array=rgb, photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", series_instance_uid=series_uid, series_number=series_number,
        sop_instance_uid=sop_uid, instance_number=1, manufacturer="sranet",
        patient_orientation=patient_orientation or ("L", "P"),
        series_description=f"{algorithm.name} overview", manufacturer_model_name=algorithm.name,
        software_versions=algorithm.version)
    if patient_orientation is None:
        sc.PatientOrientation = ""
    sc.BurnedInAnnotation = "YES" if burned_in_text else "NO"
    sc.ImageLaterality = "B"  # the overview shows the whole study, both hips (the body part is paired)
    return sc
