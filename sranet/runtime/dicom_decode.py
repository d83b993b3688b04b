"""Reading one DICOM object: header-only parsing into ``SliceHeader`` and pixel decoding into HU.

Every failure becomes a typed error from ``sranet.errors`` that starts with the file's path. Nothing here logs tag
values that could identify a patient; ``SliceHeader`` keeps only geometry, pixel-format and scanner fields.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sranet.errors import (
    CorruptPixelDataError,
    DependencyMissingError,
    NoPixelDataError,
    NotDicomError,
    UnreadableFileError,
)

# SOP classes that hold CT pixels: CT Image, Enhanced CT Image, Legacy Converted Enhanced CT Image.
CT_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2"}
J2K_SYNTAXES = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
                "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"}
# Plausibility: more than this fraction of pixels outside [HU_MIN, HU_MAX] means the decode produced noise.
HU_MIN, HU_MAX, IMPLAUSIBLE_FRACTION = -4096.0, 20000.0, 0.02


@dataclass
class SliceHeader:
    """What the loader needs from one DICOM object's header (no pixels, nothing identifying)."""

    path: Path
    sop_class: str = ""
    modality: str = ""
    series_uid: str = ""
    series_number: str = ""
    series_description: str = ""
    image_type: tuple[str, ...] = ()
    rows: int = 0
    columns: int = 0
    frames: int = 1
    position: tuple[float, float, float] | None = None
    orientation: tuple[float, ...] | None = None
    pixel_spacing: tuple[float, float] | None = None
    slice_thickness: float | None = None
    instance: int = 0
    transfer_syntax: str = ""
    enhanced: bool = False
    scanner: dict = field(default_factory=dict)
    geometry_problem: str = ""  # a geometry tag that is present but not usable (NaN, wrong count), in words
    layout: Any = field(default=None, compare=False)  # dicom_scan.PixelLayout: where the pixels sit (fast reads)


