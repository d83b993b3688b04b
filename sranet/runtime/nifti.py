"""NIfTI (``.nii``, ``.nii.gz``, via nibabel) -> ``Volume``.

NIfTI arrays are indexed (i, j, k) with an affine to RAS millimetres. sranet's arrays are (D, H, W) in LPS, so the
array is transposed to (k, j, i) (slices first, as DICOM) and the affine's columns reordered and x, y negated.
Scaling (scl_slope/scl_inter) is applied by nibabel. The header's qform/sform choice is nibabel's (sform first).

Geometry is refused (GeometryError), never made up: an affine with a non-finite entry (translation included), a
zero or infinite voxel size, and a header whose voxel size (pixdim) is 0 or not finite while the geometry comes from
pixdim (no sform): nibabel would take such a voxel size as 1 mm. With an sform the sform alone sets the geometry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sranet.errors import CorruptPixelDataError, GeometryError, NotDicomError, UnreadableFileError
from sranet.runtime.limits import check_volume_bytes
from sranet.runtime.volume import Volume

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
_MM_PER_UNIT = {"meter": 1000.0, "mm": 1.0, "micron": 1e-3}  # NIfTI xyz units; "unknown" is taken as mm


def load_nifti(path: Path, roi=None, *, max_gib: float | None = None) -> Volume:
    """Read a 3D (or 4D with one volume) NIfTI image as HU float32 (D, H, W) = (k, j, i) with LPS geometry.

    With ``roi`` (a ``Roi``) only the voxel box it covers is read from disk (nibabel's array proxy), and
    ``volume.index_offset`` records where the box sits. ``max_gib``: memory budget of the box read
    (``sranet.runtime.limits``), checked before reading.
    """
    from sranet.runtime.roi import roi_box

    img = _open(path)
    shape = _volume_shape(path, img)
    _check_pixdim(path, img)
    units = str(img.header.get_xyzt_units()[0])
    m, spacing, full = _lps_geometry(path, img, units)
    dhw_shape = (shape[2], shape[1], shape[0])
    box = roi_box(roi, dhw_shape, full) if roi is not None else tuple((0, n) for n in dhw_shape)
    (d0, d1), (h0, h1), (w0, w1) = box
    check_volume_bytes((d1 - d0, h1 - h0, w1 - w0), max_gib, path=path,
                       what="the box to read" if roi is not None else "the image")
    index = (slice(w0, w1), slice(h0, h1), slice(d0, d1)) + ((0,) if len(img.shape) == 4 else ())
    hu = np.ascontiguousarray(_read_voxels(path, img, index).transpose(2, 1, 0))
    meta = {"format": "nifti", "nifti_shape": list(img.shape), "full_shape": list(dhw_shape), "scl_applied": True,
            "units": units}
    origin = full[:3, :3] @ np.array([d0, h0, w0], dtype=float) + full[:3, 3]
    return Volume(hu=hu, spacing_mm=tuple(float(s) for s in spacing), origin_mm=tuple(float(v) for v in origin),
                  direction=m / spacing[None, :], meta=meta, source=str(path), index_offset=(d0, h0, w0))


def _open(path: Path):
    """nibabel's image (header and array proxy; no voxels read yet), with its header-repair messages silenced."""
    import nibabel as nib
    from nibabel.imageglobals import LoggingOutputSuppressor

    try:
        with LoggingOutputSuppressor():  # nibabel prints header repairs (e.g. "setting 0 dims to 1"): refused below
            return nib.load(str(path))
    except FileNotFoundError as exc:
        raise UnreadableFileError("file does not exist.", path=path) from exc
    except Exception as exc:
        raise NotDicomError(f"cannot be read as NIfTI ({type(exc).__name__}: {str(exc)[:120]}).", path=path,
                            hint="Check that the file is a complete .nii/.nii.gz image.") from exc


def _volume_shape(path: Path, img) -> tuple[int, int, int]:
    """The (i, j, k) shape of a 3D image, or of a 4D one with a single volume."""
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3 or min(shape) < 1:
        raise GeometryError(f"has shape {img.shape}; a 3D volume (i, j, k) was expected.", path=path,
                            hint="Extract one 3D volume (e.g. one time point) first.")
    return shape


def _lps_geometry(path: Path, img, units: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(m, spacing, full): the affine in millimetres turned to LPS for array axes (k, j, i): ``m`` (3, 3) its
    columns, ``spacing`` (3,) their lengths in mm, ``full`` the (4, 4) index-to-LPS affine. A non-finite or
    degenerate affine is refused."""
    affine = np.array(img.affine, dtype=float)  # a copy: scaled below
    affine[:3, :] *= _MM_PER_UNIT.get(units, 1.0)  # header says metres or microns: the affine is in those units
    with np.errstate(invalid="ignore", over="ignore"):  # a non-finite affine is refused just below
        m = _RAS_TO_LPS @ affine[:3, :3][:, [2, 1, 0]]  # columns for array axes (k, j, i)
        spacing = np.linalg.norm(m, axis=0)
    if not np.all(np.isfinite(affine)):
        raise GeometryError(f"affine {affine.tolist()} has a NaN or infinite entry.", path=path,
                            hint="Fix the qform/sform in the header.")
    if np.any(spacing <= 0) or abs(np.linalg.det(m)) < 1e-12:
        raise GeometryError(f"affine {affine.tolist()} is degenerate (zero or infinite voxel size).", path=path,
                            hint="Fix the qform/sform in the header.")
    full = np.eye(4)
    full[:3, :3] = m
    full[:3, 3] = _RAS_TO_LPS @ affine[:3, 3]
    return m, spacing, full


def _read_voxels(path: Path, img, index: tuple) -> np.ndarray:
    """The voxels at ``index`` (i, j, k order) as float32, scaled by nibabel; a damaged file is refused."""
    try:
        return np.asarray(img.dataobj[index], dtype=np.float32)
    except Exception as exc:  # truncated .nii / broken gzip stream
        raise CorruptPixelDataError(f"image data cannot be read ({type(exc).__name__}: {str(exc)[:120]}).",
                                    path=path, hint="The file is truncated or damaged; re-export it.") from exc


def _check_pixdim(path: Path, img) -> None:
    """Refuse a voxel size (pixdim[1:4]) of 0 or not finite where it sets the geometry (no sform). The header is read
    again unrepaired: nibabel replaces a zero pixdim with 1 on load."""
    header = img.header
    try:
        sform_code = int(header["sform_code"])
    except (KeyError, ValueError, TypeError):  # Analyze-style headers: geometry from pixdim only
        sform_code = 0
    if sform_code > 0:
        return
    from nibabel.openers import ImageOpener

    try:
        with ImageOpener(str(path)) as f:
            raw = type(header).from_fileobj(f, check=False)
        pixdim = np.asarray(raw["pixdim"][1:4], dtype=float)
    except Exception:  # noqa: BLE001 - nibabel read it once already; keep its (repaired) view if this fails
        return
    if not (np.all(np.isfinite(pixdim)) and np.all(pixdim != 0)):
        raise GeometryError(
            f"the header's voxel size (pixdim) is {pixdim.tolist()} and no sform sets the geometry: the spacing is "
            "unknown (it would be taken as 1 mm).", path=path,
            hint="Write the true voxel size into the header (e.g. nibabel's header.set_zooms), or convert the "
                 "image to .npy and pass --spacing-mm.")


def save_nifti(volume: Volume, path: Path) -> None:
    """Write a Volume as NIfTI (the inverse of ``load_nifti``); used by tests and tools."""
    import nibabel as nib

    a = np.eye(4)
    a[:3, :3] = (_RAS_TO_LPS @ (np.asarray(volume.direction) * np.asarray(volume.spacing_mm)[None, :]))[:, [2, 1, 0]]
    a[:3, 3] = _RAS_TO_LPS @ np.asarray(volume.origin_mm)
    nib.save(nib.Nifti1Image(np.asarray(volume.hu).transpose(2, 1, 0), a), str(path))
