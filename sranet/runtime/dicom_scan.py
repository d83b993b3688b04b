"""A small header reader for the common DICOM file, with pydicom as the reference and the fallback.

``scan_header(path)`` reads the tags a CT slice's geometry and pixel format need, and where its pixel data start,
straight from the bytes: the 128-byte preamble and ``DICM``, the file meta (group 0002), then the data set in
implicit or explicit VR little endian, skipping every other element (sequences included) without converting it,
up to the pixel data. It returns the same ``SliceHeader`` that ``dicom_decode.header_from_dataset`` builds from
pydicom's data set, converting each value as pydicom does. Where it cannot vouch for that it returns None and the
caller reads the file with pydicom: no preamble, big endian or deflated data sets, a transfer syntax pydicom does
not know, a needed value that is multi-valued where one is expected, is not plain printable ASCII, or is not a
well-formed number, an element or item that runs past the end of the file, malformed sequences.

``SliceHeader.layout`` (a ``PixelLayout``) says where an uncompressed slice's stored values sit in the file, so
``dicom_decode`` reads just those bytes; it is None for compressed data, which pydicom and its plugins decode.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from sranet.runtime import dicom_decode
from sranet.runtime.dicom_decode import GEOMETRY_TAGS, SliceHeader, clean_text

# Transfer syntaxes whose data set is implicit / explicit VR little endian with native (uncompressed) pixel data.
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
_NATIVE = {IMPLICIT_LE, EXPLICIT_LE}

PIXEL_DATA = 0x7FE00010
_FLOAT_PIXELS = {0x7FE00008, 0x7FE00009}
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
SHORT_VRS = {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN", b"SH",
              b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
_MAX_DEPTH = 12  # nested sequences deeper than this are left to pydicom
_FIRST_READ = 16384  # bytes read first; most CT headers end well before

# The tags the loader reads (keyword, VR as pydicom's dictionary gives it; "xs" is US or SS).
TAGS = {
    0x00080008: ("ImageType", "CS"),
    0x00080016: ("SOPClassUID", "UI"),
    0x00080060: ("Modality", "CS"),
    0x00080070: ("Manufacturer", "LO"),
    0x0008103E: ("SeriesDescription", "LO"),
    0x00081090: ("ManufacturerModelName", "LO"),
    0x00180015: ("BodyPartExamined", "CS"),
    0x00180050: ("SliceThickness", "DS"),
    0x00180060: ("KVP", "DS"),
    0x00181210: ("ConvolutionKernel", "SH"),
    0x0020000E: ("SeriesInstanceUID", "UI"),
    0x00200011: ("SeriesNumber", "IS"),
    0x00200013: ("InstanceNumber", "IS"),
    0x00200032: ("ImagePositionPatient", "DS"),
    0x00200037: ("ImageOrientationPatient", "DS"),
    0x00280002: ("SamplesPerPixel", "US"),
    0x00280004: ("PhotometricInterpretation", "CS"),
    0x00280008: ("NumberOfFrames", "IS"),
    0x00280010: ("Rows", "US"),
    0x00280011: ("Columns", "US"),
    0x00280030: ("PixelSpacing", "DS"),
    0x00280100: ("BitsAllocated", "US"),
    0x00280101: ("BitsStored", "US"),
    0x00280103: ("PixelRepresentation", "US"),
    0x00280120: ("PixelPaddingValue", "xs"),
    0x00281052: ("RescaleIntercept", "DS"),
    0x00281053: ("RescaleSlope", "DS"),
}
_CHARSET = 0x00080005  # SpecificCharacterSet
_ENHANCED = 0x52009230  # PerFrameFunctionalGroupsSequence: only whether it is there
SCANNER_TAGS = ("Manufacturer", "ManufacturerModelName", "ConvolutionKernel", "KVP", "BodyPartExamined")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_PRINTABLE = re.compile(rb"[\x00 -~]*")


class _Fallback(Exception):
    """The file is one to leave to pydicom."""


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


class _Bytes:
    """The file's bytes, read on demand in growing chunks."""

    def __init__(self, fh, size: int):
        self.fh, self.size = fh, size
        self.data = fh.read(min(size, _FIRST_READ))

    def need(self, end: int) -> None:
        """Make bytes [0, end) available; past the end of the file is pydicom's to report."""
        if end > self.size:
            raise _Fallback
        if end > len(self.data):
            more = max(end - len(self.data), len(self.data))
            self.data += self.fh.read(more)
            if end > len(self.data):
                raise _Fallback


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
            buf = _Bytes(fh, size)
            syntax, pos = _file_meta(buf)
            values, pixels, enhanced = _dataset(buf, pos, implicit=syntax == IMPLICIT_LE)
        return _header(path, values, pixels, enhanced, syntax)
    except (_Fallback, OSError, struct.error, UnicodeDecodeError, ValueError, OverflowError):
        return None


