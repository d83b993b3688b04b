"""``load_volume``: one entry point for every input format. Torch-free.

| path                                   | read as                                                        |
|----------------------------------------|----------------------------------------------------------------|
| folder                                 | DICOM series (recursively; one CT series chosen, see below)    |
| ``.nii`` / ``.nii.gz``                 | NIfTI via nibabel (``sranet.runtime.nifti``)                   |
| ``.npy``                               | (D, H, W) HU array; spacing from ``spacing_mm=`` or a sidecar  |
| anything else                          | a single DICOM file: one CT slice or an enhanced multi-frame CT|

Rules every format shares:

- Inputs are regular files or folders. Devices (``/dev/zero``), FIFOs and sockets are refused before they are
  opened: they never end, or block.
- Memory: the float32 array a case loads (the ROI's box, or the whole series without a ROI) must fit the per-case
  budget (``max_gib``, default ``sranet.runtime.limits.DEFAULT_MAX_VOLUME_GIB``); it is checked from the header,
  before any voxel is read.
- Non-finite voxels (NaN, +-inf, in the file or after the rescale) are refused (CorruptPixelDataError), never
  replaced: a volume with holes is not a CT the model can vouch for, and no fill value is right for every hole.
  Only the voxels that are read count: a ROI that avoids them loads.
- Geometry (spacing, origin, direction) must be finite, with positive spacing; a NIfTI whose voxel size is 0 is
  refused rather than taken as 1 mm.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from sranet.errors import CorruptPixelDataError, InputError, UnreadableFileError, UnsupportedFormatError
from sranet.runtime.limits import check_volume_bytes, volume_budget_gib
from sranet.runtime.roi import Roi, parse_roi, roi_box
from sranet.runtime.volume import Volume

SIDECAR_MAX_BYTES = 1 << 20  # a .npy geometry sidecar is a few hundred bytes


def load_volume(
    path: str | os.PathLike,
    *,
    roi: Roi | str | None = None,
    spacing_mm: tuple[float, float, float] | None = None,
    series: str | None = None,
    policy: str = "resample",
    max_gib: float | None = None,
    compact: bool = False,
) -> Volume:
    """Read a CT volume: HU (D, H, W) float32 with spacing (mm), origin and direction (LPS), QC flags and meta.

    path        DICOM series folder, single DICOM file (incl. enhanced multi-frame CT), ``.nii``/``.nii.gz``, or
                ``.npy``.
    roi         ``Roi`` or its text form (``sranet.runtime.roi``). When given, the returned volume holds only the
                voxel box the ROI covers and ``volume.index_offset`` says where it sits in the full grid; for DICOM
                only the slices that box needs are decoded (``volume.meta["decoded_slices"]``); NIfTI reads only the
                box from disk. ``preprocess``
                gives identical output for a ROI-limited and a full load.
    spacing_mm  (sD, sH, sW) for ``.npy`` only; otherwise a sidecar ``<name>.json`` next to the file with
                ``{"spacing_mm": [..], "origin_mm": [..] (optional), "direction": [[..]x3] (optional)}``.
    series      DICOM folders only: SeriesInstanceUID, a unique suffix of it (>= 4 characters) or the series
                number. Needed when a folder holds several CT series; the error lists them.
    policy      DICOM geometry: "resample" (default) resamples tilted, irregularly spaced, slightly gappy or
                duplicated stacks onto a regular orthogonal grid and flags it in ``volume.qc`` ("tilt_corrected",
                "spacing_irregular", "missing_slices", "duplicate_positions_dropped"); "strict" raises
                ``GeometryError`` instead. Gaps over 5 median spacings and mixed orientations always raise.
    max_gib     memory budget of this case: the float32 array returned (None: ``limits.DEFAULT_MAX_VOLUME_GIB``);
                a larger one raises VolumeTooLargeError before any voxel is read.
    compact     DICOM series: HU that are integers fitting int16 (RescaleSlope 1, an integer intercept: nearly every
                CT) come back as int16, the same values in half the memory (a whole study read for the localiser);
                other data as float32. Default: float32 always.

    DICOM behaviour: headers are read first without pixels; non-CT, non-image, localizer and multi-frame objects
    in a folder are skipped with a reason (``volume.meta["skipped"]``); files that are not DICOM or have a
    damaged header are skipped too (QC flag ``files_skipped``); the gaps they leave are caught by the geometry
    check. Slices are sorted along the slice normal; RescaleSlope/Intercept apply per slice; PixelPaddingValue
    becomes -1024 HU; compressed syntaxes decode through pylibjpeg. In a folder, a slice whose pixels cannot be
    decoded or decode to noise is dropped and reported the same way (up to 10 % of the slices; more raise
    ``CorruptPixelDataError`` naming the file); a single file raises. QC flags from the HU values (``sranet.runtime.qc``)
    are added for every format. ``volume.meta`` is non-identifying (no names, IDs, dates).

    Raises (all ``sranet.errors.VolumeError`` unless noted): UnreadableFileError, NotDicomError,
    UnsupportedFormatError, NoPixelDataError, CorruptPixelDataError, WrongModalityError, NoUsableSeriesError,
    GeometryError, EmptyRoiError, VolumeTooLargeError; InputError for bad arguments. Non-finite HU (NaN, infinite)
    are refused (CorruptPixelDataError) for every format (module docstring).
    """
    from sranet.runtime.dicom import check_policy
    from sranet.runtime.qc import qc_flags

    check_policy(policy)
    max_gib = volume_budget_gib(max_gib)
    p = Path(path)
    if isinstance(roi, str):
        roi = parse_roi(roi)
    check_regular(p)
    name = p.name.lower()
    if spacing_mm is not None and not name.endswith(".npy"):
        raise InputError(f"spacing_mm={spacing_mm!r} was given for {p}, but only .npy inputs take a spacing; "
                         "DICOM and NIfTI carry their own.", hint="Drop spacing_mm (--spacing-mm).")
    if series is not None and not p.is_dir():
        raise InputError(f"series={series!r} was given, but {p} is a file, not a DICOM folder.",
                         hint="Drop series= or point to the folder.")
    if p.is_dir():
        from sranet.runtime.dicom import load_dicom_folder

        volume = load_dicom_folder(p, roi=roi, series=series, policy=policy, max_gib=max_gib, compact=compact)
    elif name.endswith((".nii", ".nii.gz")):
        from sranet.runtime.nifti import load_nifti

        volume = load_nifti(p, roi, max_gib=max_gib)
    elif name.endswith(".npy"):
        volume = _crop(load_npy(p, spacing_mm), roi)
        check_volume_bytes(volume.shape, max_gib, path=p, what="the box to read" if roi is not None else "the array")
        # a writable copy of only the box, detached from the read-only memory map (and its open file)
        volume.hu = np.array(volume.hu, dtype=np.float32, order="C", copy=True)
    elif name.endswith((".npz", ".nrrd", ".mha", ".mhd", ".gz", ".zip", ".png", ".jpg", ".tif", ".tiff")):
        raise UnsupportedFormatError(f"format {p.suffix!r} is not read by sranet.", path=p,
                                     hint="Convert it to NIfTI (.nii.gz) or .npy, or give the DICOM folder.")
    else:
        from sranet.runtime.dicom import load_dicom_file

        volume = load_dicom_file(p, roi=roi, policy=policy, max_gib=max_gib)
    volume.source = str(path)
    hu_range = _refuse_non_finite(volume)
    for flag in qc_flags(volume, hu_range=hu_range):
        if flag not in volume.qc:
            volume.qc.append(flag)
    return volume


def check_regular(path: Path) -> None:
    """``path`` exists and is a regular file or a folder (after symlinks): devices, FIFOs and sockets are refused
    before anything opens them (reading ``/dev/zero`` never ends, opening a FIFO blocks)."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UnreadableFileError("does not exist.", path=path, hint="Check the path (a DICOM folder or a file).") from None
    except OSError as exc:
        raise UnreadableFileError(f"cannot be read ({exc.strerror or type(exc).__name__}).", path=path) from exc
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise UnreadableFileError("is not a regular file or folder (a device, FIFO or socket).", path=path,
                                  hint="Give a DICOM folder, a DICOM file, .nii/.nii.gz or .npy.")


