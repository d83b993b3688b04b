"""A small header reader for the common DICOM file, with pydicom as the reference and the fallback.

``scan_header(path)`` reads the tags a CT slice's geometry and pixel format need, and where its pixel data start,
straight from the bytes: the 128-byte preamble and ``DICM``, the file meta (group 0002), then the data set in
implicit or explicit VR little endian, skipping every other element (sequences included) without converting it,
up to the pixel data. It returns the same ``SliceHeader`` that ``dicom_decode.header_from_dataset`` builds from
pydicom's data set, converting each value as pydicom does. Where it cannot vouch for that it returns None and the
caller reads the file with pydicom: no preamble, big endian or deflated data sets, a transfer syntax pydicom does
not know, a needed value that is multi-valued where one is expected, is not plain printable ASCII, or is not a
well-formed number, an element or item that runs past the end of the file, malformed sequences.
``dicom_walk`` walks the bytes; this module converts the values it keeps and builds the header.

``SliceHeader.layout`` (a ``PixelLayout``) says where an uncompressed slice's stored values sit in the file, so
``dicom_decode`` reads just those bytes; it is None for compressed data, which pydicom and its plugins decode.
"""

from __future__ import annotations

import math
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from sranet.runtime import dicom_decode
from sranet.runtime.dicom_decode import GEOMETRY_TAGS, SliceHeader, clean_text
from sranet.runtime.dicom_walk import (
    IMPLICIT_LE,
    LONG_VRS,
    NATIVE,
    PIXEL_DATA,
    SHORT_VRS,
    TAGS,
    Fallback,
    FileBytes,
    ascii_text,
    file_meta,
    walk_dataset,
)

SCANNER_TAGS = ("Manufacturer", "ManufacturerModelName", "ConvolutionKernel", "KVP", "BodyPartExamined")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class PixelLayout:
    """Where and how a slice's pixel data are stored (what pydicom's native decoder reads).

    offset, length      byte offset of the PixelData value in the file and its length (None: encapsulated).
    bits_allocated, bits_stored, pixel_representation, samples_per_pixel, photometric   as the tags say (None
                        where absent).
    slope, intercept, padding   RescaleSlope / RescaleIntercept as pydicom gives them (a number, or "" / None when
                        empty or absent) and PixelPaddingValue (int or None).
    native              True for implicit / explicit VR little endian (uncompressed) pixel data of one frame
                        (NumberOfFrames absent or 1) outside an enhanced object.
    implicit            the data set is implicit VR (what follows the pixel data is read so).
    """

    offset: int
    length: int | None
    bits_allocated: int | None
    bits_stored: int | None
    pixel_representation: int | None
    samples_per_pixel: int | None
    photometric: str | None
    slope: float | str | None
    intercept: float | str | None
    padding: int | None
    native: bool
    implicit: bool

    @property
    def fast(self) -> bool:
        """Whether ``dicom_pixels`` reads these pixels itself: one frame of 16-bit greyscale, uncompressed, with
        every tag pydicom's decoder requires present and valid (else pydicom decodes, or says what is wrong)."""
        return (self.native and self.length is not None and self.bits_allocated == 16
                and self.samples_per_pixel == 1 and self.bits_stored is not None and 1 <= self.bits_stored <= 16
                and self.pixel_representation in (0, 1) and self.photometric in ("MONOCHROME1", "MONOCHROME2"))


def read_header(path: Path) -> SliceHeader:
    """The loader's header read: ``scan_header``, or pydicom (``dicom_decode.read_header``, typed errors naming
    the path) where it answers None."""
    fast = scan_header(path)
    return fast if fast is not None else dicom_decode.read_header(path)


def scan_header(path: Path) -> SliceHeader | None:
    """The loader's ``SliceHeader`` for ``path`` read from its bytes, or None where pydicom must read it (module
    docstring). Never raises for what the file holds; an unreadable file is None too (pydicom names the error)."""
    try:
        with open(path, "rb", buffering=0) as fh:
            size = os.fstat(fh.fileno()).st_size
            buf = FileBytes(fh, size)
            syntax, pos = file_meta(buf)
            values, pixels, enhanced = walk_dataset(buf, pos, implicit=syntax == IMPLICIT_LE)
        return _header(path, values, pixels, enhanced, syntax)
    except (Fallback, OSError, struct.error, UnicodeDecodeError, ValueError, OverflowError):
        return None