def _file_meta(buf: _Bytes) -> tuple[str, int]:
    """(TransferSyntaxUID, offset of the data set) from the group 0002 elements (explicit VR little endian)."""
    buf.need(132)
    if buf.data[128:132] != b"DICM":
        raise _Fallback
    pos, syntax = 132, None
    while True:
        buf.need(pos + 8)
        group, elem = struct.unpack_from("<HH", buf.data, pos)
        if group != 0x0002:
            break
        vr = buf.data[pos + 4:pos + 6]
        if vr in LONG_VRS:
            buf.need(pos + 12)
            length, head = struct.unpack_from("<L", buf.data, pos + 8)[0], 12
        elif vr in SHORT_VRS:
            length, head = struct.unpack_from("<H", buf.data, pos + 6)[0], 8
        else:
            raise _Fallback
        if length == _UNDEFINED:
            raise _Fallback
        buf.need(pos + head + length)
        if elem == 0x0010:
            syntax = _ascii(buf.data[pos + head:pos + head + length]).rstrip("\0 ")
        pos += head + length
    if not syntax or not _little_endian_syntax(syntax):
        raise _Fallback
    # pydicom takes implicit or explicit VR from the first element's VR bytes, whatever the syntax says
    buf.need(pos + 6)
    b0, b1 = buf.data[pos + 4], buf.data[pos + 5]
    if (not (0x40 < b0 < 0x5B and 0x40 < b1 < 0x5B)) != (syntax == IMPLICIT_LE):
        raise _Fallback
    return syntax, pos


def _little_endian_syntax(syntax: str) -> bool:
    """A transfer syntax pydicom knows whose data set is implicit or explicit VR little endian, not deflated."""
    from pydicom.uid import UID

    uid = UID(syntax)
    if syntax in _NATIVE:
        return True
    return bool(uid.is_transfer_syntax and uid.is_little_endian and not uid.is_implicit_VR and not uid.is_deflated)


def _element(buf: _Bytes, pos: int, implicit: bool) -> tuple[int, bytes | None, int, int]:
    """(tag, VR or None, value length, header length) of the element at ``pos``."""
    buf.need(pos + 8)
    group, elem = struct.unpack_from("<HH", buf.data, pos)
    tag = (group << 16) | elem
    if implicit or group == 0xFFFE:
        return tag, None, struct.unpack_from("<L", buf.data, pos + 4)[0], 8
    vr = buf.data[pos + 4:pos + 6]
    if vr in LONG_VRS:
        buf.need(pos + 12)
        return tag, vr, struct.unpack_from("<L", buf.data, pos + 8)[0], 12
    if vr in SHORT_VRS:
        return tag, vr, struct.unpack_from("<H", buf.data, pos + 6)[0], 8
    raise _Fallback


_EXPLICIT = struct.Struct("<HH2sH")  # group, element, VR, 16-bit length
_IMPLICIT = struct.Struct("<HHL")  # group, element, 32-bit length
_U32 = struct.Struct("<L")


