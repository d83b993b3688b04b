"""Uncompressed slices read straight from the file: the stored values at the pixel data's offset, one read.

For a slice whose header ``dicom_scan`` read (``SliceHeader.layout`` says where its pixel data sit and that they
are one frame of 16-bit greyscale, uncompressed), ``read_slice_hu`` reads the stored values with one ``readinto``
into a numpy buffer and converts only the box the caller keeps, into the caller's array. It gives the values and
the refusals of the pydicom path (``dicom_decode.decode_slice_hu``), which the tests compare on every file:

- the stored values as pydicom's native decoder gives them (unused high bits masked or sign-extended from
  BitsStored; ``check_native_length``: the pixel data hold Rows x Columns values, one pad byte allowed);
- HU = float32(stored) * float32(slope) + float32(intercept), PixelPaddingValue -> -1024 (``dicom_decode.to_hu``);
- the plausibility check on the whole slice, from its stored range: the rescale is monotonic in float32, so the
  slice's HU lie between the HU of its smallest and largest stored values; only a slice whose range leaves
  [HU_MIN, HU_MAX] is converted whole and counted (``dicom_decode.check_plausible``).

Where the file does not hold what its header says (shorter than the pixel data, a length that disagrees with
Rows x Columns), or holds more after the pixel data than whole elements tagged after them, the pydicom path reads
it and raises its own error or gives its own values. ``int16`` output: where HU are integers
that fit (slope 1, integer intercept) they are written as int16, exactly the float32 values; ``NotExact`` says a
slice does not fit, so the caller reads the series as float32.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from sranet.runtime.dicom_decode import (
    HU_MAX,
    HU_MIN,
    SliceHeader,
    decode_slice_hu,
    rescale_into,
    rescale_values,
    to_hu,
)
from sranet.runtime.dicom_scan import LONG_VRS, PIXEL_DATA, SHORT_VRS

_MAX_TAIL = 1 << 20  # bytes after the pixel data the fast read looks through; more: pydicom reads the file

INT16 = (-32768, 32767)


class NotExact(Exception):  # noqa: N818 - a signal between the reader and build_volume, never seen by users
    """A slice's HU are not integers that fit int16: the series is read as float32 instead."""


def fast_readable(h: SliceHeader) -> bool:
    """Whether ``read_slice_hu`` reads ``h`` itself (else it goes through pydicom)."""
    lay = h.layout
    return lay is not None and lay.fast and h.frames == 1 and h.rows > 0 and h.columns > 0 and lay.length in _lengths(h)


def exact_int16(h: SliceHeader) -> bool:
    """Whether the slice's HU are integers (slope 1, integer intercept) read by ``read_slice_hu``, so an int16 copy
    holds exactly the float32 values (when they fit, which only the pixels say)."""
    if not fast_readable(h):
        return False
    lay = h.layout
    try:
        slope, intercept = (float(v) if v not in (None, "") else d for v, d in ((lay.slope, 1.0), (lay.intercept, 0.0)))
    except (TypeError, ValueError):
        return False
    return slope == 1.0 and float(intercept).is_integer() and abs(intercept) < 2**15


def _lengths(h: SliceHeader) -> tuple[int, int]:
    expected = h.rows * h.columns * 2
    return expected, expected + 1


def read_stored(h: SliceHeader) -> tuple[np.ndarray, int, int] | None:
    """The stored values (rows, columns) of a fast-readable slice as pydicom decodes them, with their minimum and
    maximum; None where the file is shorter than its pixel data (the pydicom path then says so)."""
    lay = h.layout
    arr = np.empty((h.rows, h.columns), "<i2" if lay.pixel_representation else "<u2")
    with open(h.path, "rb", buffering=0) as fh:
        fh.seek(lay.offset)
        if fh.readinto(memoryview(arr).cast("B")) != arr.nbytes or not _tail_ok(fh, lay.offset + lay.length,
                                                                                  lay.implicit):
            return None
    amin, amax = int(arr.min()), int(arr.max())
    shift = 16 - lay.bits_stored
    if shift:  # as pydicom: unused high bits are not part of the value (masked, or sign-extended)
        lo, hi = (-(1 << (lay.bits_stored - 1)), (1 << (lay.bits_stored - 1)) - 1) if lay.pixel_representation \
            else (0, (1 << lay.bits_stored) - 1)
        if amin < lo or amax > hi:
            np.left_shift(arr, shift, out=arr)
            np.right_shift(arr, shift, out=arr)
            amin, amax = int(arr.min()), int(arr.max())
    return arr, amin, amax