def _refuse_non_finite(volume: Volume) -> tuple[float, float] | None:
    """NaN or infinite HU (a float array with holes, a rescale that overflows) are not a CT the model can vouch for.
    Returns the volume's (min, max) HU (None when it is empty): finite extremes mean every voxel is finite (NaN
    propagates through min and max)."""
    hu = volume.hu
    if hu.size == 0:
        return None
    lo, hi = float(hu.min()), float(hu.max())
    if hu.dtype.kind == "f" and not (np.isfinite(lo) and np.isfinite(hi)):
        bad = int(hu.size - np.count_nonzero(np.isfinite(hu)))
        what = "all" if bad == hu.size else f"{bad} of {hu.size}"
        raise CorruptPixelDataError(f"{what} voxels are NaN or infinite after conversion to HU; sranet refuses "
                                    "non-finite voxels rather than guess a value for them.",
                                    path=volume.source or None,
                                    hint="Check the file's data type and rescale (slope/intercept, scl_slope); "
                                         "fill missing voxels with air (-1000 HU) before saving, or give a --roi "
                                         "that avoids them.")
    return lo, hi


def _crop(volume: Volume, roi: Roi | None) -> Volume:
    """The part of an in-memory volume that ``roi`` covers (a view), with ``index_offset`` and origin updated."""
    if roi is None:
        return volume
    (d0, d1), (h0, h1), (w0, w1) = roi_box(roi, volume.shape, volume.affine)
    volume.origin_mm = tuple(float(v) for v in volume.index_to_patient(np.array([d0, h0, w0])))
    volume.hu = volume.hu[d0:d1, h0:h1, w0:w1]
    volume.index_offset = (d0, h0, w0)
    return volume


