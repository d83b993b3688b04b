"""Stacking CT slices into a ``Volume``: the step a series folder, a single slice and an enhanced multi-frame object
share. The slices' headers are already read and checked for being CT images; here their geometry is checked and
planned (``dicom_geometry.plan_stack``) and only the pixels the ROI needs are decoded: uncompressed slices straight
from their files (``dicom_pixels``), on a few threads for a regular stack (file reads and numpy release the GIL).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sranet.errors import GeometryError
from sranet.runtime.dicom_decode import SliceHeader
from sranet.runtime.dicom_geometry import StackPlan, assemble, plan_stack
from sranet.runtime.dicom_pixels import NotExact, exact_int16, fast_readable, read_slice_hu
from sranet.runtime.limits import check_volume_bytes
from sranet.runtime.roi import Roi, roi_box
from sranet.runtime.volume import Volume


def check_consistent(hs: list[SliceHeader], where: Path) -> None:
    """Same size, orientation and pixel spacing for every slice; else GeometryError naming two that differ."""
    first = hs[0]
    for h in hs[1:]:
        if (h.rows, h.columns) != (first.rows, first.columns):
            raise GeometryError(f"slices differ in size: {first.path.name} is {first.rows}x{first.columns}, "
                                f"{h.path.name} is {h.rows}x{h.columns}.", path=where,
                                hint="The folder mixes series; choose one with series=.")
        if not np.allclose(h.orientation, first.orientation, atol=1e-3):
            raise GeometryError(f"inconsistent orientation: {first.path.name} has ImageOrientationPatient "
                                f"{list(first.orientation)}, {h.path.name} has {list(h.orientation)}.", path=where,
                                hint="The series mixes planes (e.g. a reformat); choose one series or re-export.")
        if not np.allclose(h.pixel_spacing, first.pixel_spacing, rtol=1e-3):
            raise GeometryError(f"slices differ in PixelSpacing ({list(first.pixel_spacing)} vs "
                                f"{list(h.pixel_spacing)} in {h.path.name}).", path=where)


def read_threads() -> int:
    """Threads that read a regular stack's slices: up to 4, no more than the CPUs."""
    return max(1, min(4, os.cpu_count() or 1))