def _tail_ok(fh, end: int, implicit: bool) -> bool:
    """Whether what follows the pixel data (at ``end``) is nothing, or whole elements tagged after PixelData
    (trailing padding, private groups): what pydicom's full read would find there cannot change the slice's
    values. Anything else (an element tagged before PixelData, a value running past the end) is pydicom's."""
    size = os.fstat(fh.fileno()).st_size
    if size == end:
        return True
    if not 0 < size - end <= _MAX_TAIL:
        return False
    fh.seek(end)
    tail = fh.read(size - end)
    pos = 0
    while pos < len(tail):
        if pos + 8 > len(tail):
            return False
        group, element = struct.unpack_from("<HH", tail, pos)
        if (group << 16 | element) <= PIXEL_DATA or group == 0xFFFE:
            return False
        if implicit:
            length, head = struct.unpack_from("<L", tail, pos + 4)[0], 8
        elif tail[pos + 4:pos + 6] in LONG_VRS and pos + 12 <= len(tail):
            length, head = struct.unpack_from("<L", tail, pos + 8)[0], 12
        elif tail[pos + 4:pos + 6] in SHORT_VRS:
            length, head = struct.unpack_from("<H", tail, pos + 6)[0], 8
        else:
            return False
        if length == 0xFFFFFFFF:
            return False
        pos += head + length
    return pos == len(tail)


def read_slice_hu(h: SliceHeader, box: tuple[tuple[int, int], tuple[int, int]] | None = None,
                  out: np.ndarray | None = None) -> np.ndarray:
    """HU of slice ``h`` inside ``box`` ((h0, h1), (w0, w1); None: all of it) as (h1 - h0, w1 - w0), written into
    ``out`` when given (float32, or int16: exact integer HU, else NotExact). Refuses what ``decode_slice_hu``
    refuses; a slice that is not fast-readable goes through it."""
    (h0, h1), (w0, w1) = box if box is not None else ((0, h.rows), (0, h.columns))
    stored = read_stored(h) if fast_readable(h) else None
    if stored is None:  # the pydicom path, with its own errors
        hu = decode_slice_hu(h)[h0:h1, w0:w1]
        if out is None:
            return hu
        if out.dtype != np.float32:
            raise NotExact
        out[...] = hu
        return out
    arr, amin, amax = stored
    lay = h.layout
    slope, intercept = rescale_values(lay.slope, lay.intercept, h.path)
    with np.errstate(all="ignore"):  # a slope or intercept beyond float32 gives inf or NaN: refused below
        lo, hi = (np.float32(v) * np.float32(slope) + np.float32(intercept) for v in (amin, amax))
    lo, hi = (lo, hi) if slope > 0 else (hi, lo)
    if lay.padding is not None:  # padding becomes -1024 HU, inside the plausible range
        lo, hi = min(lo, np.float32(-1024.0)), max(hi, np.float32(-1024.0))
    if not (lo >= HU_MIN and hi <= HU_MAX):  # the slice is converted whole and counted (or refused)
        full = to_hu(arr, slope, intercept, h.path, lay.padding)
        lo_hi = (float(np.nanmin(full)), float(np.nanmax(full)))
    else:  # every pixel is plausible
        full, lo_hi = None, (float(lo), float(hi))
    part = arr[h0:h1, w0:w1]
    if out is None:
        out = np.empty(part.shape, np.float32)
    if out.dtype == np.int16:
        if not (INT16[0] <= lo_hi[0] and lo_hi[1] <= INT16[1]) or slope != 1.0 or not float(intercept).is_integer():
            raise NotExact
        np.add(part, int(intercept), out=out, dtype=np.int32, casting="unsafe")
    elif full is not None:
        out[...] = full[h0:h1, w0:w1]
        return out
    else:
        rescale_into(part, slope, intercept, out)
    if lay.padding is not None:
        try:
            out[part == int(lay.padding)] = -1024
        except (TypeError, ValueError, OverflowError):
            pass
    return out


__all__ = ["NotExact", "exact_int16", "fast_readable", "read_slice_hu", "read_stored"]