def _vector(value, n: int, what: str, where: Path) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}={value!r} is not numeric.", path=where) from exc
    if arr.size != n or not np.all(np.isfinite(arr)):
        raise InputError(f"{what}={value!r} must be {n} finite numbers.", path=where)
    return arr


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def load_npy(path: Path, spacing_mm=None) -> Volume:
    """(D, H, W) HU array from ``.npy`` (no pickles), memory-mapped: ``load_volume`` copies out (the ROI's part
    of) it as float32. Geometry from ``spacing_mm`` or the ``<name>.json`` sidecar."""
    try:
        hu = np.load(path, allow_pickle=False, mmap_mode="r")
    except ValueError as exc:
        raise UnsupportedFormatError(f"is not a complete, plain numeric .npy array ({str(exc)[:120]}).", path=path,
                                     hint="Save it with numpy.save(path, array) (no object arrays).") from exc
    except Exception as exc:
        raise UnreadableFileError(f"cannot be read as .npy ({type(exc).__name__}: {str(exc)[:120]}).",
                                  path=path, hint="The file is truncated or not a .npy file.") from exc
    if hu.ndim != 3 or hu.dtype.kind not in "iuf" or min(hu.shape) < 1:
        raise InputError(f"holds a {hu.dtype} array of shape {hu.shape}; a 3D (D, H, W) numeric HU array was "
                         "expected.", path=path, hint="Save one volume, slices first.")
    sidecar = path.with_suffix(".json")
    geometry: dict = {}
    if sidecar.exists():
        check_regular(sidecar)
        if sidecar.is_dir() or sidecar.stat().st_size > SIDECAR_MAX_BYTES:
            raise InputError(f"sidecar {sidecar.name} is a folder or over {SIDECAR_MAX_BYTES} bytes; a geometry "
                             "sidecar is a small JSON object.", path=sidecar)
        try:
            geometry = json.loads(sidecar.read_text(), parse_constant=_no_constant)
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(f"sidecar {sidecar.name} is not valid JSON ({exc}).", path=sidecar) from exc
        except OSError as exc:
            raise UnreadableFileError(f"sidecar {sidecar.name} cannot be read ({exc.strerror}).", path=sidecar) from exc
        if not isinstance(geometry, dict):
            raise InputError("sidecar must be a JSON object.", path=sidecar)
        unknown = set(geometry) - {"spacing_mm", "origin_mm", "direction"}
        if unknown:
            raise InputError(f"sidecar has unknown keys {sorted(unknown)}; known: spacing_mm, origin_mm, direction.",
                             path=sidecar)
    if spacing_mm is not None and "spacing_mm" in geometry and not np.allclose(spacing_mm, geometry["spacing_mm"]):
        raise InputError(f"spacing_mm={tuple(spacing_mm)} disagrees with the sidecar's {geometry['spacing_mm']}.",
                         path=path, hint="Drop one of them; sranet does not guess which is right.")
    spacing = spacing_mm if spacing_mm is not None else geometry.get("spacing_mm")
    if spacing is None:
        raise InputError("a .npy array carries no voxel spacing.", path=path,
                         hint=f"Pass spacing_mm=(sD, sH, sW) (CLI --spacing-mm) or write {sidecar.name} with "
                              '{"spacing_mm": [sD, sH, sW]}.')
    spacing = _vector(spacing, 3, "spacing_mm", path)
    if np.any(spacing <= 0):
        raise InputError(f"spacing_mm={spacing.tolist()} must be positive.", path=path)
    origin = _vector(geometry.get("origin_mm", (0.0, 0.0, 0.0)), 3, "origin_mm", path)
    direction = _vector(geometry.get("direction", np.eye(3)), 9, "direction", path).reshape(3, 3)
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-3):
        raise InputError("direction must be a (3, 3) rotation (orthonormal columns).", path=path)
    return Volume(hu=hu, spacing_mm=tuple(spacing.tolist()),
                  origin_mm=tuple(origin.tolist()), direction=direction, meta={"format": "npy"}, source=str(path))