def floats(value, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def clean_text(text, limit: int = 64) -> str:
    """Printable ASCII only, bounded length: safe for logs and JSON (never used in file names)."""
    return re.sub(r"[^ -~]", "", str(text or ""))[:limit].strip()


def read_dataset(path: Path, *, header_only: bool):
    """``pydicom.dcmread`` with typed errors. Files without the 128-byte preamble are retried with ``force``."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not path.exists():
        raise UnreadableFileError("file does not exist.", path=path, hint="Check the path.")
    if not os.access(path, os.R_OK) or path.is_dir():
        raise UnreadableFileError("cannot be read (permissions, or not a regular file).", path=path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = None
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=header_only)
        except InvalidDicomError:
            pass
        except (OSError, MemoryError) as exc:
            raise UnreadableFileError(f"cannot be read ({type(exc).__name__}).", path=path) from exc
        except Exception as exc:  # pydicom raises many types on damaged headers
            raise UnreadableFileError(f"DICOM header is truncated or damaged ({type(exc).__name__}: "
                                      f"{clean_text(exc, 120)}).", path=path,
                                      hint="Re-export the file from the PACS.") from exc
        if ds is None:
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=header_only, force=True)
            except Exception as exc:
                raise NotDicomError("is not a DICOM file (no 'DICM' marker and no parsable data set).", path=path,
                                    hint="Give a DICOM series folder, a DICOM file, .nii/.nii.gz or .npy.") from exc
            if "SOPClassUID" not in ds or "Modality" not in ds:
                raise NotDicomError("is not a DICOM file (no 'DICM' marker, no SOP class or modality).",
                                    path=path, hint="Give a DICOM series folder, a DICOM file, .nii/.nii.gz or .npy.")
    if "SOPClassUID" not in ds and "Modality" not in ds:
        if not header_only and len(read_dataset(path, header_only=True)):
            # the header parses on its own, the whole file does not: it ends inside the pixel data
            raise CorruptPixelDataError("is truncated: the file ends inside its pixel data.", path=path,
                                        hint="Copy or re-export the file again.")
        raise NotDicomError("holds no DICOM data set (no SOP class, no modality; only a file meta header?).",
                            path=path, hint="Re-export the file from the PACS.")
    return ds


def header_from_dataset(ds, path: Path) -> SliceHeader:
    """Pull the loader's fields out of a (header-only) data set."""
    g = ds.get
    ts = ""
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        ts = str(meta.get("TransferSyntaxUID", "") or "")
    try:
        frames = int(g("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        frames = 1
    try:
        instance = int(g("InstanceNumber", 0) or 0)
    except (TypeError, ValueError):
        instance = 0
    try:
        thickness = float(g("SliceThickness")) if g("SliceThickness") not in (None, "") else None
    except (TypeError, ValueError):
        thickness = None

    def as_int(key: str) -> int:
        try:
            return int(g(key, 0) or 0)
        except (TypeError, ValueError):
            return 0

    geometry = {key: floats(g(key), n) for key, n in GEOMETRY_TAGS.items()}
    problems = [f"{key} {clean_text(_as_list(g(key)), 80)} is not {GEOMETRY_TAGS[key]} finite numbers"
                for key, value in geometry.items() if value is None and g(key) not in (None, "")]

    return SliceHeader(
        path=path,
        sop_class=str(g("SOPClassUID", "") or ""),
        modality=clean_text(g("Modality", ""), 16).upper(),
        series_uid=str(g("SeriesInstanceUID", "") or ""),
        series_number=clean_text(g("SeriesNumber", ""), 12),
        series_description=clean_text(g("SeriesDescription", "")),
        image_type=tuple(clean_text(v, 32).upper() for v in (g("ImageType") or ())) if not isinstance(
            g("ImageType"), str) else (clean_text(g("ImageType"), 32).upper(),),
        rows=as_int("Rows"),
        columns=as_int("Columns"),
        frames=frames,
        position=geometry["ImagePositionPatient"],  # type: ignore[arg-type]
        orientation=geometry["ImageOrientationPatient"],
        pixel_spacing=geometry["PixelSpacing"],  # type: ignore[arg-type]
        slice_thickness=thickness,
        instance=instance,
        transfer_syntax=ts,
        enhanced="PerFrameFunctionalGroupsSequence" in ds,
        scanner={k: clean_text(g(k, "")) for k in ("Manufacturer", "ManufacturerModelName", "ConvolutionKernel",
                                               "KVP", "BodyPartExamined") if g(k) not in (None, "")},
        geometry_problem="; ".join(problems),
    )


GEOMETRY_TAGS = {"ImagePositionPatient": 3, "ImageOrientationPatient": 6, "PixelSpacing": 2}


def _as_list(value) -> str:
    """A multi-valued tag as '[a, b, c]' (numbers only reach messages; never names or IDs)."""
    try:
        return "[" + ", ".join(str(v) for v in value) + "]" if not isinstance(value, str) else value
    except TypeError:
        return str(value)


def read_header(path: Path) -> SliceHeader:
    """Header-only read (``stop_before_pixels``) of one file with pydicom; typed errors name the path. (The loader
    calls ``dicom_scan.read_header``, which reads the common file from its bytes and any other through this.)"""
    ds = read_dataset(path, header_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # values are converted lazily, on first access
        try:
            return header_from_dataset(ds, path)
        except Exception as exc:  # a damaged element that only fails when read
            raise UnreadableFileError(f"DICOM header is damaged ({type(exc).__name__}: {clean_text(exc, 120)}).",
                                      path=path, hint="Re-export the file from the PACS.") from exc


def _j2k_signed(ds, frame_index: int = 0) -> bool | None:
    """Signedness the JPEG 2000 codestream declares (SIZ marker, Ssiz bit 7), or None if not found."""
    from pydicom.encaps import generate_frames

    try:
        n = int(ds.get("NumberOfFrames", 1) or 1)
        for i, frame in enumerate(generate_frames(ds.PixelData, number_of_frames=n)):
            if i == frame_index:
                at = frame.find(b"\xff\x51", 0, 4096)
                return None if at < 0 or at + 41 > len(frame) else bool(frame[at + 40] & 0x80)
    except Exception:
        return None
    return None


def missing_decoder(ds) -> str | None:
    """For a compressed dataset whose transfer syntax no installed pydicom plugin can decode: the syntax's name and
    what is missing; otherwise None."""
    try:
        from pydicom.pixels import get_decoder

        syntax = ds.file_meta.TransferSyntaxUID
        if not syntax.is_compressed:
            return None
        decoder = get_decoder(syntax)
    except Exception:  # no file meta, unknown syntax: not a missing-plugin case
        return None
    if decoder.is_available:
        return None
    return f"{syntax.name}; missing: {', '.join(decoder.missing_dependencies) or 'a decoder plugin'}"


def decode_pixels(ds, path: Path, frame_index: int | None = None) -> np.ndarray:
    """Stored pixel values of one frame (or the only frame), with the J2K sign mismatch fixed. (H, W) integer array."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise NoPixelDataError("has no pixel data.", path=path,
                               hint="This object is not an image (a report, a dose map stub, ...); remove it.")
    from pydicom.pixels import pixel_array

    check_native_length(ds, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            arr = pixel_array(ds, index=frame_index) if frame_index is not None else ds.pixel_array
        except MemoryError as exc:
            raise CorruptPixelDataError("pixel data is too large to decode.", path=path) from exc
        except Exception as exc:
            missing = missing_decoder(ds)
            if missing:  # not the file's fault: say what to install instead of calling good data damaged
                raise DependencyMissingError(
                    f"no decoder is installed for its transfer syntax ({missing}).", path=path,
                    hint="pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg (sranet's own dependencies).",
                ) from exc
            raise CorruptPixelDataError(
                f"pixel data cannot be decoded ({type(exc).__name__}: {clean_text(exc, 160)}).", path=path,
                hint="The file is truncated or its compressed stream is damaged; re-export it.") from exc
    if arr.ndim == 3 and frame_index is None and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise CorruptPixelDataError(f"decoded to shape {arr.shape}; one greyscale (rows, columns) image was "
                                    "expected.", path=path, hint="Colour or multi-frame objects are not CT slices.")
    ts = str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", "") or "")
    if ts in J2K_SYNTAXES and arr.dtype.kind == "u" and int(ds.get("PixelRepresentation", 0) or 0) == 0:
        # Header says unsigned but the codestream is signed: negative values would wrap to 65535-ish.
        if _j2k_signed(ds, frame_index or 0):
            arr = arr.view(np.dtype(arr.dtype.str.replace("u", "i")))
    return arr


def check_native_length(ds, path: Path) -> None:
    """Uncompressed pixel data must hold exactly Rows x Columns x SamplesPerPixel x frames values (one pad byte
    allowed): a Rows or Columns tag that disagrees with it would read every row at the wrong stride (a sheared image)."""
    meta = getattr(ds, "file_meta", None)
    try:
        from pydicom.uid import UID

        syntax = UID(str(meta.get("TransferSyntaxUID", "") or "")) if meta is not None else None
        if syntax is not None and syntax and syntax.is_compressed:
            return  # the codec checks a compressed frame's size
        if "PixelData" not in ds:
            return
        rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.get("BitsAllocated", 0) or 0)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        length = len(ds.PixelData)
    except Exception:  # noqa: BLE001 - a header damaged in these tags fails in the decoder with its own message
        return
    if bits < 8 or bits % 8:
        return  # 1-bit data are never CT; the decoder says so
    expected = rows * columns * samples * frames * bits // 8
    if length not in (expected, expected + 1):
        raise CorruptPixelDataError(
            f"its pixel data is {length} bytes, but Rows {rows} x Columns {columns} x {bits // 8} bytes"
            f"{f' x {frames} frames' if frames > 1 else ''} need {expected}: the file is truncated or damaged, or its "
            "Rows/Columns are wrong (read anyway, the image would be sheared).", path=path,
            hint="Re-export the file from the PACS.")


def rescale_values(slope, intercept, path: Path) -> tuple[float, float]:
    """RescaleSlope / RescaleIntercept as numbers (absent: 1 and 0); CorruptPixelDataError when unusable."""
    try:
        slope = float(slope if slope not in (None, "") else 1.0)
        intercept = float(intercept if intercept not in (None, "") else 0.0)
    except (TypeError, ValueError) as exc:
        raise CorruptPixelDataError(f"RescaleSlope/Intercept {slope!r}/{intercept!r} are not numbers.",
                                    path=path) from exc
    if not (np.isfinite(slope) and np.isfinite(intercept) and slope != 0):
        raise CorruptPixelDataError(f"RescaleSlope {slope} / RescaleIntercept {intercept} are not usable.", path=path)
    return slope, intercept


def rescale_into(arr: np.ndarray, slope: float, intercept: float, out: np.ndarray) -> np.ndarray:
    """``out[...] = float32(arr) * float32(slope) + float32(intercept)``, in place, without temporaries; the
    same float32 values as ``arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)``."""
    with np.errstate(all="ignore"):
        if arr.dtype.kind in "iu" and arr.dtype.itemsize <= 2:  # exact in float32: one ufunc converts and scales
            if slope == 1.0:
                return np.add(arr, np.float32(intercept), out=out)
            np.multiply(arr, np.float32(slope), out=out)
        else:
            np.copyto(out, arr, casting="unsafe")  # as astype(float32)
            if slope != 1.0:
                out *= np.float32(slope)
        out += np.float32(intercept)
    return out


def check_plausible(hu: np.ndarray, path: Path, lo_hi: tuple[float, float] | None = None) -> None:
    """Refuse a slice with more than IMPLAUSIBLE_FRACTION of its HU outside [HU_MIN, HU_MAX] (NaN and inf count
    as outside): the decode produced noise. ``lo_hi``: the slice's HU range when already known (the check then
    reads no pixel unless it fails)."""
    lo, hi = lo_hi if lo_hi is not None else (np.min(hu), np.max(hu))  # NaN propagates: then counted below
    if lo >= HU_MIN and hi <= HU_MAX:
        return
    bad = float(np.mean(~((hu >= HU_MIN) & (hu <= HU_MAX))))
    if bad > IMPLAUSIBLE_FRACTION:
        raise CorruptPixelDataError(
            f"{bad:.0%} of pixels decode outside {HU_MIN:.0f}..{HU_MAX:.0f} HU (range {np.nanmin(hu):.0f}.."
            f"{np.nanmax(hu):.0f}):"
            " the pixel data is corrupt or its sign/bit depth is declared wrongly.", path=path,
            hint="Check PixelRepresentation/BitsStored against the pixel data, or re-export the file.")


def to_hu(arr: np.ndarray, slope, intercept, path: Path, padding_value=None) -> np.ndarray:
    """Stored values -> float32 HU (per-slice RescaleSlope/Intercept), with a plausibility check
    (``check_plausible``). PixelPaddingValue becomes -1024 HU."""
    slope, intercept = rescale_values(slope, intercept, path)
    hu = rescale_into(arr, slope, intercept, np.empty(arr.shape, np.float32))
    if padding_value is not None:
        try:
            hu[arr == int(padding_value)] = -1024.0
        except (TypeError, ValueError, OverflowError):
            pass
    check_plausible(hu, path)
    return hu


def decode_slice_hu(header: SliceHeader) -> np.ndarray:
    """Read one single-frame slice fully and return (H, W) float32 HU. Rows/columns must match its header."""
    ds = read_dataset(header.path, header_only=False)
    arr = decode_pixels(ds, header.path)
    if arr.shape != (header.rows, header.columns):
        raise CorruptPixelDataError(f"decoded to {arr.shape}, header says {(header.rows, header.columns)}.",
                                    path=header.path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # values are parsed lazily: a damaged element fails only here
            rescale = ds.get("RescaleSlope"), ds.get("RescaleIntercept"), ds.get("PixelPaddingValue")
        except Exception as exc:
            raise UnreadableFileError(f"DICOM header is damaged ({type(exc).__name__}: {clean_text(exc, 120)}).",
                                      path=header.path, hint="Re-export the file from the PACS.") from exc
    return to_hu(arr, rescale[0], rescale[1], header.path, rescale[2])