def _dataset(buf: _Bytes, pos: int, implicit: bool) -> tuple[dict, tuple | None, bool]:
    """Top-level values of the needed tags ({tag: (VR or None, bytes)}), the pixel data's (offset, length or None,
    VR) and whether the per-frame functional groups are there. Stops at the pixel data. (The inner loop of the
    scan: ``_element`` written out.)"""
    values: dict[int, tuple[bytes | None, bytes]] = {}
    enhanced = False
    size, data = buf.size, buf.data
    while pos < size:
        if pos + 12 > len(data):
            buf.need(min(pos + 12, size))
            data = buf.data
        if implicit:
            group, elem, length = _IMPLICIT.unpack_from(data, pos)
            vr, head = None, 8
        else:
            group, elem, vr, length = _EXPLICIT.unpack_from(data, pos)
            if vr in LONG_VRS:
                buf.need(pos + 12)
                length, head = _U32.unpack_from(data, pos + 8)[0], 12
            elif vr in SHORT_VRS:
                head = 8
            else:
                raise _Fallback  # not a VR (or an item outside a sequence): pydicom decides
        tag = (group << 16) | elem
        if group == 0xFFFE:
            raise _Fallback
        if tag == PIXEL_DATA:
            return values, (pos + head, None if length == _UNDEFINED else length, vr), enhanced
        if tag in _FLOAT_PIXELS:
            return values, None, enhanced
        if tag == _ENHANCED:
            enhanced = True
        if length == _UNDEFINED:
            if not _undefined_is_sequence(buf, pos + head, tag, vr):
                raise _Fallback
            pos = _skip_sequence(buf, pos + head, implicit, 0)
            data = buf.data
            continue
        if tag == _CHARSET:
            buf.need(pos + head + length)
            data = buf.data
            _check_charset(data[pos + head:pos + head + length])
        if tag in TAGS:
            if tag in values or vr == b"UN":
                raise _Fallback
            end = pos + head + length
            if end > len(data):
                buf.need(end)
                data = buf.data
            values[tag] = (vr, data[pos + head:end])
        pos += head + length
    return values, None, enhanced


def _skip_sequence(buf: _Bytes, pos: int, implicit: bool, depth: int) -> int:
    """Offset just past the sequence of undefined length whose items start at ``pos``.

    pydicom parses such a sequence when it reads the file (a sequence of defined length only when its value is
    used), item by item and element by element; a parse that could fail there, or end elsewhere, is left to it:
    every item and element must be well formed and items of defined length must hold whole elements exactly. An
    item in an explicit VR data set whose first element has no VR is read as implicit VR, as pydicom does."""
    if depth > _MAX_DEPTH:
        raise _Fallback
    while True:
        tag, _, length, head = _element(buf, pos, True)
        if tag == _SEQ_END:
            return pos + head
        if tag != _ITEM:
            raise _Fallback
        pos += head
        item_implicit = implicit or _looks_implicit(buf, pos)
        if length == _UNDEFINED:
            pos = _item(buf, pos, None, item_implicit, depth)
        else:
            buf.need(pos + length)
            pos = _item(buf, pos, pos + length, item_implicit, depth)


def _looks_implicit(buf: _Bytes, pos: int) -> bool:
    """pydicom's test of an item's encoding: the first element's VR bytes are not two capital letters."""
    buf.need(pos + 6)
    b0, b1 = buf.data[pos + 4], buf.data[pos + 5]
    return not (0x40 < b0 < 0x5B and 0x40 < b1 < 0x5B)


def _item(buf: _Bytes, pos: int, end: int | None, implicit: bool, depth: int) -> int:
    """Offset just past the elements of an item starting at ``pos``: up to ``end`` exactly (defined length) or
    past its item delimiter (undefined length)."""
    while end is None or pos < end:
        tag, vr, length, head = _element(buf, pos, implicit)
        if tag == _ITEM_END and end is None:
            return pos + head
        if tag >> 16 == 0xFFFE:
            raise _Fallback
        if length == _UNDEFINED:
            if not _undefined_is_sequence(buf, pos + head, tag, vr):
                raise _Fallback
            pos = _skip_sequence(buf, pos + head, implicit, depth + 1)
        else:
            buf.need(pos + head + length)
            if tag == _CHARSET:
                _check_charset(buf.data[pos + head:pos + head + length])
            pos += head + length
    if pos != end:
        raise _Fallback
    return pos