def _strings(vr: str, raw: bytes) -> list[str]:
    """A text value split as pydicom splits it (CS/UI: trailing padding off, then split; LO/SH: split, then each
    value's trailing padding off; DS/IS: each value stripped)."""
    text = ascii_text(raw)
    if vr == "UI":
        return text.rstrip("\0 ").rstrip(" \0").split("\\")
    if vr == "CS":
        return text.rstrip(" \0").split("\\")
    if vr in ("LO", "SH"):
        return [v.rstrip("\0 ") for v in text.split("\\")]
    if vr == "DS":
        return [v.strip() for v in text.strip().rstrip(" \0").split("\\")]
    return [v.strip() for v in text.rstrip(" \0").split("\\")]  # IS


_VALUES: dict = {}  # (tag, VR, bytes, PixelRepresentation) -> value: a series repeats most values in every file


def _value(tag: int, entry: tuple[bytes | None, bytes], pixel_representation: int | None):
    """One needed value as pydicom's ``Dataset.get`` returns it, for the forms the loader handles: str (or a list
    of str for a multi-valued text), float (DS), int (IS, US, SS), "" for an empty DS/IS, a list of floats for a
    multi-valued DS. Anything else raises Fallback. Values are remembered by their bytes (never mutated)."""
    key = (tag, *entry, pixel_representation)
    value = _VALUES.get(key, _VALUES)
    if value is _VALUES:
        if len(_VALUES) > 4096:
            _VALUES.clear()
        value = _VALUES[key] = _convert(tag, entry, pixel_representation)
    return value


def _convert(tag: int, entry: tuple[bytes | None, bytes], pixel_representation: int | None):
    vr_file, raw = entry
    keyword, vr = TAGS[tag]
    if vr_file is not None and vr != "xs" and vr_file.decode() != vr:
        raise Fallback
    if vr in ("US", "xs"):
        if len(raw) != 2:
            raise Fallback
        if vr == "xs":
            signed = (vr_file == b"SS") if vr_file is not None else pixel_representation == 1
            if vr_file not in (None, b"US", b"SS") or (vr_file is None and pixel_representation is None):
                raise Fallback
            return struct.unpack("<h" if signed else "<H", raw)[0]
        return struct.unpack("<H", raw)[0]
    parts = _strings(vr, raw)
    if vr == "DS":
        if parts == [""]:
            return ""
        if not all(_NUMBER.fullmatch(p) for p in parts):
            raise Fallback
        numbers = [_DecimalString(p) for p in parts]
        return numbers[0] if len(numbers) == 1 else numbers
    if vr == "IS":
        if parts == [""]:
            return ""
        if len(parts) != 1 or not _INTEGER.fullmatch(parts[0]):
            raise Fallback
        return _IntString(parts[0])
    return parts[0] if len(parts) == 1 else parts


class _IntString(int):
    """An IS value: its int, and its text as pydicom's ``str(IS)`` gives it (``"003"`` stays ``"003"``)."""

    def __new__(cls, text: str):
        obj = super().__new__(cls, int(text))
        obj.text = text
        return obj

    def __str__(self) -> str:
        return self.text


class _DecimalString(float):
    """A DS value: its float, and its text as pydicom's ``str(DSfloat)`` gives it (the file's text, stripped)."""

    def __new__(cls, text: str):
        obj = super().__new__(cls, float(text))
        obj.text = text
        return obj

    def __str__(self) -> str:
        return self.text


_PER_FILE = (0x00200032, 0x00200013)  # ImagePositionPatient, InstanceNumber: what differs between a series' files
_HEADERS: dict = {}  # the rest of a header, by the bytes of its values: computed once per series


def _header(path: Path, values: dict, pixels: tuple | None, enhanced: bool, syntax: str) -> SliceHeader:
    """The ``SliceHeader`` pydicom's data set would give (``dicom_decode.header_from_dataset``)."""
    key = (tuple(item for item in values.items() if item[0] not in _PER_FILE),
           None if pixels is None else pixels[1:], enhanced, syntax)
    static = _HEADERS.get(key)
    if static is None:
        if len(_HEADERS) > 256:
            _HEADERS.clear()
        static = _HEADERS[key] = _static_fields(values, pixels, enhanced, syntax)
    fields, scanner, layout, pixel_representation = static
    position = _geometry(values, 0x00200032, pixel_representation)
    instance = _value(0x00200013, values[0x00200013], None) if 0x00200013 in values else None
    return SliceHeader(path=path, position=position, instance=int(instance or 0), **fields, scanner=dict(scanner),
                       layout=None if layout is None else PixelLayout(pixels[0], *layout))