def build_volume(hs: list[SliceHeader], *, where: Path, roi: Roi | None, policy: str, decode=None,
                 extra_meta: dict | None = None, qc: list[str] | None = None, max_gib: float | None = None,
                 compact: bool = False, threads: int | None = None) -> Volume:
    """Stack single-frame slices (headers already checked) into a Volume, decoding only what ``roi`` needs.

    decode      callable(index into ``hs``) -> (H, W) float32 HU; default reads the slice's file
                (``dicom_pixels.read_slice_hu``).
    max_gib     memory budget (``sranet.runtime.limits``): the output box plus, for a resampled stack, the decoded
                slices it is blended from; checked before any pixel is decoded.
    compact     a regular stack whose HU are integers that fit int16 (slope 1, integer intercept) is returned as
                int16: the same values in half the memory. Otherwise, and always with ``decode``, float32.
    threads     threads reading a regular stack (None: ``read_threads()``).
    """
    check_consistent(hs, where)
    own = decode is None
    decode = decode or (lambda i: read_slice_hu(hs[i]))
    plan = plan_stack(np.array([h.position for h in hs]), np.array(hs[0].orientation), hs[0].pixel_spacing,
                      policy=policy, tie_break=np.array([h.instance for h in hs]),
                      slice_thickness_mm=hs[0].slice_thickness, where=str(where))
    shape = (plan.depth, hs[0].rows, hs[0].columns)
    affine = np.eye(4)
    affine[:3, :3] = plan.direction * np.asarray(plan.spacing_mm)[None, :]
    affine[:3, 3] = plan.origin_mm
    box = roi_box(roi, shape, affine) if roi is not None else tuple((0, n) for n in shape)
    (d0, d1), (h0, h1), (w0, w1) = box
    needed = plan.inputs_for(d0, d1)
    held = 0 if not plan.resampled else 4 * len(needed) * (
        hs[0].rows * hs[0].columns if np.any(plan.shift_px) else (h1 - h0) * (w1 - w0))
    check_volume_bytes((d1 - d0, h1 - h0, w1 - w0), max_gib, path=where, extra_bytes=held,
                       what="the box to read" if roi is not None else "the series")
    if not plan.resampled:  # a regular stack: decode each slice straight into the output (one copy in memory)
        reader = (lambda i, out: read_slice_hu(hs[i], ((h0, h1), (w0, w1)), out)) if own else \
            (lambda i, out: out.__setitem__(Ellipsis, decode(i)[h0:h1, w0:w1]))
        int16 = own and compact and all(exact_int16(hs[int(plan.order[k])]) for k in range(d0, d1))
        # threads only where every slice is read here: pydicom's decoders set warning filters, which is not thread-safe
        if not (own and all(fast_readable(hs[int(plan.order[k])]) for k in range(d0, d1))):
            threads = 1
        try:
            hu = read_stack(reader, plan, box, np.int16 if int16 else np.float32, threads)
        except NotExact:  # a slice's HU do not fit int16 after all
            hu = read_stack(reader, plan, box, np.float32, threads)
    elif np.any(plan.shift_px):  # tilted: shift whole slices first, crop after
        slices = {int(i): decode(int(plan.order[i])) for i in needed}
        hu = assemble(slices, plan, d0, d1)[:, h0:h1, w0:w1]
    else:  # keep only the ROI's part of each slice as soon as it is decoded
        crop = (lambda i: read_slice_hu(hs[i], ((h0, h1), (w0, w1)))) if own else \
            (lambda i: decode(i)[h0:h1, w0:w1].copy())
        slices = {int(i): crop(int(plan.order[i])) for i in needed}
        hu = assemble(slices, plan, d0, d1)
    offset = (d0, h0, w0)
    origin = affine[:3, :3] @ np.asarray(offset, dtype=float) + affine[:3, 3]
    meta = {
        "format": "dicom",
        "modality": "CT",
        "series_uid_suffix": hs[0].series_uid[-8:],
        "series_number": hs[0].series_number,
        "n_files": len(hs),
        "decoded_slices": len(needed),
        "tilt_deg": round(plan.tilt_deg, 3),
        "transfer_syntax": sorted({h.transfer_syntax for h in hs}),
        "full_shape": list(shape),
        "slice_thickness_mm": hs[0].slice_thickness,
        **hs[0].scanner,
        **(extra_meta or {}),
    }
    return Volume(hu=np.ascontiguousarray(hu), spacing_mm=tuple(float(s) for s in plan.spacing_mm),
                  origin_mm=tuple(float(v) for v in origin), direction=plan.direction, meta=meta,
                  qc=list(qc or []) + plan.qc, source=str(where), index_offset=offset)


def read_stack(reader, plan: StackPlan, box, dtype, threads: int | None) -> np.ndarray:
    """Output slices ``box`` of a regular stack, each read by ``reader(index into hs, out)`` into its place. With
    several threads each takes a run of slices; the error of the first failing slice (in slice order) is raised,
    as a plain loop would."""
    (d0, d1), (h0, h1), (w0, w1) = box
    hu = np.empty((d1 - d0, h1 - h0, w1 - w0), dtype)
    n = max(1, min(threads or read_threads(), (d1 - d0) // 8))
    if n == 1:
        for k in range(d0, d1):
            reader(int(plan.order[k]), hu[k - d0])
        return hu
    from concurrent.futures import ThreadPoolExecutor

    bounds = np.linspace(d0, d1, 4 * n + 1).astype(int)

    def run(a: int, b: int) -> tuple[int, BaseException] | None:
        for k in range(a, b):
            try:
                reader(int(plan.order[k]), hu[k - d0])
            except Exception as exc:  # noqa: BLE001 - re-raised below, the first in slice order
                return k, exc
        return None

    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="sranet-read") as pool:
        failures = [f for f in pool.map(run, bounds[:-1], bounds[1:]) if f is not None]
    if failures:
        raise min(failures, key=lambda f: f[0])[1]
    return hu


__all__ = ["build_volume", "check_consistent", "read_stack", "read_threads"]
