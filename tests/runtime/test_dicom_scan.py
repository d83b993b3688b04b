"""The byte-level header reader and the direct pixel reader against pydicom, file by file.

For every DICOM file the tests have (the real files under tests/data, the GE series, series written by both of the
project's writers, plain, tilted, gapped, implicit VR, compressed, enhanced; the damaged and odd inputs the
robustness matrix builds; truncated and byte-flipped copies) ``scan_header(path)`` is either None (pydicom reads the
file) or the ``SliceHeader`` that ``header_from_dataset`` builds from pydicom's data set, field by field; and
``read_slice_hu`` gives exactly the values, or the same error, as ``decode_slice_hu`` (whole slice, a box, int16).
Files the reader must leave to pydicom are checked to give None.
"""

from __future__ import annotations

import shutil
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from sranet.runtime.dicom_decode import decode_slice_hu, header_from_dataset, read_dataset
from sranet.runtime.dicom_pixels import NotExact, read_slice_hu
from sranet.runtime.dicom_scan import scan_header
from tests.helpers import REAL_CT, phantom_hu, unpack_ge_series, write_dicom_series

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the values written on purpose


# -- the comparison -------------------------------------------------------------------------------------------------
def _outcome(fn):
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - the error is what is compared
        return exc


def _same(a, b) -> bool:
    if isinstance(a, Exception) or isinstance(b, Exception):
        return type(a) is type(b) and str(a) == str(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def reference_header(path: Path):
    """What the pydicom path of ``read_header`` gives: ``header_from_dataset`` of ``dcmread``, or its error."""
    def read():
        ds = read_dataset(path, header_only=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return header_from_dataset(ds, path)
    return _outcome(read)


def differences(path: Path) -> list[str]:
    """How the fast readers' answer for ``path`` differs from pydicom's (empty: the same, or a fallback)."""
    fast = _outcome(lambda: scan_header(path))
    if isinstance(fast, Exception):
        return [f"{path.name}: scan_header raised {fast!r}"]
    if fast is None:
        return []
    ref = reference_header(path)
    if isinstance(ref, Exception):
        return [f"{path.name}: scanned a header, pydicom raises {ref!r}"]
    out = [f"{path.name}: {name} {getattr(fast, name)!r} != pydicom's {getattr(ref, name)!r}"
           for name in ref.__dataclass_fields__ if name != "layout" and getattr(fast, name) != getattr(ref, name)]
    out += [f"{path.name}: {name} is {type(getattr(fast, name)).__name__}, pydicom's "
            f"{type(getattr(ref, name)).__name__}" for name in ("series_number", "instance", "rows", "columns")
            if type(getattr(fast, name)) is not type(getattr(ref, name))]
    if out:
        return out
    whole = _outcome(lambda: decode_slice_hu(ref))
    if not _same(_outcome(lambda: read_slice_hu(fast)), whole):
        out.append(f"{path.name}: read_slice_hu differs from decode_slice_hu ({_brief(whole)})")
    if ref.rows > 4 and ref.columns > 6:
        box = ((1, ref.rows - 2), (3, ref.columns - 2))
        part = whole if isinstance(whole, Exception) else whole[1:-2, 3:-2]
        if not _same(_outcome(lambda: read_slice_hu(fast, box)), part):
            out.append(f"{path.name}: the box differs")
        small = _outcome(lambda: read_slice_hu(fast, box, np.empty(part.shape if not isinstance(
            part, Exception) else (ref.rows - 3, ref.columns - 5), np.int16)))
        if not isinstance(small, NotExact) and not _same(
                small if isinstance(small, Exception) else small.astype(np.float32), part):
            out.append(f"{path.name}: the int16 box differs")
    return out


def _brief(x) -> str:
    return repr(x)[:200] if isinstance(x, Exception) else f"{x.dtype} {x.shape}"


def assert_same(paths) -> int:
    """Every file of ``paths`` read the same both ways; returns how many were read by the scanner."""
    paths = [p for p in paths if p.is_file()]
    problems = [d for p in paths for d in differences(p)]
    assert not problems, "\n".join(problems[:30])
    return sum(scan_header(p) is not None for p in paths)


def dicom_files(root: Path) -> list[Path]:
    """The DICOM files under ``root``: .dcm, and files without a suffix (a DICOMDIR tree's slices)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".dcm", "") and p.name != "LICENSE")


# -- files ----------------------------------------------------------------------------------------------------------
def _raw(ds, tag: int, vr: str, value: bytes) -> None:
    """Put ``value`` into ``ds`` as the element's bytes, exactly (no validation, no formatting)."""
    ds._dict[BaseTag(tag)] = RawDataElement(BaseTag(tag), vr, len(value), value, 0, False, True)


def small_slice() -> pydicom.Dataset:
    """The first 24 x 20 CT slice the corpus wrote with tests.helpers.write_dicom_series."""
    return pydicom.dcmread(next(iter(sorted(SMALL.glob("*.dcm")))))


SMALL: Path = Path()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Synthetic files: both writers' series (plain, tilted, gapped, non-axial, rescaled), implicit VR, RLE, and
    one file per odd value or pixel format."""
    global SMALL
    root = tmp_path_factory.mktemp("scan")
    SMALL = write_dicom_series(root / "helpers", phantom_hu((3, 24, 20), seed=1))
    from sranet.data.dicom_write import write_dicom_series as write_series

    hu = phantom_hu((3, 16, 12), seed=2)
    write_series(hu, (2.5, 0.7, 0.8), root / "writer")
    write_series(hu, (1.25, 0.5, 0.5), root / "writer_scaled", rescale_slope=0.5, rescale_intercept=-1000.5,
                 origin_mm=(-12.345, 6.0, -800.125))
    sag = np.array([[-1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])  # sagittal: axis 0 along -x, H along +z, W along -y
    write_series(hu, (1.0, 0.5, 0.5), root / "writer_sagittal", direction=sag)
    odd = root / "odd"
    odd.mkdir()
    for name, edit in ODD_FILES.items():
        ds = small_slice()
        syntax = edit(ds)
        if syntax is not None:
            ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(odd / f"{name}.dcm", enforce_file_format=True)
    return root


def _stored(ds, values: np.ndarray) -> None:
    ds.PixelData = values.astype("<i2" if ds.PixelRepresentation else "<u2").tobytes()


def _bits12(ds, signed: int):
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, signed
    values = np.arange(ds.Rows * ds.Columns).reshape(ds.Rows, ds.Columns) % 4096
    values[0, :3] = (0xF005, 0x1234, 0x8FFF) if not signed else (-3000, 0x1800, -0x1800)  # bits above BitsStored
    _stored(ds, values)
    ds.RescaleIntercept = -2048 if not signed else 0


def _padding(ds, vr: str, value: int, implicit: bool):
    ds.PixelPaddingValue = value
    ds["PixelPaddingValue"].VR = vr
    arr = ds.pixel_array.copy()
    arr[:2] = value
    _stored(ds, arr)
    return ImplicitVRLittleEndian if implicit else None


def _implausible(ds, fraction: float):
    arr = ds.pixel_array.copy().ravel()
    arr[: int(fraction * arr.size)] = 30000
    _stored(ds, arr.reshape(ds.Rows, ds.Columns))
    ds.RescaleSlope = 1


def _extra_byte(ds):
    ds.PixelData = ds.PixelData + b"\0\0"  # one even pad beyond the one byte pydicom allows


ODD_FILES = {
    "implicit": lambda ds: ImplicitVRLittleEndian,
    "bits12_unsigned": lambda ds: _bits12(ds, 0),
    "bits12_signed": lambda ds: _bits12(ds, 1),
    "bits12_signed_implicit": lambda ds: _bits12(ds, 1) or ImplicitVRLittleEndian,
    "padding_ss": lambda ds: _padding(ds, "SS", -2000, False),
    "padding_us": lambda ds: _padding(ds, "US", 0, False),
    "padding_implicit": lambda ds: _padding(ds, "SS", -2000, True),
    "padding_implicit_unsigned": lambda ds: setattr(ds, "PixelRepresentation", 0) or setattr(
        ds, "RescaleIntercept", -2048) or _padding(ds, "US", 65535, True),
    "rows_zero": lambda ds: setattr(ds, "Rows", 0) or setattr(ds, "PixelData", b""),
    "slope_fraction": lambda ds: setattr(ds, "RescaleSlope", "0.75") or setattr(ds, "RescaleIntercept", "-1024.5"),
    "slope_negative": lambda ds: setattr(ds, "RescaleSlope", -1) or setattr(ds, "RescaleIntercept", 1024),
    "slope_empty": lambda ds: _raw(ds, 0x00281053, "DS", b""),
    "slope_zero": lambda ds: setattr(ds, "RescaleSlope", 0),
    "slope_nan": lambda ds: _raw(ds, 0x00281053, "DS", b"NaN "),
    "intercept_inf": lambda ds: _raw(ds, 0x00281052, "DS", b"inf "),
    "intercept_text": lambda ds: _raw(ds, 0x00281052, "DS", b"abc "),
    "intercept_big": lambda ds: setattr(ds, "RescaleIntercept", 40000),
    "implausible_few": lambda ds: _implausible(ds, 0.01),
    "implausible_many": lambda ds: _implausible(ds, 0.2),
    "extra_bytes": _extra_byte,
    "pixels_short": lambda ds: setattr(ds, "PixelData", ds.PixelData[:-40]),
    "rows_wrong": lambda ds: setattr(ds, "Rows", 20),
    "columns_huge": lambda ds: setattr(ds, "Columns", 60000),
    "rows_missing": lambda ds: delattr(ds, "Rows"),
    "no_pixels": lambda ds: delattr(ds, "PixelData"),
    "bits8": lambda ds: setattr(ds, "BitsAllocated", 8) or setattr(ds, "BitsStored", 8),
    "rgb": lambda ds: setattr(ds, "SamplesPerPixel", 3),
    "photometric_missing": lambda ds: delattr(ds, "PhotometricInterpretation"),
    "photometric_rgb": lambda ds: setattr(ds, "PhotometricInterpretation", "RGB"),
    "photometric_monochrome1": lambda ds: setattr(ds, "PhotometricInterpretation", "MONOCHROME1"),
    "samples_missing": lambda ds: delattr(ds, "SamplesPerPixel"),
    "bits_stored_missing": lambda ds: delattr(ds, "BitsStored"),
    "pixel_representation_missing": lambda ds: delattr(ds, "PixelRepresentation"),
    "frames_0": lambda ds: setattr(ds, "NumberOfFrames", 0),
    "frames_1": lambda ds: setattr(ds, "NumberOfFrames", 1),
    "frames_2": lambda ds: setattr(ds, "NumberOfFrames", 2),
    "mr": lambda ds: setattr(ds, "Modality", "MR"),
    "modality_lower": lambda ds: _raw(ds, 0x00080060, "CS", b"ct"),
    "modality_two": lambda ds: _raw(ds, 0x00080060, "CS", b"CT\\MR "),
    "localizer": lambda ds: setattr(ds, "ImageType", ["ORIGINAL", "PRIMARY", "LOCALIZER"]),
    "image_type_one": lambda ds: setattr(ds, "ImageType", "AXIAL"),
    "image_type_empty": lambda ds: _raw(ds, 0x00080008, "CS", b""),
    "series_number_zeros": lambda ds: _raw(ds, 0x00200011, "IS", b"003 "),
    "series_number_zero": lambda ds: _raw(ds, 0x00200011, "IS", b"0 "),
    "series_number_float": lambda ds: _raw(ds, 0x00200011, "IS", b"3.0 "),
    "series_number_empty": lambda ds: _raw(ds, 0x00200011, "IS", b""),
    "instance_spaces": lambda ds: _raw(ds, 0x00200013, "IS", b" +7 "),
    "instance_text": lambda ds: _raw(ds, 0x00200013, "IS", b"x7"),
    "instance_missing": lambda ds: delattr(ds, "InstanceNumber"),
    "uid_nul": lambda ds: _raw(ds, 0x0020000E, "UI", b"1.2.3.4\0"),
    "uid_space": lambda ds: _raw(ds, 0x0020000E, "UI", b"1.2.3.44 "),
    "uid_two": lambda ds: _raw(ds, 0x0020000E, "UI", b"1.2.3\\4.5\0"),
    "description_empty": lambda ds: _raw(ds, 0x0008103E, "LO", b""),
    "description_padded": lambda ds: _raw(ds, 0x0008103E, "LO", b" PELVIS  \0"),
    "description_two": lambda ds: _raw(ds, 0x0008103E, "LO", b"A\\B "),
    "charset_latin1": lambda ds: setattr(ds, "SpecificCharacterSet", "ISO_IR 100"),
    "description_latin1": lambda ds: setattr(ds, "SeriesDescription", "Hüfte"),
    "description_utf8": lambda ds: setattr(ds, "SpecificCharacterSet", "ISO_IR 192") or setattr(
        ds, "SeriesDescription", "骨盤"),
    "description_control": lambda ds: _raw(ds, 0x0008103E, "LO", b"A\tB\x1b$B"),
    "kernel_two": lambda ds: setattr(ds, "ConvolutionKernel", ["FC03", "AIDR 3D"]),
    "kvp_float": lambda ds: _raw(ds, 0x00180060, "DS", b" 120.0 "),
    "kvp_zero": lambda ds: _raw(ds, 0x00180060, "DS", b"0 "),
    "kvp_exponent": lambda ds: _raw(ds, 0x00180060, "DS", b"1.2E+2"),
    "manufacturer": lambda ds: setattr(ds, "Manufacturer", "ACME Medical") or setattr(ds, "BodyPartExamined", "HIP"),
    "modality_missing": lambda ds: delattr(ds, "Modality"),
    "thickness_empty": lambda ds: _raw(ds, 0x00180050, "DS", b""),
    "thickness_two": lambda ds: _raw(ds, 0x00180050, "DS", b"1\\2 "),
    "thickness_text": lambda ds: _raw(ds, 0x00180050, "DS", b"thin"),
    "position_exponent": lambda ds: _raw(ds, 0x00200032, "DS", b"-6.0E+1\\+5.0e1\\-.7E3 "),
    "position_spaces": lambda ds: _raw(ds, 0x00200032, "DS", b" -60 \\ -50\\-700  "),
    "position_nan": lambda ds: _raw(ds, 0x00200032, "DS", b"nan\\0\\0 "),
    "position_two": lambda ds: _raw(ds, 0x00200032, "DS", b"1\\2 "),
    "position_empty": lambda ds: _raw(ds, 0x00200032, "DS", b""),
    "position_missing": lambda ds: delattr(ds, "ImagePositionPatient"),
    "position_long": lambda ds: _raw(ds, 0x00200032, "DS", b"-60.000000000000001\\0\\0 "),
    "position_empty_value": lambda ds: _raw(ds, 0x00200032, "DS", b"1\\\\3 "),
    "orientation_bad": lambda ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 1, 0, 0]),
    "orientation_five": lambda ds: _raw(ds, 0x00200037, "DS", b"1\\0\\0\\0\\1 "),
    "spacing_missing": lambda ds: delattr(ds, "PixelSpacing"),
    "spacing_inf": lambda ds: _raw(ds, 0x00280030, "DS", b"inf\\1 "),
    "rows_as_ul": lambda ds: _raw(ds, 0x00280010, "UL", struct.pack("<L", 24)),
    "rows_two": lambda ds: _raw(ds, 0x00280010, "US", struct.pack("<HH", 24, 24)),
    "sop_missing": lambda ds: delattr(ds, "SOPClassUID") or delattr(ds, "Modality"),
    "enhanced_tag": lambda ds: _enhanced_stub(ds),
    "nested_sequences": lambda ds: _nested(ds),
}


def _enhanced_stub(ds):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds.PerFrameFunctionalGroupsSequence = Sequence([Dataset()])


def _nested(ds):
    """Sequences of undefined length inside sequences (and a needed tag's keyword inside an item)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    inner = Dataset()
    inner.Rows = 99
    inner.CodeValue = "X"
    middle = Dataset()
    middle.ConceptNameCodeSequence = Sequence([inner, Dataset()])
    middle.Modality = "MR"
    ds.ReferencedImageSequence = Sequence([middle])
    ds["ReferencedImageSequence"].is_undefined_length = True
    ds.ReferencedImageSequence[0]["ConceptNameCodeSequence"].is_undefined_length = True


# -- tests ----------------------------------------------------------------------------------------------------------
def test_real_files_read_the_same(tmp_path):
    files = dicom_files(REAL_CT)
    ge = sorted(unpack_ge_series(tmp_path / "ge").glob("*.dcm"))
    assert len(files) > 25 and len(ge) == 28
    assert assert_same(files + ge) >= len(ge) + 10  # the uncompressed ones go through the scanner


def test_written_series_read_the_same(corpus):
    files = sorted((corpus / "helpers").glob("*.dcm")) + sorted(corpus.glob("writer*/*.dcm"))
    assert assert_same(files) == len(files) == 12


def test_odd_values_and_pixel_formats_read_the_same(corpus):
    files = sorted((corpus / "odd").glob("*.dcm"))
    assert len(files) == len(ODD_FILES)
    scanned = assert_same(files)
    assert scanned >= len(files) // 2  # the scanner still reads the ordinary ones


@pytest.mark.parametrize("name", ["implicit", "bits12_signed", "padding_implicit", "slope_fraction",
                                  "series_number_zeros", "kvp_float", "position_exponent", "nested_sequences",
                                  "charset_latin1"])
def test_ordinary_variants_are_read_by_the_scanner(corpus, name):
    h = scan_header(corpus / "odd" / f"{name}.dcm")
    assert h is not None and h.layout is not None and h.layout.fast


@pytest.mark.parametrize("name", ["description_latin1", "description_utf8", "description_control", "modality_two",
                                  "series_number_float", "instance_text", "position_nan", "position_two",
                                  "rows_as_ul", "rows_two", "sop_missing", "thickness_two", "uid_two"])
def test_values_the_scanner_cannot_vouch_for_fall_back(corpus, name):
    assert scan_header(corpus / "odd" / f"{name}.dcm") is None


def _series_file(corpus) -> Path:
    return sorted((corpus / "helpers").glob("*.dcm"))[1]


def test_files_to_leave_to_pydicom_fall_back(corpus, tmp_path):
    src = _series_file(corpus)
    data = src.read_bytes()
    assert scan_header(src) is not None
    ds = pydicom.dcmread(src)
    cases = {}
    # no preamble: a bare data set (pydicom reads it with force)
    cases["no_preamble"] = data[132:]
    cases["no_dicm"] = data[:128] + b"XXXX" + data[132:]
    # big endian: the data set's byte order
    big = tmp_path / "big.dcm"
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pydicom.dcmwrite(big, ds, little_endian=False, implicit_vr=False)
    cases["big_endian"] = big.read_bytes()
    # deflated: the data set is zlib-compressed after the file meta
    start = _dataset_start(data)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = packer.compress(data[start:]) + packer.flush()
    cases["deflated"] = _with_syntax(data[:start], "1.2.840.10008.1.2.1.99") + deflated
    # an unknown transfer syntax
    cases["unknown_syntax"] = _with_syntax(data[:start], "1.2.3.4.5.6") + data[start:]
    # an element whose length runs past the end of the file
    at = data.index(b"\x08\x00\x60\x00CS")  # Modality
    cases["past_eof"] = data[:at + 6] + struct.pack("<H", 0xFFF0) + data[at + 8:at + 200]
    cases["cut_in_header"] = data[:at + 3]
    # explicit syntax, implicit data set (pydicom detects it from the first element and reads it as implicit)
    ds2 = pydicom.dcmread(src)
    ds2.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    implicit = tmp_path / "implicit.dcm"
    ds2.save_as(implicit, enforce_file_format=True)
    raw = implicit.read_bytes()
    cases["implicit_data_explicit_syntax"] = _with_syntax(raw[:_dataset_start(raw)], ExplicitVRLittleEndian) + \
        raw[_dataset_start(raw):]
    exp_start = _dataset_start(data)
    cases["explicit_data_implicit_syntax"] = _with_syntax(data[:exp_start], ImplicitVRLittleEndian) + data[exp_start:]
    # an item delimiter at the top level (pydicom ends the data set there)
    cases["item_end_at_top"] = data[:at] + b"\xfe\xff\x0d\xe0\0\0\0\0" + data[at:]
    # tags out of order: a Rows after the pixel data's group
    cases["unordered"] = data[:at] + b"\x28\x00\x10\x00US\x02\x00\x20\x00" + data[at:]
    # an item inside a sequence inside an item of defined length that runs past its sequence (pydicom fails
    # parsing it; skipping the outer item by its length would not notice)
    nested = (corpus / "odd" / "nested_sequences.dcm").read_bytes()
    inner = nested.index(b"\x40\x00\x43\xa0SQ\0\0\xff\xff\xff\xff\xfe\xff\x00\xe0") + 16
    length = struct.unpack_from("<L", nested, inner)[0]
    cases["inner_item_overrun"] = nested[:inner] + struct.pack("<L", length + 0x9E) + nested[inner + 4:]
    # a SpecificCharacterSet pydicom cannot look up (it fails reading the file)
    cases["charset_damaged"] = data[:start] + b"\x08\x00\x05\x00CS\x0a\x00ISO_I\0 100" + data[start:]
    for name, raw_bytes in cases.items():
        (tmp_path / f"{name}.dcm").write_bytes(raw_bytes)
    got = {name: scan_header(tmp_path / f"{name}.dcm") for name in cases}
    assert all(h is None for h in got.values()), [n for n, h in got.items() if h is not None]
    assert_same([tmp_path / f"{name}.dcm" for name in cases])


def test_what_follows_the_pixel_data(corpus, tmp_path):
    """Trailing padding after the pixel data keeps the fast read; an element tagged before the pixel data (pydicom's
    full read takes that RescaleSlope) or a damaged tail sends the slice through pydicom."""
    src = _series_file(corpus)
    data = src.read_bytes()
    tails = {"padding": b"\xfc\xff\xfc\xffOB\0\0" + struct.pack("<L", 4) + b"\0" * 4,
             "slope_after": b"\x28\x00\x53\x10DS\x02\x002 ", "cut_tail": b"\xfc\xff\xfc\xffOB\0\0\xff\0\0\0",
             "odd_byte": b"\0"}
    files = []
    for name, tail in tails.items():
        (tmp_path / f"{name}.dcm").write_bytes(data + tail)
        files.append(tmp_path / f"{name}.dcm")
    assert assert_same(files) == len(files)  # every header is the scanner's; the differences are in the pixels
    hu = {name: decode_slice_hu(scan_header(f)) for name, f in zip(tails, files, strict=True)}
    assert np.array_equal(hu["slope_after"], 2 * hu["padding"] + 1024)  # pydicom's answer, which the reader gave


def _dataset_start(data: bytes) -> int:
    pos = 132
    while struct.unpack_from("<H", data, pos)[0] == 2:
        vr = data[pos + 4:pos + 6]
        if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR"):
            pos += 12 + struct.unpack_from("<L", data, pos + 8)[0]
        else:
            pos += 8 + struct.unpack_from("<H", data, pos + 6)[0]
    return pos


def _with_syntax(meta: bytes, syntax: str) -> bytes:
    """The file meta ``meta`` (preamble included) with its TransferSyntaxUID replaced and the group length fixed."""
    pos, out = 132, bytearray(meta[:132])
    elements = bytearray()
    while pos < len(meta):
        tag = meta[pos:pos + 4]
        vr = meta[pos + 4:pos + 6]
        if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR"):
            n, head = struct.unpack_from("<L", meta, pos + 8)[0], 12
        else:
            n, head = struct.unpack_from("<H", meta, pos + 6)[0], 8
        value = meta[pos + head:pos + head + n]
        if tag == b"\x02\x00\x10\x00":
            value = syntax.encode() + (b"\0" if len(syntax) % 2 else b"")
            elements += tag + b"UI" + struct.pack("<H", len(value)) + value
        elif tag != b"\x02\x00\x00\x00":
            elements += meta[pos:pos + head] + value
        pos += head + n
    out += b"\x02\x00\x00\x00UL\x04\x00" + struct.pack("<L", len(elements)) + elements
    return bytes(out)


def test_truncated_copies_read_the_same(corpus, tmp_path):
    """A slice cut at every few bytes of its header and at places in its pixel data."""
    src = sorted((corpus / "odd").glob("padding_implicit.dcm"))[0]
    data = src.read_bytes()
    start = _dataset_start(data)
    cuts = [*range(0, start + 8, 7), *range(start, len(data) - 24 * 20 * 2, 3), len(data) - 1, len(data) - 2,
            len(data) - 100]
    files = []
    for i, cut in enumerate(cuts):
        f = tmp_path / f"cut{i:04d}.dcm"
        f.write_bytes(data[:cut])
        files.append(f)
    assert_same(files)


def test_flipped_bytes_read_the_same(corpus, tmp_path):
    """Copies of real and written slices with a few header bytes changed: a changed length, tag or VR is either
    found and left to pydicom or read as pydicom reads it."""
    rng = np.random.default_rng(7)
    sources = [_series_file(corpus), corpus / "odd" / "implicit.dcm", corpus / "odd" / "nested_sequences.dcm",
               REAL_CT / "pydicom" / "CT_small.dcm"]
    files = []
    for k in range(240):
        src = sources[k % len(sources)]
        data = bytearray(src.read_bytes())
        end = _dataset_start(bytes(data)) + 1200 if k % 2 else 400
        for at in rng.integers(128, min(end, len(data)), int(rng.integers(1, 4))):
            data[int(at)] = int(rng.integers(0, 256)) if k % 3 else data[int(at)] ^ 0x01
        f = tmp_path / f"flip{k:04d}.dcm"
        f.write_bytes(bytes(data))
        files.append(f)
    assert_same(files)


def test_robustness_matrix_edits_read_the_same(tmp_path):
    """The damaged slices the robustness matrix builds (tests/robustness/matrix_inputs.py) and its non-DICOM files."""
    series = write_dicom_series(tmp_path / "s", phantom_hu((2, 40, 40), seed=3))
    edits = {
        "slope_nan": ("RescaleSlope", "NaN"), "intercept_inf": ("RescaleIntercept", "inf"),
        "slope_zero": ("RescaleSlope", 0), "position_nan": ("ImagePositionPatient", ["nan", 0, 0]),
        "orientation": ("ImageOrientationPatient", [1, 0, 0, 0, 0, -1]), "columns": ("Columns", 38),
        "rows": ("Rows", 44), "huge": ("Rows", 60000), "mr": ("Modality", "MR"),
        "localizer": ("ImageType", ["ORIGINAL", "PRIMARY", "LOCALIZER"]),
    }
    files = []
    src = sorted(series.glob("*.dcm"))[0]
    for name, (tag, value) in edits.items():
        ds = pydicom.dcmread(src)
        setattr(ds, tag, value)
        ds.save_as(tmp_path / f"{name}.dcm")
        files.append(tmp_path / f"{name}.dcm")
    for name, tag in (("no_position", "ImagePositionPatient"), ("no_spacing", "PixelSpacing"),
                      ("no_pixels", "PixelData"), ("no_rows", "Rows")):
        ds = pydicom.dcmread(src)
        delattr(ds, tag)
        ds.save_as(tmp_path / f"{name}.dcm")
        files.append(tmp_path / f"{name}.dcm")
    ds = pydicom.dcmread(src)
    ds.PixelData = ds.PixelData + b"\0" * 160
    ds.save_as(tmp_path / "extra_rows.dcm")
    data = src.read_bytes()
    raw = {"truncated.dcm": data[:-3000], "truncated_200.dcm": data[:-200], "garbage.dcm": b"\0" * 128 + b"DICM"
           + np.random.default_rng(1).bytes(400), "DICOMDIR": b"\0" * 200, "readme.txt.dcm": b"notes",
           "empty.dcm": b""}
    for name, content in raw.items():
        (tmp_path / name).write_bytes(content)
    files += [tmp_path / "extra_rows.dcm", *(tmp_path / n for n in raw)]
    assert_same(files)


def test_a_series_loads_the_same_through_either_reader(corpus, tmp_path, monkeypatch):
    """load_volume on a written series: the scanner's path and pydicom's give the same volume (float32 and int16)."""
    from sranet.runtime import dicom_scan
    from sranet.runtime.io import load_volume

    folder = tmp_path / "series"
    shutil.copytree(corpus / "writer_scaled", folder)
    fast = load_volume(folder, roi="0:3,2:14,1:11")
    compact = load_volume(corpus / "writer", compact=True)
    monkeypatch.setattr(dicom_scan, "scan_header", lambda path: None)
    slow = load_volume(folder, roi="0:3,2:14,1:11")
    plain = load_volume(corpus / "writer")
    assert fast.hu.dtype == slow.hu.dtype == np.float32 and np.array_equal(fast.hu, slow.hu)
    assert (fast.spacing_mm, fast.origin_mm, fast.qc) == (slow.spacing_mm, slow.origin_mm, slow.qc)
    assert compact.hu.dtype == np.int16 and np.array_equal(compact.hu.astype(np.float32), plain.hu)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_many_mutations_read_the_same(corpus, tmp_path, seed):
    """Thousands of mutated copies (flipped header and sequence bytes, removed or odd tags as test_fuzz_io makes
    them) of explicit and implicit slices, with sequences of defined and undefined length, a real slice and the
    GE series' first file."""
    from tests.runtime.test_fuzz_io import _mutate

    sources = [_series_file(corpus), corpus / "odd" / "implicit.dcm", corpus / "odd" / "nested_sequences.dcm",
               corpus / "odd" / "padding_implicit.dcm", REAL_CT / "pydicom" / "CT_small.dcm",
               sorted(unpack_ge_series(tmp_path / "ge").glob("*.dcm"))[0]]
    rng = np.random.default_rng(100 + seed)
    problems, scanned = [], 0
    for k in range(1500):
        src, out = sources[k % len(sources)], tmp_path / f"m{k}.dcm"
        if k % 4 == 0:
            _mutate(rng, src, out)
        else:
            data = bytearray(src.read_bytes())
            seq = data.find(b"\x08\x00\x40\x11")  # ReferencedImageSequence, where there is one
            lo, hi = (seq, seq + 200) if seq > 0 and k % 2 else (128, min(len(data), _dataset_start(bytes(data)) + 2000))
            for at in rng.integers(lo, hi, int(rng.integers(1, 5))):
                data[int(at)] = int(rng.integers(0, 256)) if k % 3 else data[int(at)] ^ (1 << int(rng.integers(0, 8)))
            out.write_bytes(bytes(data))
        problems += differences(out)
        scanned += scan_header(out) is not None
        out.unlink()
    assert not problems, "\n".join(problems[:30])
    assert scanned > 300  # the mutations leave many files the scanner still reads
