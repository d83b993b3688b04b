"""Builders of good and bad inputs for the robustness matrix: everything is generated into temporary folders (small
arrays, a 20-slice DICOM series, keys made on the spot); nothing large is committed."""

from __future__ import annotations

import json
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.helpers import phantom_hu, write_dicom_series

SHAPE = (20, 40, 40)  # (D, H, W): enough slices for no too_few_slices flag, small enough to be quick
SPACING = (2.0, 0.8, 0.8)


@dataclass
class Base:
    """Shared, read-only inputs of the matrix (made once per session)."""

    root: Path
    onnx: Path  # sealed tiny ONNX
    pt: Path  # tiny checkpoint
    series: Path  # good DICOM series
    nifti: Path
    npy: Path  # with a JSON sidecar
    key: Path  # Ed25519 private key (PEM)
    pub: Path  # its public key
    other_key: Path
    other_pub: Path
    signed_onnx: Path
    signed_pt: Path


def make_keys(folder: Path, name: str) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    private = folder / f"{name}.pem"
    public = folder / f"{name}.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def make_base(root: Path, onnx: Path, pt: Path) -> Base:
    from sranet.runtime.integrity import sign_artifact

    root.mkdir(parents=True, exist_ok=True)
    hu = phantom_hu(SHAPE, seed=3)
    series = write_dicom_series(root / "series", hu, spacing_mm=SPACING)
    nifti = write_nifti(root / "vol.nii.gz", hu)
    npy = write_npy(root / "npy" / "vol.npy", hu)
    key, pub = make_keys(root, "signing")
    other_key, other_pub = make_keys(root, "other")
    signed_onnx = root / "signed" / "model.onnx"
    signed_pt = root / "signed" / "model.pt"
    signed_onnx.parent.mkdir()
    shutil.copy(onnx, signed_onnx)
    shutil.copy(pt, signed_pt)
    sign_artifact(signed_onnx, key)
    sign_artifact(signed_pt, key)
    return Base(root, onnx, pt, series, nifti, npy, key, pub, other_key, other_pub, signed_onnx, signed_pt)


# -- arrays ---------------------------------------------------------------------------------------------------------
def good_hu(seed: int = 3) -> np.ndarray:
    return phantom_hu(SHAPE, seed=seed)


def write_npy(path: Path, arr: np.ndarray, spacing=SPACING, sidecar: dict | None | str = "default") -> Path:
    """``arr`` as .npy; with a sidecar giving ``spacing`` (sidecar="default"), the ``sidecar`` dict, or none (None)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, arr)
    if sidecar == "default":
        sidecar = {"spacing_mm": list(spacing)}
    if sidecar is not None:
        path.with_suffix(".json").write_text(json.dumps(sidecar) if isinstance(sidecar, dict) else sidecar)
    return path


def write_nifti(path: Path, arr: np.ndarray, affine=None, dtype=np.int16) -> Path:
    """(D, H, W) HU -> NIfTI (i, j, k) = (W, H, D), 0.8 x 0.8 x 2 mm unless ``affine`` says otherwise."""
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([-0.8, -0.8, 2.0, 1.0]) if affine is None else np.asarray(affine, dtype=float)
    nib.save(nib.Nifti1Image(np.asarray(arr).transpose(2, 1, 0).astype(dtype), affine), str(path))
    return path


def patch_nifti_header(path: Path, *, pixdim=None, qform_code=None, sform_code=None, srow_x=None) -> Path:
    """Overwrite fields of an uncompressed .nii header in place (nibabel would repair or refuse them on save)."""
    data = bytearray(path.read_bytes())
    if srow_x is not None:
        data[280:296] = struct.pack("<4f", *srow_x)
    if pixdim is not None:
        data[80:92] = struct.pack("<3f", *pixdim)
    if qform_code is not None:
        data[252:254] = struct.pack("<h", qform_code)
    if sform_code is not None:
        data[254:256] = struct.pack("<h", sform_code)
    path.write_bytes(bytes(data))
    return path


def sparse_npy(path: Path, shape: tuple[int, int, int]) -> Path:
    """A valid float32 .npy of ``shape`` whose data are a hole in the file (no disk space, reads as zeros)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
    del arr
    path.with_suffix(".json").write_text(json.dumps({"spacing_mm": [1.0, 1.0, 1.0]}))
    return path


# -- DICOM ----------------------------------------------------------------------------------------------------------
def copy_series(base: Base, dest: Path) -> Path:
    shutil.copytree(base.series, dest)
    return dest


def slices(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix == ".dcm")


def edit_series(base: Base, dest: Path, edit, which=None) -> Path:
    """A copy of the base series with ``edit(ds, index)`` applied to the slices ``which`` (indices; None: all)."""
    import warnings

    import pydicom

    copy_series(base, dest)
    files = slices(dest)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid values these edits write on purpose
        for i, f in enumerate(files):
            if which is None or i in which:
                ds = pydicom.dcmread(f)
                edit(ds, i)
                ds.save_as(f)
    return dest


def truncate(path: Path, keep_bytes: int = -3000) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[:keep_bytes])
    return path


def write_manifest(path: Path, header: str, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")
    return path
