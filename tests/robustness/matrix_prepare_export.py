"""The matrix, part 3: `sranet prepare` (the cache training reads) and `sranet export` (options refused before any
work; damaged checkpoints; signing keys)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from tests.robustness.harness import Case
from tests.robustness.inputs import good_hu, patch_nifti_header, write_manifest, write_nifti, write_npy
from tests.robustness.matrix_inputs import with_nan
from tests.robustness.matrix_run import _evil_pt, _flip_tensor, _key_file, _no_marker, _tampered_pt


def prepare(env, rows: list[str], header: str = "case_id,path,label", extra=()) -> list:
    manifest = write_manifest(env.tmp / "m.csv", header, rows)
    return ["prepare", "--manifest", manifest, "--out", env.cache, "--model", "tiny", *extra]


def _npy(env, name, arr, **kw) -> Path:
    return write_npy(env.tmp / name, arr, **kw)


def _nothing_cached(env, run):
    cached = list((env.cache / "volumes").glob("*.npy")) if (env.cache / "volumes").is_dir() else []
    assert not cached, f"a volume that was refused is in the cache: {cached}"


def _rerun_after(damage):
    """A check that damages the cache the run wrote, runs prepare again, and expects the case to be prepared again."""

    def check(env, run):
        from tests.robustness.harness import invoke

        damage(env.cache)
        again = invoke(prepare(env, [f"a,{env.tmp / 'a.npy'},1"]))
        assert again.exit_code == 0 and "(of them 1 whose cached files were damaged)" in again.output, again.output
        volume = np.load(env.cache / "volumes" / "a.npy")
        assert volume.shape == (48, 48, 48) and np.isfinite(volume).all()
    return check


def _truncate_cached(cache: Path) -> None:
    path = cache / "volumes" / "a.npy"
    path.write_bytes(path.read_bytes()[:1000])


def _flip_cached(cache: Path) -> None:
    path = cache / "masks" / "a.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_meta(cache: Path) -> None:
    path = cache / "meta" / "a.json"
    meta = json.loads(path.read_text())
    meta.pop("files")
    path.write_text(json.dumps(meta))


def _long_id_file(env, run):
    names = [p.name for p in (env.cache / "volumes").iterdir()]
    assert names == ["c" * 100 + ".npy"], names


def _lesion(env, arr) -> list[str]:
    a = _npy(env, "a.npy", good_hu())
    np.save(env.tmp / "lesion.npy", arr)
    return [f"a,{a},1,{env.tmp / 'lesion.npy'}"]


def _pixdim_zero(env) -> Path:
    return patch_nifti_header(write_nifti(env.tmp / "p.nii", good_hu()), pixdim=(0, 0, 0), qform_code=1, sform_code=0)


def export(env, checkpoint, *extra) -> list:
    return ["export", checkpoint, "--out", env.tmp / "m.onnx", *extra]


def _nothing_written(env, run):
    assert not (env.tmp / "m.onnx").exists() and not (env.tmp / "m.onnx.parity.json").exists()


CASES = [
    # -- prepare: what is cached -------------------------------------------------------------------------------------
    Case("ok_prepare", lambda e: prepare(e, [f"a,{_npy(e, 'a.npy', good_hu())},1"]), "ok"),
    Case("prepare_npy_one_nan_not_cached", lambda e: prepare(e, [f"a,{_npy(e, 'a.npy', with_nan(1))},1"]), "failure",
         "NaN or infinite", _nothing_cached),
    Case("prepare_npy_all_inf_not_cached", lambda e: prepare(e, [f"a,{_npy(e, 'a.npy', with_nan('all', np.inf))},1"]),
         "failure", "all voxels", _nothing_cached),
    Case("prepare_nifti_nan_not_cached", lambda e: prepare(e, [
        f"a,{write_nifti(e.tmp / 'a.nii.gz', with_nan(3), dtype=np.float32)},1"]), "failure", "NaN or infinite",
         _nothing_cached),
    Case("prepare_pixdim_zero_not_cached", lambda e: prepare(e, [f"a,{_pixdim_zero(e)},1"]), "failure", "pixdim",
         _nothing_cached),
    Case("prepare_roi_clipped_is_flagged", lambda e: prepare(e, [f"a,{_npy(e, 'a.npy', good_hu())},1,\"-4:16,0:40,0:40\""],
                                                             header="case_id,path,label,roi"),
         "flagged", "roi_clipped"),
    Case("ok_prepare_rerun_after_truncated_volume", lambda e: prepare(e, [f"a,{_npy(e, 'a.npy', good_hu())},1"]), "ok",
         "", _rerun_after(_truncate_cached)),
    Case("ok_prepare_rerun_after_flipped_mask_byte", lambda e: prepare(e, [f"a,{_npy(e, 'a.npy', good_hu())},1"]),
         "ok", "", _rerun_after(_flip_cached)),
    Case("ok_prepare_rerun_after_meta_lost_its_fingerprints", lambda e: prepare(
        e, [f"a,{_npy(e, 'a.npy', good_hu())},1"]), "ok", "", _rerun_after(_edit_meta)),
    Case("ok_prepare_id_of_150_characters", lambda e: prepare(e, [f"{'c' * 150},{_npy(e, 'a.npy', good_hu())},1"]),
         "ok", "", _long_id_file),
    Case("prepare_lesion_wrong_shape", lambda e: prepare(e, _lesion(e, np.zeros((4, 4, 4), np.uint8)),
                                                         header="case_id,path,label,lesion_mask"), "failure",
         "lesion mask has shape (4, 4, 4)"),
    Case("prepare_lesion_values", lambda e: prepare(e, _lesion(e, np.full((20, 40, 40), 2, np.uint8)),
                                                    header="case_id,path,label,lesion_mask"), "failure",
         "values other than 0 and 1"),
    Case("prepare_lesion_nan", lambda e: prepare(e, _lesion(e, np.full((20, 40, 40), np.nan, np.float32)),
                                                 header="case_id,path,label,lesion_mask"), "failure",
         "values other than 0 and 1"),
    Case("prepare_over_budget", lambda e: prepare(e, [f"a,{_npy(e, 'a.npy', good_hu())},1"],
                                                  extra=["--max-volume-gib", "0.0001"]), "failure",
         "VolumeTooLargeError"),
    Case("prepare_input_dev_zero", lambda e: prepare(e, ["a,/dev/zero,1"]), "failure", "not a regular file"),
    # -- prepare: options ---------------------------------------------------------------------------------------------
    Case("prepare_out_dev_zero", lambda e: ["prepare", "--manifest", write_manifest(
        e.tmp / "m.csv", "case_id,path,label", ["a,a.npy,1"]), "--out", "/dev/zero"], "error", "--out /dev/zero"),
    Case("prepare_out_is_a_file", lambda e: ["prepare", "--manifest", write_manifest(
        e.tmp / "m.csv", "case_id,path,label", ["a,a.npy,1"]), "--out", _key_file(e, b"x", "c")], "error",
         "is not a folder"),
    Case("prepare_workers_zero", lambda e: prepare(e, ["a,a.npy,1"], extra=["--workers", "0"]), "error",
         "--workers=0"),
    Case("prepare_workers_huge", lambda e: prepare(e, ["a,a.npy,1"], extra=["--workers", "100000"]), "error",
         "--workers=100000"),
    Case("prepare_without_labels", lambda e: prepare(e, ["a,a.npy"], header="case_id,path"), "error",
         "training needs labels"),
    Case("prepare_model_unknown", lambda e: prepare(e, ["a,a.npy,1"], extra=["--model", "huge"]), "error", "'huge'"),
    Case("prepare_size_not_multiple_of_grid", lambda e: ["prepare", "--manifest", write_manifest(
        e.tmp / "m.csv", "case_id,path,label", ["a,a.npy,1"]), "--out", e.cache, "--size", "50"], "error", "50"),
    Case("prepare_model_and_size", lambda e: prepare(e, ["a,a.npy,1"], extra=["--size", "48"]), "error",
         "give only one"),
    Case("prepare_cache_of_other_settings", lambda e: _other_cache(e), "error", "already holds a cache"),
    # -- export: refused before any work ------------------------------------------------------------------------------
    Case("export_sign_key_missing", lambda e: export(e, e.base.pt, "--sign", e.tmp / "none.pem"), "error",
         "none.pem' does not exist", _nothing_written),
    Case("export_sign_with_public_key", lambda e: export(e, e.base.pt, "--sign", e.base.pub), "error",
         "This is a public key", _nothing_written),
    Case("export_sign_with_garbage", lambda e: export(e, e.base.pt, "--sign", _key_file(e, b"-----BEGIN junk")),
         "error", "is not a PEM private key", _nothing_written),
    Case("export_sign_with_rsa_key", lambda e: export(e, e.base.pt, "--sign", _rsa_private(e)), "error",
         "not an Ed25519 key", _nothing_written),
    Case("export_sign_with_encrypted_key", lambda e: export(e, e.base.pt, "--sign", _encrypted_key(e)), "error",
         "is encrypted", _nothing_written),
    Case("export_out_is_folder", lambda e: ["export", e.base.pt, "--out", _folder(e, "m.onnx")], "error",
         "is not a regular file"),
    Case("export_out_wrong_suffix", lambda e: ["export", e.base.pt, "--out", e.tmp / "m.txt"], "error",
         "must end in .onnx"),
    Case("export_out_dev_null", lambda e: ["export", e.base.pt, "--out", "/dev/null"], "error", "must end in .onnx"),
    Case("export_parity_cases_huge", lambda e: export(e, e.base.pt, "--parity-cases", "100000"), "error",
         "parity_cases=100000", _nothing_written),
    Case("export_parity_cases_one", lambda e: export(e, e.base.pt, "--parity-cases", "1"), "error",
         "parity_cases=1", _nothing_written),
    Case("export_triton_is_a_file", lambda e: export(e, e.base.pt, "--triton", _key_file(e, b"x", "repo")), "error",
         "--triton", _nothing_written),
    Case("export_checkpoint_missing", lambda e: export(e, e.tmp / "none.pt"), "error", "does not exist",
         _nothing_written),
    Case("export_checkpoint_junk", lambda e: export(e, _key_file(e, b"junk", "c.pt")), "error",
         "is not a readable PyTorch checkpoint", _nothing_written),
    Case("export_checkpoint_pickle_not_run", lambda e: export(e, _evil_pt(e)), "error", "posix.system",
         _no_marker),
    Case("export_checkpoint_tampered", lambda e: export(e, _tampered_pt(e, _flip_tensor)), "error",
         "does not match the digest", _nothing_written),
    Case("export_fp16_and_int8", lambda e: export(e, e.base.pt, "--fp16", "--int8"), "error", "choose one precision",
         _nothing_written),
    Case("export_engine_only_option", lambda e: export(e, e.base.pt, "--workspace-gib", "2"), "error",
         "only apply to a TensorRT engine", _nothing_written),
]


def _folder(env, name) -> Path:
    path = env.tmp / name
    path.mkdir()
    return path


def _rsa_private(env) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return _key_file(env, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()), "rsa.pem")


def _encrypted_key(env) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    return _key_file(env, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b"secret")), "enc.pem")


def _other_cache(env) -> list:
    env.cache.mkdir()
    (env.cache / "cache.json").write_text(json.dumps({"preprocess": {"output_size": 64}}))
    return prepare(env, [f"a,{_npy(env, 'a.npy', good_hu())},1"])


__all__ = ["CASES", "os", "shutil"]
