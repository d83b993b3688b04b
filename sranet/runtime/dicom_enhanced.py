"""Enhanced (multi-frame) CT objects: geometry lives in the shared and per-frame functional groups."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from sranet.errors import GeometryError, SranetError, UnreadableFileError
from sranet.runtime.dicom_decode import SliceHeader, decode_pixels, floats, read_dataset, to_hu
from sranet.runtime.dicom_stack import build_volume
from sranet.runtime.limits import check_volume_bytes
from sranet.runtime.roi import Roi


def _group_value(frame, shared, seq: str, key: str):
    for group in (frame, shared):
        if group is not None and seq in group and len(group[seq].value):
            item = group[seq].value[0]
            if key in item:
                return item[key].value
    return None


def load_enhanced(path: Path, header: SliceHeader, *, roi: Roi | None = None, policy: str = "resample",
                  max_gib: float | None = None):
    """Enhanced CT -> Volume; frames are treated as slices (sorted by position), decoded one frame at a time.

    The whole object is read into memory (its frames share one pixel data element), so the budget ``max_gib``
    applies to all its frames before the file is read, and to the box to stack after.
    """
    check_volume_bytes((header.frames, header.rows, header.columns), max_gib, path=path,
                       what="the multi-frame object (all frames)")
    ds = read_dataset(path, header_only=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            hs, rescale, padding = _frame_headers(ds, path, header)
        except SranetError:
            raise
        except Exception as exc:  # values are parsed lazily: a damaged element fails only here
            raise UnreadableFileError(f"functional groups are damaged ({type(exc).__name__}: {str(exc)[:120]}).",
                                      path=path, hint="Re-export the file from the PACS.") from exc

    def decode(i: int) -> np.ndarray:
        arr = decode_pixels(ds, path, frame_index=i)
        slope, intercept = rescale[i]
        return to_hu(arr, slope, intercept, path, padding)

    qc = ["derived_image"] if header.image_type[:1] == ("DERIVED",) else []
    return build_volume(hs, where=path, roi=roi, policy=policy, decode=decode, max_gib=max_gib,
                        extra_meta={"enhanced": True, "image_type": list(header.image_type)}, qc=qc)


def _frame_headers(ds, path: Path, header: SliceHeader):
    """One SliceHeader and (slope, intercept) per frame, from the per-frame and shared functional groups."""
    frames = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None
    n = int(ds.get("NumberOfFrames", len(frames)) or 0)
    if len(frames) != n or n == 0:
        raise GeometryError(f"has {n} frames but {len(frames)} per-frame functional groups.", path=path,
                            hint="The enhanced object is incomplete; re-export it.")
    hs, rescale = [], []
    for i, fg in enumerate(frames):
        pos = floats(_group_value(fg, shared, "PlanePositionSequence", "ImagePositionPatient"), 3)
        iop = floats(_group_value(fg, shared, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
        ps = floats(_group_value(fg, shared, "PixelMeasuresSequence", "PixelSpacing"), 2)
        thick = _group_value(fg, shared, "PixelMeasuresSequence", "SliceThickness")
        if pos is None or iop is None or ps is None:
            raise GeometryError(f"frame {i} has no plane position, orientation or pixel spacing.", path=path,
                                hint="Enhanced objects need PlanePosition/PlaneOrientation/PixelMeasures groups.")
        rescale.append((_group_value(fg, shared, "PixelValueTransformationSequence", "RescaleSlope"),
                        _group_value(fg, shared, "PixelValueTransformationSequence", "RescaleIntercept")))
        hs.append(SliceHeader(path=path, sop_class=header.sop_class, modality="CT", series_uid=header.series_uid,
                              series_number=header.series_number, series_description=header.series_description,
                              image_type=header.image_type, rows=header.rows, columns=header.columns, position=pos,
                              orientation=iop, pixel_spacing=ps, instance=i,
                              slice_thickness=float(thick) if thick not in (None, "") else None,
                              transfer_syntax=header.transfer_syntax, scanner=header.scanner))

    return hs, rescale, ds.get("PixelPaddingValue")
