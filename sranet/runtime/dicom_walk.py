"""The byte-level walk of a DICOM file that ``dicom_scan`` converts into a ``SliceHeader``.

``file_meta`` reads the 128-byte preamble, ``DICM`` and the file meta (group 0002) and gives the transfer syntax and
where the data set starts; ``walk_dataset`` reads the data set in implicit or explicit VR little endian up to the
pixel data, keeping the raw bytes of the elements in ``TAGS`` and skipping every other one (sequences of undefined
length item by item, as pydicom parses them) without converting it. Whatever pydicom might read differently raises
``Fallback``: the caller then leaves the file to pydicom.
"""

from __future__ import annotations

import re
import struct

# Transfer syntaxes whose data set is implicit / explicit VR little endian with native (uncompressed) pixel data.
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
NATIVE = {IMPLICIT_LE, EXPLICIT_LE}

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
_PRINTABLE = re.compile(rb"[\x00 -~]*")


class Fallback(Exception):
    """The file is one to leave to pydicom."""


class FileBytes:
    """The file's bytes, read on demand in growing chunks."""

    def __init__(self, fh, size: int):
        self.fh, self.size = fh, size
        self.data = fh.read(min(size, _FIRST_READ))

    def need(self, end: int) -> None:
        """Make bytes [0, end) available; past the end of the file is pydicom's to report."""
        if end > self.size:
            raise Fallback
        if end > len(self.data):
            more = max(end - len(self.data), len(self.data))
            self.data += self.fh.read(more)
            if end > len(self.data):
                raise Fallback


def file_meta(buf: FileBytes) -> tuple[str, int]:
    """(TransferSyntaxUID, offset of the data set) from the group 0002 elements (explicit VR little endian)."""
    buf.need(132)
    if buf.data[128:132] != b"DICM":
        raise Fallback
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
            raise Fallback
        if length == _UNDEFINED:
            raise Fallback
        buf.need(pos + head + length)
        if elem == 0x0010:
            syntax = ascii_text(buf.data[pos + head:pos + head + length]).rstrip("\0 ")
        pos += head + length
    if not syntax or not _little_endian_syntax(syntax):
        raise Fallback
    # pydicom takes implicit or explicit VR from the first element's VR bytes, whatever the syntax says
    buf.need(pos + 6)
    b0, b1 = buf.data[pos + 4], buf.data[pos + 5]
    if (not (0x40 < b0 < 0x5B and 0x40 < b1 < 0x5B)) != (syntax == IMPLICIT_LE):
        raise Fallback
    return syntax, pos


def _little_endian_syntax(syntax: str) -> bool:
    """A transfer syntax pydicom knows whose data set is implicit or explicit VR little endian, not deflated."""
    from pydicom.uid import UID

    uid = UID(syntax)
    if syntax in NATIVE:
        return True
    return bool(uid.is_transfer_syntax and uid.is_little_endian and not uid.is_implicit_VR and not uid.is_deflated)


def _element(buf: FileBytes, pos: int, implicit: bool) -> tuple[int, bytes | None, int, int]:
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
    raise Fallback


_EXPLICIT = struct.Struct("<HH2sH")  # group, element, VR, 16-bit length
_IMPLICIT = struct.Struct("<HHL")  # group, element, 32-bit length
_U32 = struct.Struct("<L")


def walk_dataset(buf: FileBytes, pos: int, implicit: bool) -> tuple[dict, tuple | None, bool]:
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
                raise Fallback  # not a VR (or an item outside a sequence): pydicom decides
        tag = (group << 16) | elem
        if group == 0xFFFE:
            raise Fallback
        if tag == PIXEL_DATA:
            return values, (pos + head, None if length == _UNDEFINED else length, vr), enhanced
        if tag in _FLOAT_PIXELS:
            return values, None, enhanced
        if tag == _ENHANCED:
            enhanced = True
        if length == _UNDEFINED:
            if not _undefined_is_sequence(buf, pos + head, tag, vr):
                raise Fallback
            pos = _skip_sequence(buf, pos + head, implicit, 0)
            data = buf.data
            continue
        if tag == _CHARSET:
            buf.need(pos + head + length)
            data = buf.data
            _check_charset(data[pos + head:pos + head + length])
        if tag in TAGS:
            if tag in values or vr == b"UN":
                raise Fallback
            end = pos + head + length
            if end > len(data):
                buf.need(end)
                data = buf.data
            values[tag] = (vr, data[pos + head:end])
        pos += head + length
    return values, None, enhanced


def _skip_sequence(buf: FileBytes, pos: int, implicit: bool, depth: int) -> int:
    """Offset just past the sequence of undefined length whose items start at ``pos``.

    pydicom parses such a sequence when it reads the file (a sequence of defined length only when its value is
    used), item by item and element by element; a parse that could fail there, or end elsewhere, is left to it:
    every item and element must be well formed and items of defined length must hold whole elements exactly. An
    item in an explicit VR data set whose first element has no VR is read as implicit VR, as pydicom does."""
    if depth > _MAX_DEPTH:
        raise Fallback
    while True:
        tag, _, length, head = _element(buf, pos, True)
        if tag == _SEQ_END:
            return pos + head
        if tag != _ITEM:
            raise Fallback
        pos += head
        item_implicit = implicit or _looks_implicit(buf, pos)
        if length == _UNDEFINED:
            pos = _item(buf, pos, None, item_implicit, depth)
        else:
            buf.need(pos + length)
            pos = _item(buf, pos, pos + length, item_implicit, depth)


def _looks_implicit(buf: FileBytes, pos: int) -> bool:
    """pydicom's test of an item's encoding: the first element's VR bytes are not two capital letters."""
    buf.need(pos + 6)
    b0, b1 = buf.data[pos + 4], buf.data[pos + 5]
    return not (0x40 < b0 < 0x5B and 0x40 < b1 < 0x5B)


def _item(buf: FileBytes, pos: int, end: int | None, implicit: bool, depth: int) -> int:
    """Offset just past the elements of an item starting at ``pos``: up to ``end`` exactly (defined length) or
    past its item delimiter (undefined length)."""
    while end is None or pos < end:
        tag, vr, length, head = _element(buf, pos, implicit)
        if tag == _ITEM_END and end is None:
            return pos + head
        if tag >> 16 == 0xFFFE:
            raise Fallback
        if length == _UNDEFINED:
            if not _undefined_is_sequence(buf, pos + head, tag, vr):
                raise Fallback
            pos = _skip_sequence(buf, pos + head, implicit, depth + 1)
        else:
            buf.need(pos + head + length)
            if tag == _CHARSET:
                _check_charset(buf.data[pos + head:pos + head + length])
            pos += head + length
    if pos != end:
        raise Fallback
    return pos


def _check_charset(raw: bytes) -> None:
    """SpecificCharacterSet, which pydicom converts as it reads (at any depth): only the defined terms (an empty
    first one included); anything else pydicom corrects, warns about or fails on, and is left to it."""
    from pydicom.charset import python_encoding

    text = ascii_text(raw)
    if text.endswith((" ", "\0")):
        text = text[:-1]
    if not all(term == "" or term in python_encoding for term in text.split("\\")):
        raise Fallback


def _undefined_is_sequence(buf: FileBytes, pos: int, tag: int, vr: bytes | None) -> bool:
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


def ascii_text(raw: bytes) -> str:
    """Printable ASCII (and NUL padding) only: anything else may decode differently under the character set."""
    if not _PRINTABLE.fullmatch(raw):
        raise Fallback
    return raw.decode("ascii")