def _check_charset(raw: bytes) -> None:
    """SpecificCharacterSet, which pydicom converts as it reads (at any depth): only the defined terms (an empty
    first one included); anything else pydicom corrects, warns about or fails on, and is left to it."""
    from pydicom.charset import python_encoding

    text = _ascii(raw)
    if text.endswith((" ", "\0")):
        text = text[:-1]
    if not all(term == "" or term in python_encoding for term in text.split("\\")):
        raise _Fallback


def _undefined_is_sequence(buf: _Bytes, pos: int, tag: int, vr: bytes | None) -> bool:
    """Whether pydicom reads an element of undefined length as a sequence: VR SQ or UN, or (implicit VR) a tag
    the dictionary calls SQ, or a private tag whose value starts with an item. Anything else it reads up to the
    first delimiter bytes, which is left to it."""
    if vr is not None:
        return vr in (b"SQ", b"UN")
    from pydicom.datadict import dictionary_VR

    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        buf.need(pos + 4)
        return struct.unpack_from("<L", buf.data, pos)[0] == 0xE000FFFE


def _ascii(raw: bytes) -> str:
    """Printable ASCII (and NUL padding) only: anything else may decode differently under the character set."""
    if not _PRINTABLE.fullmatch(raw):
        raise _Fallback
    return raw.decode("ascii")


def _strings(vr: str, raw: bytes) -> list[str]:
    """A text value split as pydicom splits it (CS/UI: trailing padding off, then split; LO/SH: split, then each
    value's trailing padding off; DS/IS: each value stripped)."""
    text = _ascii(raw)
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
    multi-valued DS. Anything else raises _Fallback. Values are remembered by their bytes (never mutated)."""
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
        raise _Fallback
    if vr in ("US", "xs"):
        if len(raw) != 2:
            raise _Fallback
        if vr == "xs":
            signed = (vr_file == b"SS") if vr_file is not None else pixel_representation == 1
            if vr_file not in (None, b"US", b"SS") or (vr_file is None and pixel_representation is None):
                raise _Fallback
            return struct.unpack("<h" if signed else "<H", raw)[0]
        return struct.unpack("<H", raw)[0]
    parts = _strings(vr, raw)
    if vr == "DS":
        if parts == [""]:
            return ""
        if not all(_NUMBER.fullmatch(p) for p in parts):
            raise _Fallback
        numbers = [_DecimalString(p) for p in parts]
        return numbers[0] if len(numbers) == 1 else numbers
    if vr == "IS":
        if parts == [""]:
            return ""
        if len(parts) != 1 or not _INTEGER.fullmatch(parts[0]):
            raise _Fallback
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
        raise _Fallback
    return _finite(tuple(float(x) for x in value))


def _static_fields(values: dict, pixels: tuple | None, enhanced: bool, syntax: str) -> tuple:
    """The header's fields that a series shares (all but path, position, instance number and scanner), the scanner
    fields, the pixel layout's fields after its offset, and the PixelRepresentation."""
    raw_pr = values.get(0x00280103)
    pixel_representation = _value(0x00280103, raw_pr, None) if raw_pr is not None else None
    v = {TAGS[tag][0]: _value(tag, entry, pixel_representation) for tag, entry in values.items()}
    if "SOPClassUID" not in v and "Modality" not in v:
        raise _Fallback  # pydicom says what is wrong with it
    for key in ("SOPClassUID", "Modality", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "Rows",
                "Columns", "NumberOfFrames", "InstanceNumber", "SliceThickness", "RescaleSlope", "RescaleIntercept",
                *SCANNER_TAGS):
        if isinstance(v.get(key), list) and not (key == "ConvolutionKernel" and _texts(v[key])):
            raise _Fallback  # a multi-valued value where one is expected: pydicom's text of it is left to pydicom
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
                  syntax in _NATIVE and v.get("NumberOfFrames", 1) == 1 and not enhanced, syntax == IMPLICIT_LE)
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
    import math

    if values is not None and not all(math.isfinite(x) for x in values):
        raise _Fallback
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