def _geometry(values: dict, tag: int, pixel_representation) -> tuple[float, ...] | None:
    """A geometry tag as ``dicom_decode.floats`` gives it from pydicom's value: n finite numbers, or None when
    absent or empty; anything else is pydicom's to word (geometry_problem)."""
    keyword = TAGS[tag][0]
    value = _value(tag, values[tag], pixel_representation) if tag in values else None
    if value in (None, ""):
        return None
    if not (isinstance(value, list) and len(value) == GEOMETRY_TAGS[keyword]):
        raise Fallback
    return _finite(tuple(float(x) for x in value))


def _static_fields(values: dict, pixels: tuple | None, enhanced: bool, syntax: str) -> tuple:
    """The header's fields that a series shares (all but path, position, instance number and scanner), the scanner
    fields, the pixel layout's fields after its offset, and the PixelRepresentation."""
    raw_pr = values.get(0x00280103)
    pixel_representation = _value(0x00280103, raw_pr, None) if raw_pr is not None else None
    v = {TAGS[tag][0]: _value(tag, entry, pixel_representation) for tag, entry in values.items()}
    if "SOPClassUID" not in v and "Modality" not in v:
        raise Fallback  # pydicom says what is wrong with it
    for key in ("SOPClassUID", "Modality", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "Rows",
                "Columns", "NumberOfFrames", "InstanceNumber", "SliceThickness", "RescaleSlope", "RescaleIntercept",
                *SCANNER_TAGS):
        if isinstance(v.get(key), list) and not (key == "ConvolutionKernel" and _texts(v[key])):
            raise Fallback  # a multi-valued value where one is expected: pydicom's text of it is left to pydicom
    image_type = v.get("ImageType")
    if image_type is None:
        image_type = ()
    elif isinstance(image_type, str):
        image_type = (clean_text(image_type, 32).upper(),)
    else:
        image_type = tuple(clean_text(t, 32).upper() for t in image_type)
    thickness = v.get("SliceThickness")
    layout = None
    if pixels is not None:
        layout = (pixels[1], v.get("BitsAllocated"), v.get("BitsStored"), pixel_representation,
                  v.get("SamplesPerPixel"), v.get("PhotometricInterpretation"), v.get("RescaleSlope"),
                  v.get("RescaleIntercept"), v.get("PixelPaddingValue"),
                  syntax in NATIVE and v.get("NumberOfFrames", 1) == 1 and not enhanced, syntax == IMPLICIT_LE)
    fields = dict(
        sop_class=str(v.get("SOPClassUID") or ""),
        modality=clean_text(v.get("Modality", ""), 16).upper(),
        series_uid=str(v.get("SeriesInstanceUID") or ""),
        series_number=clean_text(v.get("SeriesNumber", ""), 12),
        series_description=clean_text(v.get("SeriesDescription", "")),
        image_type=image_type,
        rows=int(v.get("Rows") or 0),
        columns=int(v.get("Columns") or 0),
        frames=int(v.get("NumberOfFrames") or 1),
        orientation=_geometry(values, 0x00200037, pixel_representation),
        pixel_spacing=_geometry(values, 0x00280030, pixel_representation),
        slice_thickness=float(thickness) if thickness not in (None, "") else None,
        transfer_syntax=syntax,
        enhanced=enhanced,
        geometry_problem="",
    )
    scanner = {k: clean_text(_text(v[k])) for k in SCANNER_TAGS if v.get(k) not in (None, "")}
    return fields, scanner, layout, pixel_representation


def _finite(values: tuple | None) -> tuple | None:
    if values is not None and not all(math.isfinite(x) for x in values):
        raise Fallback
    return values


def _texts(values: list) -> bool:
    return all(isinstance(x, str) for x in values)


def _text(value):
    """A value as ``clean_text`` gets it from pydicom: a multi-valued text prints as a list of quoted strings; a
    number keeps its file text (and counts as empty when zero, as pydicom's does)."""
    if isinstance(value, list):
        return "[" + ", ".join(repr(x) for x in value) + "]"
    return value


__all__ = ["LONG_VRS", "PIXEL_DATA", "SHORT_VRS", "PixelLayout", "read_header", "scan_header"]
