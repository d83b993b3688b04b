"""The matrix, part 1: what `sranet predict` is given to read (volumes in every format, good and bad)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from tests.robustness.harness import Case
from tests.robustness.inputs import (
    SHAPE,
    copy_series,
    edit_series,
    good_hu,
    patch_nifti_header,
    slices,
    sparse_npy,
    truncate,
    write_nifti,
    write_npy,
)


def predict(env, *inputs, artifact=None, extra=()) -> list:
    """argv of one `sranet predict` run of the tiny ONNX (or ``artifact``) writing to the case's own results file.
    The inputs are crops, so the whole volume is the crop (``--roi whole``) unless ``extra`` gives a ROI."""
    roi = [] if "--roi" in [str(a) for a in extra] else ["--roi", "whole"]
    return ["predict", artifact or env.base.onnx, *inputs, "--out", env.out, "--threads", "1", *roi, *extra]


def with_nan(n_bad: int = 1, value=np.nan):
    hu = good_hu()
    flat = hu.reshape(-1)
    if n_bad == "all":
        flat[:] = value
    else:
        flat[np.linspace(0, flat.size - 1, n_bad).astype(int)] = value
    return hu


def _npy(env, name, arr, **kw):
    return write_npy(env.tmp / name, arr, **kw)


def _file(env, name, data: bytes) -> Path:
    path = env.tmp / name
    path.write_bytes(data)
    return path


def _fifo(env, name="pipe") -> Path:
    path = env.tmp / name
    os.mkfifo(path)
    return path


def _pickle_npy(env) -> Path:
    """An object .npy whose pickle would create a marker file if it were ever unpickled."""
    import pickle

    marker = env.tmp / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = env.tmp / "evil.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": (1,)})
        pickle.dump(np.array([Evil()], dtype=object), f)
    path.with_suffix(".json").write_text(json.dumps({"spacing_mm": [1, 1, 1]}))
    return path


def _no_marker(env, run):
    assert not (env.tmp / "pwned").exists(), "a pickle in the input was executed"


def _nifti_affine(env, affine):
    return write_nifti(env.tmp / "v.nii.gz", good_hu(), affine=affine)


def _nifti_pixdim(env, pixdim, qform, sform):
    path = write_nifti(env.tmp / "v.nii", good_hu())
    return patch_nifti_header(path, pixdim=pixdim, qform_code=qform, sform_code=sform)


def _set(tag, value):
    def edit(ds, i):
        setattr(ds, tag, value)
    return edit


def _delete(tag):
    def edit(ds, i):
        if tag in ds:
            delattr(ds, tag)
    return edit


def _series(env, edit=None, which=None, name="s"):
    dest = env.tmp / name
    return edit_series(env.base, dest, edit, which) if edit else copy_series(env.base, dest)


def _extra_pixel_bytes(ds, i):
    ds.PixelData = ds.PixelData + b"\0" * 160  # two extra rows' worth: the header's Rows no longer fits


def _truncated_slices(env, which, n_slices=None):
    s = _series(env)
    for i in which:
        truncate(slices(s)[i])
    return s


def _long_series(env, n=60, corrupt=range(27, 32)):
    """A 60-slice series of 16 x 16 with ``corrupt`` slices' pixel data truncated (5 of 60: under the 10 % a folder
    may drop, and a hole of 6 spacings: more than a gap can be bridged)."""
    from tests.helpers import phantom_hu, write_dicom_series

    s = write_dicom_series(env.tmp / "long", phantom_hu((n, 16, 16), seed=2), spacing_mm=(2.0, 0.8, 0.8))
    for i in corrupt:
        truncate(slices(s)[i], -200)
    return s


def _tilted(ds, i):
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    ds.ImagePositionPatient = [x + 0.3 * i, y, z]


def _duplicate_slice(env):
    import pydicom
    from pydicom.uid import generate_uid

    s = _series(env)
    src = slices(s)[7]
    ds = pydicom.dcmread(src)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.InstanceNumber = 99
    ds.save_as(s / "dup.dcm")
    return s


SECOND_UID = "1.2.826.0.1.3680043.8.498.4242.77"


def _two_series(env):
    from tests.helpers import write_dicom_series

    s = _series(env)
    write_dicom_series(s / "second", good_hu(seed=5), spacing_mm=(2.0, 0.8, 0.8), series_uid=SECOND_UID)
    return s


def _series_with(env, name: str, data: bytes) -> Path:
    s = _series(env)
    (s / name).write_bytes(data)
    return s


def _npy_sidecar_folder(env) -> Path:
    path = _npy(env, "o.npy", good_hu(), sidecar=None)
    path.with_suffix(".json").mkdir()
    return path


def _gap(env):
    s = _series(env)
    for f in slices(s)[6:13]:
        f.unlink()
    return s


def _symlinks(env, target):
    s = _series(env)
    os.symlink(target, s / "zz_link.dcm")
    return s


def _loop(env):
    s = _series(env)
    os.symlink(s, s / "loop")
    return s


def _unreadable_slice(env):
    s = _series(env)
    slices(s)[5].chmod(0)
    return s


def _huge_header(ds, i):
    ds.Rows, ds.Columns = 60000, 60000


def _mr(ds, i):
    ds.Modality = "MR"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"


def _localizer(ds, i):
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]


def _orientation(ds, i):
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]


def _roi_npy(env):
    """A .npy with NaN voxels outside the box --roi 0:20,0:30,0:30 reads."""
    hu = good_hu()
    hu[:, 35:, 35:] = np.nan
    return _npy(env, "holes.npy", hu)


ROOT_BYPASSES_PERMISSIONS = hasattr(os, "geteuid") and os.geteuid() == 0

CASES = [
    # -- good inputs: they predict, with no flag ---------------------------------------------------------------------
    Case("ok_dicom_series", lambda e: predict(e, e.base.series), "ok"),
    Case("ok_nifti", lambda e: predict(e, e.base.nifti), "ok"),
    Case("ok_npy_sidecar", lambda e: predict(e, e.base.npy), "ok"),
    Case("ok_npy_spacing_option", lambda e: predict(e, _npy(e, "a.npy", good_hu(), sidecar=None),
                                                     extra=["--spacing-mm", "2,0.8,0.8"]), "ok"),
    Case("ok_checkpoint_artifact", lambda e: predict(e, e.base.npy, artifact=e.base.pt), "ok"),
    Case("ok_series_with_hidden_file", lambda e: predict(e, _series_with(e, ".DS_Store", b"x")), "ok"),
    Case("ok_series_with_dicomdir", lambda e: predict(e, _series_with(e, "DICOMDIR", b"\0" * 200)), "ok"),
    Case("ok_npy_float16", lambda e: predict(e, _npy(e, "h.npy", good_hu().astype(np.float16))), "ok"),
    Case("ok_npy_int16", lambda e: predict(e, _npy(e, "i.npy", good_hu().astype(np.int16))), "ok"),
    Case("ok_npy_nan_outside_roi", lambda e: predict(e, _roi_npy(e), extra=["--roi", "0:20,0:30,0:30"]), "ok"),
    Case("ok_series_symlink_to_device_skipped", lambda e: predict(e, _symlinks(e, "/dev/zero")), "ok"),
    Case("ok_series_symlink_loop", lambda e: predict(e, _loop(e)), "ok"),
    # -- non-finite voxels (refused, never replaced) ----------------------------------------------------------------
    Case("npy_one_nan", lambda e: predict(e, _npy(e, "n.npy", with_nan(1))), "failure", "1 of 32000 voxels are NaN"),
    Case("npy_one_inf", lambda e: predict(e, _npy(e, "n.npy", with_nan(1, np.inf))), "failure", "NaN or infinite"),
    Case("npy_one_minus_inf", lambda e: predict(e, _npy(e, "n.npy", with_nan(1, -np.inf))), "failure",
         "NaN or infinite"),
    Case("npy_few_nan", lambda e: predict(e, _npy(e, "n.npy", with_nan(7))), "failure", "7 of 32000 voxels"),
    Case("npy_all_nan", lambda e: predict(e, _npy(e, "n.npy", with_nan("all"))), "failure", "all voxels are NaN"),
    Case("nifti_one_nan", lambda e: predict(e, write_nifti(e.tmp / "n.nii.gz", with_nan(1), dtype=np.float32)),
         "failure", "NaN or infinite"),
    Case("nifti_all_inf", lambda e: predict(e, write_nifti(e.tmp / "n.nii.gz", with_nan("all", np.inf),
                                                           dtype=np.float32)), "failure", "all voxels"),
    Case("dicom_rescale_slope_nan_one_slice", lambda e: predict(e, _series(e, _set("RescaleSlope", "NaN"), {4})),
         "flagged", "files_skipped"),
    Case("dicom_rescale_slope_nan_all", lambda e: predict(e, _series(e, _set("RescaleSlope", "NaN"))), "failure",
         "RescaleSlope"),
    Case("dicom_rescale_intercept_inf_all", lambda e: predict(e, _series(e, _set("RescaleIntercept", "inf"))),
         "failure", "RescaleIntercept"),
    Case("dicom_rescale_slope_zero_all", lambda e: predict(e, _series(e, _set("RescaleSlope", 0))), "failure",
         "not usable"),
    # -- non-finite or unknown geometry ------------------------------------------------------------------------------
    Case("nifti_nan_translation", lambda e: predict(e, _nifti_affine(e, [[-0.8, 0, 0, np.nan], [0, -0.8, 0, 0],
                                                                         [0, 0, 2, 0], [0, 0, 0, 1]])),
         "failure", "NaN or infinite entry"),
    Case("nifti_inf_rotation", lambda e: predict(e, patch_nifti_header(write_nifti(e.tmp / "v.nii", good_hu()),
                                                                       qform_code=0, sform_code=1,
                                                                       srow_x=(-np.inf, 0, 0, 0))),
         "failure", "GeometryError"),
    Case("nifti_zero_voxel_size", lambda e: predict(e, patch_nifti_header(write_nifti(e.tmp / "v.nii", good_hu()),
                                                                          qform_code=0, sform_code=1,
                                                                          srow_x=(0, 0, 0, 0))),
         "failure", "zero or infinite voxel size"),
    Case("npy_sidecar_origin_nan", lambda e: predict(e, _npy(e, "o.npy", good_hu(), sidecar='{"spacing_mm": [2, 1, 1], '
                                                                                             '"origin_mm": [NaN, 0, 0]}')),
         "failure", "NaN is not a number JSON allows"),
    Case("npy_sidecar_spacing_infinity", lambda e: predict(e, _npy(e, "o.npy", good_hu(),
                                                                   sidecar='{"spacing_mm": [Infinity, 1, 1]}')),
         "failure", "Infinity"),
    Case("npy_sidecar_spacing_zero", lambda e: predict(e, _npy(e, "o.npy", good_hu(), sidecar={"spacing_mm": [0, 1, 1]})),
         "failure", "must be positive"),
    Case("npy_sidecar_spacing_negative", lambda e: predict(e, _npy(e, "o.npy", good_hu(),
                                                                   sidecar={"spacing_mm": [2, -1, 1]})),
         "failure", "must be positive"),
    Case("npy_sidecar_not_json", lambda e: predict(e, _npy(e, "o.npy", good_hu(), sidecar="{spacing")), "failure",
         "not valid JSON"),
    Case("npy_sidecar_unknown_key", lambda e: predict(e, _npy(e, "o.npy", good_hu(), sidecar={"spacing": [2, 1, 1]})),
         "failure", "unknown keys ['spacing']"),
    Case("npy_sidecar_direction_not_rotation", lambda e: predict(e, _npy(e, "o.npy", good_hu(), sidecar={
        "spacing_mm": [2, 1, 1], "direction": [[1, 0, 0], [0, 2, 0], [0, 0, 1]]})), "failure", "rotation"),
    Case("npy_sidecar_is_folder", lambda e: predict(e, _npy_sidecar_folder(e)), "failure", "o.json"),
    Case("npy_no_spacing", lambda e: predict(e, _npy(e, "o.npy", good_hu(), sidecar=None)), "failure",
         "--spacing-mm"),
    Case("npy_spacing_disagrees_with_sidecar", lambda e: predict(e, e.base.npy, extra=["--spacing-mm", "1,1,1"]),
         "failure", "disagrees with the sidecar"),
    Case("dicom_nan_position_all", lambda e: predict(e, _series(e, _set("ImagePositionPatient", ["nan", 0, 0]))),
         "failure", "ImagePositionPatient [nan, 0.0, 0.0] is not 3 finite numbers"),
    Case("dicom_nan_position_one_slice", lambda e: predict(e, _series(e, _set("ImagePositionPatient", ["nan", 0, 0]),
                                                                      {10})), "flagged", "missing_slices"),
    Case("dicom_nan_position_single_file", lambda e: predict(e, slices(_series(e, _set(
        "ImagePositionPatient", ["nan", 0, 0]), {3}))[3]), "failure", "is not 3 finite numbers"),
    Case("dicom_missing_position_all", lambda e: predict(e, _series(e, _delete("ImagePositionPatient"))), "failure",
         "no ImagePositionPatient"),
    Case("dicom_missing_pixel_spacing_all", lambda e: predict(e, _series(e, _delete("PixelSpacing"))), "failure",
         "no PixelSpacing"),
    Case("dicom_bad_orientation_all", lambda e: predict(e, _series(e, _set("ImageOrientationPatient",
                                                                           [1, 0, 0, 1, 0, 0]))), "failure",
         "not two orthogonal unit vectors"),
    # -- DICOM Rows/Columns that disagree with the pixel data --------------------------------------------------------
    Case("dicom_columns_wrong_all", lambda e: predict(e, _series(e, _set("Columns", 38))), "failure",
         "Rows/Columns are wrong"),
    Case("dicom_rows_wrong_all", lambda e: predict(e, _series(e, _set("Rows", 44))), "failure",
         "Rows/Columns are wrong"),
    Case("dicom_extra_pixel_bytes_one_slice", lambda e: predict(e, _series(e, _extra_pixel_bytes, {9})), "flagged",
         "files_skipped"),
    Case("dicom_columns_wrong_single_file", lambda e: predict(e, slices(_series(e, _set("Columns", 20), {0}))[0]),
         "failure", "need 1600"),
    Case("dicom_rows_differ_between_slices", lambda e: predict(e, _series(e, _set("Rows", 20), {3})), "failure",
         "slices differ in size"),
    Case("dicom_huge_rows_columns", lambda e: predict(e, _series(e, _huge_header)), "failure",
         "over this case's memory budget"),
    # -- NIfTI voxel size 0 ------------------------------------------------------------------------------------------
    Case("nifti_pixdim_zero_no_forms", lambda e: predict(e, _nifti_pixdim(e, (0, 0, 0), 0, 0)), "failure",
         "voxel size (pixdim) is [0.0, 0.0, 0.0]"),
    Case("nifti_pixdim_zero_qform", lambda e: predict(e, _nifti_pixdim(e, (0, 0, 0), 1, 0)), "failure",
         "would be taken as 1 mm"),
    Case("nifti_pixdim_one_zero_qform", lambda e: predict(e, _nifti_pixdim(e, (0.8, 0, 2.0), 1, 0)), "failure",
         "pixdim"),
    Case("nifti_pixdim_nan", lambda e: predict(e, _nifti_pixdim(e, (np.nan, 0.8, 2.0), 1, 0)), "failure", "pixdim"),
    Case("ok_nifti_pixdim_zero_with_sform", lambda e: predict(e, _nifti_pixdim(e, (0, 0, 0), 0, 1)), "ok"),
    # -- what cannot be read: devices, FIFOs, budgets ----------------------------------------------------------------
    Case("input_dev_zero", lambda e: predict(e, "/dev/zero"), "failure", "not a regular file or folder"),
    Case("input_dev_null", lambda e: predict(e, "/dev/null"), "failure", "not a regular file or folder"),
    Case("input_fifo", lambda e: predict(e, _fifo(e, "vol.nii")), "failure", "not a regular file or folder"),
    Case("input_symlink_to_dev_zero_npy", lambda e: predict(e, (e.tmp / "z.npy").symlink_to("/dev/zero") or
                                                            e.tmp / "z.npy"), "failure", "not a regular file"),
    Case("input_proc_mem_as_nifti", lambda e: predict(e, (e.tmp / "m.nii").symlink_to("/proc/self/mem") or
                                                      e.tmp / "m.nii"), "failure", "m.nii"),
    Case("npy_sparse_over_default_budget", lambda e: predict(e, sparse_npy(e.tmp / "big.npy", (1200, 1024, 1024))),
         "failure", "4.69 GiB as float32 HU, over this case's memory budget of 4 GiB"),
    Case("npy_sparse_roi_reads_only_the_box", lambda e: predict(e, sparse_npy(e.tmp / "big.npy", (1200, 1024, 1024)),
                                                                extra=["--roi", "600:620,500:540,500:540"]),
         "flagged", "uniform_input"),
    Case("npy_over_small_budget", lambda e: predict(e, e.base.npy, extra=["--max-volume-gib", "0.0001"]), "failure",
         "budget of 0.0001 GiB"),
    Case("dicom_over_small_budget", lambda e: predict(e, e.base.series, extra=["--max-volume-gib", "0.0001"]),
         "failure", "VolumeTooLargeError"),
    Case("nifti_over_small_budget", lambda e: predict(e, e.base.nifti, extra=["--max-volume-gib", "0.0001"]),
         "failure", "VolumeTooLargeError"),
    Case("ok_dicom_roi_fits_small_budget", lambda e: predict(e, e.base.series, extra=[
        "--max-volume-gib", "0.0001", "--roi", "0:20,5:35,5:35"]), "ok"),
    Case("nifti_header_claims_huge_image", lambda e: predict(e, _huge_nifti(e)), "failure", "over this case's memory"),
    # -- formats and damaged files -----------------------------------------------------------------------------------
    *[Case(f"unsupported_suffix_{s.strip('.')}", lambda e, s=s: predict(e, _file(e, f"v{s}", b"data")), "failure",
           f"format {s!r} is not read") for s in (".nrrd", ".mha", ".png", ".zip", ".npz", ".gz", ".tif")],
    Case("text_file", lambda e: predict(e, _file(e, "notes.txt", b"hello\n")), "failure", "is not a DICOM file"),
    Case("empty_dcm", lambda e: predict(e, _file(e, "e.dcm", b"")), "failure", "e.dcm"),
    Case("empty_nii", lambda e: predict(e, _file(e, "e.nii", b"")), "failure", "e.nii"),
    Case("empty_nii_gz", lambda e: predict(e, _file(e, "e.nii.gz", b"")), "failure", "e.nii.gz"),
    Case("empty_npy", lambda e: predict(e, _file(e, "e.npy", b"")), "failure", "e.npy"),
    Case("truncated_nii_gz", lambda e: predict(e, truncate(write_nifti(e.tmp / "t.nii.gz", good_hu()), -2000)),
         "failure", "t.nii.gz"),
    Case("truncated_nii", lambda e: predict(e, truncate(write_nifti(e.tmp / "t.nii", good_hu()), -2000)),
         "failure", "t.nii"),
    Case("truncated_npy", lambda e: predict(e, truncate(_npy(e, "t.npy", good_hu()), -2000)), "failure", "t.npy"),
    Case("npy_object_pickle_not_run", lambda e: predict(e, _pickle_npy(e)), "failure", "no object arrays",
         _no_marker),
    Case("npy_2d", lambda e: predict(e, _npy(e, "d.npy", good_hu()[0])), "failure", "a 3D (D, H, W) numeric"),
    Case("npy_4d", lambda e: predict(e, _npy(e, "d.npy", good_hu()[None])), "failure", "a 3D (D, H, W) numeric"),
    Case("npy_bool", lambda e: predict(e, _npy(e, "d.npy", good_hu() > 0)), "failure", "holds a bool array"),
    Case("npy_complex", lambda e: predict(e, _npy(e, "d.npy", good_hu().astype(np.complex64))), "failure",
         "complex64"),
    Case("npy_zero_size", lambda e: predict(e, _npy(e, "d.npy", np.zeros((0, 40, 40), np.float32))), "failure",
         "shape (0, 40, 40)"),
    Case("npy_single_slice", lambda e: predict(e, _npy(e, "d.npy", good_hu()[:1])), "flagged", "too_few_slices"),
    Case("npy_constant", lambda e: predict(e, _npy(e, "c.npy", np.full(SHAPE, 40.0, np.float32))), "flagged",
         "uniform_input"),
    Case("npy_hu_out_of_range", lambda e: predict(e, _npy(e, "c.npy", good_hu() + 9000)), "flagged",
         "hu_out_of_range"),
    Case("dicom_garbage_after_preamble", lambda e: predict(e, _file(e, "g.dcm", b"\0" * 128 + b"DICM" +
                                                                    os.urandom(400))), "failure", "g.dcm"),
    Case("nonexistent_path", lambda e: predict(e, e.tmp / "nope.nii.gz"), "failure", "does not exist"),
    # -- DICOM folders -----------------------------------------------------------------------------------------------
    Case("empty_folder", lambda e: predict(e, (e.tmp / "empty").mkdir() or e.tmp / "empty"), "failure",
         "the folder is empty"),
    Case("folder_of_text_files", lambda e: predict(e, _text_folder(e)), "failure", "no CT image series found"),
    Case("mr_series", lambda e: predict(e, _series(e, _mr)), "failure", "modality MR, not CT"),
    Case("mr_single_file", lambda e: predict(e, slices(_series(e, _mr, {0}))[0]), "failure", "modality is MR"),
    Case("localizer_series", lambda e: predict(e, _series(e, _localizer)), "failure", "localizer"),
    Case("missing_rows_all", lambda e: predict(e, _series(e, _delete("Rows"))), "failure", "no Rows/Columns"),
    Case("no_pixel_data_all", lambda e: predict(e, _series(e, _delete("PixelData"))), "failure", "no pixel data"),
    Case("no_pixel_data_one_slice", lambda e: predict(e, _series(e, _delete("PixelData"), {12})), "flagged",
         "files_skipped"),
    Case("truncated_one_slice", lambda e: predict(e, _truncated_slices(e, [8])), "flagged", "files_skipped"),
    Case("truncated_all_slices", lambda e: predict(e, _truncated_slices(e, range(20))), "failure",
         "CorruptPixelDataError"),
    Case("truncated_single_file", lambda e: predict(e, truncate(slices(_series(e))[0])), "failure", "0000.dcm"),
    Case("unreadable_slices_leave_a_hole_with_roi", lambda e: predict(e, _long_series(e), extra=[
        "--roi", "20:40,0:16,0:16"]), "failure", "5 slice(s) have unreadable pixel data"),
    Case("duplicate_slice", lambda e: predict(e, _duplicate_slice(e)), "flagged", "duplicate_positions_dropped"),
    Case("tilted_series", lambda e: predict(e, _series(e, _tilted)), "flagged", "tilt_corrected"),
    Case("two_series", lambda e: predict(e, _two_series(e)), "failure", "2 CT series found"),
    Case("ok_two_series_one_chosen", lambda e: predict(e, _two_series(e), extra=["--series", SECOND_UID[-6:]]), "ok"),
    Case("series_option_not_matching", lambda e: predict(e, e.base.series, extra=["--series", "424242"]), "failure",
         "matches 0 of the usable series"),
    Case("gap_too_large", lambda e: predict(e, _gap(e)), "failure", "gap between slices"),
    Case("mixed_orientation", lambda e: predict(e, _series(e, _orientation, {5})), "failure",
         "inconsistent orientation"),
    Case("single_slice_file", lambda e: predict(e, slices(_series(e))[0]), "flagged", "too_few_slices"),
    Case("series_unreadable_slice_permissions", lambda e: predict(e, _unreadable_slice(e)),
         "ok" if ROOT_BYPASSES_PERMISSIONS else "flagged", "" if ROOT_BYPASSES_PERMISSIONS else "files_skipped"),
    Case("series_with_non_dicom_file", lambda e: predict(e, _series_with(e, "readme.txt", b"notes")), "flagged",
         "files_skipped"),
]


def _text_folder(env) -> Path:
    folder = env.tmp / "texts"
    folder.mkdir()
    for n in range(3):
        (folder / f"{n}.dcm").write_text("not dicom at all")
    return folder


def _huge_nifti(env) -> Path:
    """A NIfTI whose header says 3000 x 3000 x 3000 int16 voxels, followed by a few bytes only."""
    path = write_nifti(env.tmp / "huge.nii", good_hu())
    data = bytearray(path.read_bytes())
    import struct

    data[40:56] = struct.pack("<8h", 3, 3000, 3000, 3000, 1, 1, 1, 1)
    path.write_bytes(bytes(data[:352 + 1000]))
    return path


__all__ = ["CASES", "predict", "shutil"]
