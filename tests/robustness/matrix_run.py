"""The matrix, part 2: how `sranet predict` is asked (artifacts and their integrity, options, ROIs, the results file,
manifests)."""

from __future__ import annotations

import base64
import fcntl
import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np

from tests.robustness.harness import Case
from tests.robustness.inputs import good_hu, write_manifest, write_npy
from tests.robustness.matrix_inputs import predict

HAS_TRT = importlib.util.find_spec("tensorrt") is not None  # with TensorRT, the sidecar's H100 is not this GPU


# -- artifacts ------------------------------------------------------------------------------------------------------
def _copy(env, src: Path, name: str | None = None) -> Path:
    dest = env.tmp / (name or src.name)
    shutil.copy(src, dest)
    return dest


def _edit_onnx(env, edit, *, reseal: bool = False, src=None, name="model.onnx") -> Path:
    """A copy of the tiny ONNX (or ``src``) with ``edit(proto)`` applied, saved without (or with) a new digest."""
    import onnx

    from sranet.runtime.integrity import seal_onnx

    proto = onnx.load(str(src or env.base.onnx))
    edit(proto)
    if reseal:
        seal_onnx(proto)
    path = env.tmp / name
    onnx.save(proto, str(path))
    return path


def _set_meta(key, value):
    def edit(proto):
        for p in proto.metadata_props:
            if p.key == key:
                p.value = value
    return edit


def _drop_meta(*keys):
    def edit(proto):
        kept = [p for p in proto.metadata_props if p.key not in keys]
        del proto.metadata_props[:]
        proto.metadata_props.extend(kept)
    return edit


def _flip_weight_byte(env) -> Path:
    """The tiny ONNX with one byte of its largest weight tensor flipped, written byte for byte (no re-serialising)."""
    import onnx

    proto = onnx.load(str(env.base.onnx))
    biggest = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
    data = env.base.onnx.read_bytes()
    at = data.find(biggest.raw_data) + len(biggest.raw_data) // 2
    flipped = bytearray(data)
    flipped[at] ^= 0x10
    path = env.tmp / "model.onnx"
    path.write_bytes(bytes(flipped))
    return path


def _threshold_and_digest(proto):
    """What someone without the key can do: edit the threshold and recompute the digest; the signature stays."""
    from sranet.runtime.integrity import onnx_digest

    _set_meta("sranet.threshold", "0.0")(proto)
    _set_meta("sranet.content_sha256", onnx_digest(proto))(proto)


def _garble_signature(proto):
    for p in proto.metadata_props:
        if p.key == "sranet.signature":
            raw = bytearray(base64.b64decode(p.value))
            raw[0] ^= 1
            p.value = base64.b64encode(bytes(raw)).decode()


def _tampered_pt(env, edit, *, reseal: bool = False, src=None) -> Path:
    import torch

    from sranet.model.checkpoint import checkpoint_digest

    data = torch.load(src or env.base.pt, weights_only=True)
    edit(data)
    if reseal:
        data["integrity"] = {"content_sha256": checkpoint_digest(data)}
    path = env.tmp / "model.pt"
    torch.save(data, path)
    return path


def _flip_tensor(data):
    name = sorted(data["model_state"])[0]
    data["model_state"][name].view(-1)[0] += 1e-3


def _evil_pt(env) -> Path:
    import torch

    marker = env.tmp / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = env.tmp / "model.pt"
    torch.save({"format": "sranet-checkpoint/1", "payload": Evil()}, path)
    return path


def _no_marker(env, run):
    assert not (env.tmp / "pwned").exists(), "a pickle in the artifact was executed"


def _engine(env, edit=None) -> Path:
    from tests.helpers import write_engine

    engine = write_engine(env.tmp)
    if edit is not None:
        edit(engine)
    return engine


def _edit_sidecar(engine: Path) -> None:
    sidecar = engine.with_name(engine.name + ".json")
    data = json.loads(sidecar.read_text())
    data["artifact"]["sranet.threshold"] = "0.0"
    sidecar.write_text(json.dumps(data))


def _key_file(env, text: bytes, name="key.pem") -> Path:
    path = env.tmp / name
    path.write_bytes(text)
    return path


def _rsa_public(env) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return _key_file(env, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo), "rsa.pub")


def trusted(env, *keys) -> list[str]:
    return [a for k in keys for a in ("--trusted-key", str(k))]


# -- results files ---------------------------------------------------------------------------------------------------
def _locked_out(env):
    """The case's results file, locked by another open writer for the duration of the run."""
    fd = os.open(env.out, os.O_WRONLY | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    env.held_fd = fd  # closed (and so unlocked) when the case's folder goes; kept open here on purpose
    return env.out


def _release(env, run):
    os.close(env.held_fd)
    assert env.out.read_text() == "", "the locked results file was written to"


def _out_with(env, text: bytes) -> Path:
    env.out.write_bytes(text)
    return env.out


def _resumed(env, run):
    assert "dropped a partial last line" in run.output
    assert len([line for line in env.out.read_text().splitlines() if line]) == 2


# -- manifests ------------------------------------------------------------------------------------------------------
def _manifest(env, header: str, rows: list[str], name="m.csv") -> Path:
    return write_manifest(env.tmp / name, header, rows)


def _two_npys(env) -> tuple[Path, Path]:
    a = write_npy(env.tmp / "a.npy", good_hu(seed=1))
    b = write_npy(env.tmp / "b.npy", good_hu(seed=2))
    return a, b


def _manifest_cases(env, header, rows_for):
    a, b = _two_npys(env)
    return ["predict", env.base.onnx, "--manifest", _manifest(env, header, rows_for(a, b)), "--out", env.out, "--roi",
            "whole"]


def _long_ids(env):
    a, b = _two_npys(env)
    return _manifest(env, "case_id,path", [f"{'x' * 100}a,{a}", f"{'x' * 100}b,{b}"])


def _key_is_100_chars(env, run):
    record = json.loads(env.out.read_text().splitlines()[0])
    assert record["case"] == "c" * 100, record["case"]


CASES = [
    # -- artifacts: what they are ------------------------------------------------------------------------------------
    Case("artifact_missing", lambda e: predict(e, e.base.npy, artifact=e.tmp / "nope.onnx"), "error",
         "nope.onnx: does not exist"),
    Case("artifact_unknown_suffix", lambda e: predict(e, e.base.npy, artifact=_copy(e, e.base.onnx, "m.h5")),
         "error", "has suffix '.h5'"),
    Case("artifact_is_folder", lambda e: predict(e, e.base.npy, artifact=(e.tmp / "d.onnx").mkdir() or
                                                 e.tmp / "d.onnx"), "error", "d.onnx: does not exist or is not a file"),
    Case("artifact_empty_onnx", lambda e: predict(e, e.base.npy, artifact=_key_file(e, b"", "m.onnx")), "error",
         "m.onnx"),
    Case("artifact_garbage_onnx", lambda e: predict(e, e.base.npy, artifact=_key_file(e, os.urandom(2000), "m.onnx")),
         "error", "is not a readable ONNX model"),
    Case("artifact_onnx_without_sranet_metadata", lambda e: predict(e, e.base.npy, artifact=_edit_onnx(
        e, _drop_meta("sranet.model_config", "sranet.preprocess_config", "sranet.threshold"))), "error",
         "has no sranet metadata"),
    Case("artifact_threshold_nan", lambda e: predict(e, e.base.npy, artifact=_edit_onnx(
        e, _set_meta("sranet.threshold", "nan"), reseal=True)), "error", "sranet.threshold='nan' is not a probability"),
    Case("artifact_threshold_above_one", lambda e: predict(e, e.base.npy, artifact=_edit_onnx(
        e, _set_meta("sranet.threshold", "1.5"), reseal=True)), "error", "'1.5' is not a probability"),
    Case("artifact_threshold_not_a_number", lambda e: predict(e, e.base.npy, artifact=_edit_onnx(
        e, _set_meta("sranet.threshold", "high"), reseal=True)), "error", "'high' is not a number"),
    Case("artifact_empty_pt", lambda e: predict(e, e.base.npy, artifact=_key_file(e, b"", "m.pt")), "error", "m.pt"),
    Case("artifact_junk_pt", lambda e: predict(e, e.base.npy, artifact=_key_file(e, b"not a checkpoint", "m.pt")),
         "error", "is not a readable PyTorch checkpoint"),
    Case("artifact_pickle_pt_not_run", lambda e: predict(e, e.base.npy, artifact=_evil_pt(e)), "error",
         "holds a Python object (posix.system)", _no_marker),
    Case("artifact_pt_threshold_nan", lambda e: predict(e, e.base.npy, artifact=_tampered_pt(
        e, lambda d: d.update(threshold=float("nan")), reseal=True)), "error", "is not a probability"),
    Case("artifact_engine_without_sidecar", lambda e: predict(e, e.base.npy, artifact=_key_file(e, b"plan", "m.engine"),
                                                              extra=["--device", "cuda:0"]), "error",
         "has no sidecar m.engine.json"),
    Case("artifact_engine_cpu_refused", lambda e: predict(e, e.base.npy, artifact=_engine(e)), "error",
         "a TensorRT plan runs on NVIDIA GPUs only"),
    Case("artifact_engine_here", lambda e: ["predict", _engine(e), e.base.npy, "--out", e.out, "--device", "cuda:0"],
         "error", "cannot run here" if HAS_TRT else "needed to build or run a TensorRT plan"),
    # -- artifacts: integrity and signatures -------------------------------------------------------------------------
    Case("tamper_onnx_weight_byte", lambda e: predict(e, e.base.npy, artifact=_flip_weight_byte(e)), "error",
         "does not match the digest recorded at export"),
    Case("tamper_onnx_threshold_zero", lambda e: predict(e, e.base.npy, artifact=_edit_onnx(
        e, _set_meta("sranet.threshold", "0.0"))), "error", "(such as the threshold) were changed after export"),
    Case("tamper_onnx_preprocess_config", lambda e: predict(e, e.base.npy, artifact=_edit_onnx(
        e, lambda p: _set_meta("sranet.preprocess_config", next(
            m.value for m in p.metadata_props if m.key == "sranet.preprocess_config").replace("-1000", "-900"))(p))),
         "error", "does not match the digest"),
    Case("tamper_onnx_digest_removed", lambda e: predict(e, e.base.npy, artifact=_edit_onnx(
        e, _drop_meta("sranet.content_sha256"))), "error", "has no content digest"),
    Case("tamper_onnx_digest_recomputed_with_trusted_key", lambda e: predict(e, e.base.npy, artifact=_edit_onnx(
        e, _threshold_and_digest, src=e.base.signed_onnx), extra=trusted(e, e.base.pub)), "error",
         "signature does not verify"),
    Case("ok_signed_onnx_trusted", lambda e: predict(e, e.base.npy, artifact=e.base.signed_onnx,
                                                     extra=trusted(e, e.base.pub)), "ok"),
    Case("ok_signed_onnx_two_trusted_keys", lambda e: predict(e, e.base.npy, artifact=e.base.signed_onnx,
                                                              extra=trusted(e, e.base.other_pub, e.base.pub)), "ok"),
    Case("ok_signed_onnx_without_trusted_key", lambda e: predict(e, e.base.npy, artifact=e.base.signed_onnx), "ok"),
    Case("unsigned_onnx_with_trusted_key", lambda e: predict(e, e.base.npy, extra=trusted(e, e.base.pub)), "error",
         "is not signed"),
    Case("onnx_signed_by_other_key", lambda e: predict(e, e.base.npy, artifact=e.base.signed_onnx,
                                                       extra=trusted(e, e.base.other_pub)), "error",
         "which is not a trusted key"),
    Case("onnx_signature_garbled", lambda e: predict(e, e.base.npy, artifact=_edit_onnx(
        e, _garble_signature, src=e.base.signed_onnx), extra=trusted(e, e.base.pub)), "error",
         "signature does not verify"),
    Case("trusted_key_is_private", lambda e: predict(e, e.base.npy, artifact=e.base.signed_onnx,
                                                     extra=trusted(e, e.base.key)), "error", "is a private key"),
    Case("trusted_key_garbage", lambda e: predict(e, e.base.npy, extra=trusted(e, _key_file(e, b"-----BEGIN x")), ),
         "error", "is not a PEM public key"),
    Case("trusted_key_missing", lambda e: predict(e, e.base.npy, extra=trusted(e, e.tmp / "none.pem")), "error",
         "none.pem' does not exist"),
    Case("trusted_key_rsa", lambda e: predict(e, e.base.npy, extra=trusted(e, _rsa_public(e))), "error",
         "not an Ed25519 key"),
    Case("tamper_pt_weight", lambda e: predict(e, e.base.npy, artifact=_tampered_pt(e, _flip_tensor)), "error",
         "the weights, configs or threshold were changed after training"),
    Case("tamper_pt_threshold", lambda e: predict(e, e.base.npy, artifact=_tampered_pt(
        e, lambda d: d.update(threshold=0.0))), "error", "does not match the digest"),
    Case("tamper_pt_digest_removed", lambda e: predict(e, e.base.npy, artifact=_tampered_pt(
        e, lambda d: d.pop("integrity"))), "error", "has no content digest"),
    Case("unsigned_pt_with_trusted_key", lambda e: predict(e, e.base.npy, artifact=e.base.pt,
                                                           extra=trusted(e, e.base.pub)), "error", "is not signed"),
    Case("ok_signed_pt_trusted", lambda e: predict(e, e.base.npy, artifact=e.base.signed_pt,
                                                   extra=trusted(e, e.base.pub)), "ok"),
    Case("pt_signed_by_other_key", lambda e: predict(e, e.base.npy, artifact=e.base.signed_pt,
                                                     extra=trusted(e, e.base.other_pub)), "error",
         "which is not a trusted key"),
    Case("tamper_engine_sidecar_threshold", lambda e: predict(e, e.base.npy, artifact=_engine(e, _edit_sidecar),
                                                              extra=["--device", "cuda:0"]), "error",
         "sidecar content"),
    Case("tamper_engine_plan_replaced", lambda e: predict(e, e.base.npy, artifact=_engine(
        e, lambda p: p.write_bytes(b"another plan")), extra=["--device", "cuda:0"]), "error", "SHA-256 of the plan"),
    Case("benchmark_tampered_onnx", lambda e: ["benchmark", _edit_onnx(e, _set_meta("sranet.threshold", "0.0")),
                                               "--min-iters", "1", "--duration-s", "0", "--warmup-s", "0"], "error",
         "changed after export"),
    Case("unsigned_engine_with_trusted_key", lambda e: predict(e, e.base.npy, artifact=_engine(e), extra=[
        "--device", "cuda:0", *trusted(e, e.base.pub)]), "error", "is not signed"),
    # -- options -----------------------------------------------------------------------------------------------------
    Case("threads_zero", lambda e: predict(e, e.base.npy, extra=["--threads", "0"]), "error", "--threads"),
    Case("threads_huge", lambda e: predict(e, e.base.npy, extra=["--threads", "100000"]), "error",
         "threads=100000"),
    Case("batch_zero", lambda e: predict(e, e.base.npy, extra=["--batch", "0"]), "error", "--batch"),
    Case("batch_huge", lambda e: predict(e, e.base.npy, extra=["--batch", "100000"]), "error", "batch=100000"),
    Case("top_k_zero", lambda e: predict(e, e.base.npy, extra=["--top-k", "0"]), "error", "--top-k"),
    Case("device_unknown", lambda e: predict(e, e.base.npy, extra=["--device", "gpu"]), "error", "device='gpu'"),
    Case("device_cuda_without_gpu", lambda e: predict(e, e.base.npy, extra=["--device", "cuda:0"]), "error",
         "cuda:0"),
    Case("provider_on_cpu", lambda e: predict(e, e.base.npy, extra=["--provider", "cuda"]), "error",
         "provider='cuda'"),
    Case("preprocess_on_unknown", lambda e: predict(e, e.base.npy, extra=["--preprocess-on", "tpu"]), "error",
         "preprocess_on='tpu'"),
    Case("spacing_infinite", lambda e: predict(e, e.base.npy, extra=["--spacing-mm", "inf,1,1"]), "error",
         "--spacing-mm 'inf,1,1'"),
    Case("spacing_zero", lambda e: predict(e, e.base.npy, extra=["--spacing-mm", "0,1,1"]), "error",
         "--spacing-mm '0,1,1'"),
    Case("spacing_two_values", lambda e: predict(e, e.base.npy, extra=["--spacing-mm", "1,1"]), "error",
         "--spacing-mm '1,1'"),
    Case("spacing_words", lambda e: predict(e, e.base.npy, extra=["--spacing-mm", "a,b,c"]), "error",
         "--spacing-mm 'a,b,c'"),
    Case("max_volume_zero", lambda e: predict(e, e.base.npy, extra=["--max-volume-gib", "0"]), "error",
         "max_gib=0.0"),
    Case("max_volume_negative", lambda e: predict(e, e.base.npy, extra=["--max-volume-gib", "-1"]), "error",
         "max_gib=-1.0"),
    Case("no_inputs", lambda e: predict(e), "error", "no inputs given"),
    Case("same_input_twice", lambda e: predict(e, e.base.npy, e.base.npy), "error", "the same case key"),
    Case("unknown_option", lambda e: predict(e, e.base.npy, extra=["--fast"]), "error", "No such option"),
    # -- ROIs --------------------------------------------------------------------------------------------------------
    Case("roi_partly_outside", lambda e: predict(e, e.base.npy, extra=["--roi", "-5:15,0:40,0:40"]), "flagged",
         "roi_clipped"),
    Case("roi_far_past_the_end", lambda e: predict(e, e.base.npy, extra=["--roi", "0:90000,0:40,0:40"]), "flagged",
         "roi_clipped"),
    Case("roi_partly_outside_dicom", lambda e: predict(e, e.base.series, extra=["--roi", "10:30,0:40,0:40"]),
         "flagged", "roi_clipped"),
    Case("roi_mm_partly_outside", lambda e: predict(e, e.base.npy, extra=["--roi", "mm:-10:10,-10:10,0:100"]),
         "flagged", "roi_truncated"),  # a mm ROI is cut out padded to its full extent (sranet.runtime.roi_crop)
    Case("ok_roi_inside", lambda e: predict(e, e.base.npy, extra=["--roi", "0:20,5:35,5:35"]), "ok"),
    Case("no_roi_crop_is_a_study_without_femoral_heads", lambda e: ["predict", e.base.onnx, e.base.npy, "--out", e.out],
         "failure", "NoFemoralHeadError: no femoral head found"),
    Case("ok_roi_with_spaces", lambda e: predict(e, e.base.npy, extra=["--roi", " 0:20 , 5:35 , 5:35 "]), "ok"),
    Case("ok_roi_mm_inside", lambda e: predict(e, e.base.npy, extra=["--roi", "mm:0:38,2:20,2:20"]), "ok"),
    Case("roi_mm_inside_one_voxel", lambda e: predict(e, e.base.npy, extra=["--roi", "mm:0.1:0.2,0.1:0.2,0.1:0.2"]),
         "flagged", "few_slices_in_roi"),
    Case("roi_outside", lambda e: predict(e, e.base.npy, extra=["--roi", "100:200,0:40,0:40"]), "failure",
         "does not overlap the volume"),
    Case("roi_mm_huge", lambda e: predict(e, e.base.npy, extra=["--roi", "mm:-1e308:1e308,0:1,0:1"]), "error",
         "values beyond 100000 mm"),
    Case("roi_voxel_huge", lambda e: predict(e, e.base.npy, extra=["--roi", "0:1000000,0:10,0:10"]), "error",
         "reaches 1e+06 voxels"),
    Case("roi_fractional_voxels", lambda e: predict(e, e.base.npy, extra=["--roi", "0.5:10,0:10,0:10"]), "error",
         "ROI '0.5:10,0:10,0:10' has non-integer indices"),
    Case("roi_reversed", lambda e: predict(e, e.base.npy, extra=["--roi", "10:5,0:10,0:10"]), "error",
         "is empty along axis 0"),
    Case("roi_two_ranges", lambda e: predict(e, e.base.npy, extra=["--roi", "0:10,0:10"]), "error",
         "is not three low:high ranges"),
    Case("roi_four_ranges", lambda e: predict(e, e.base.npy, extra=["--roi", "0:1,0:1,0:1,0:1"]), "error",
         "is not three low:high ranges"),
    Case("roi_empty_text", lambda e: predict(e, e.base.npy, extra=["--roi", ""]), "error", "is empty"),
    Case("roi_words", lambda e: predict(e, e.base.npy, extra=["--roi", "a:b,c:d,e:f"]), "error", "'a:b,c:d,e:f'"),
    Case("roi_nan", lambda e: predict(e, e.base.npy, extra=["--roi", "nan:1,0:1,0:1"]), "error", "'nan:1,0:1,0:1'"),
    # -- the results file --------------------------------------------------------------------------------------------
    Case("out_dev_zero", lambda e: ["predict", e.base.onnx, e.base.npy, "--out", "/dev/zero"], "error",
         "/dev/zero: is not a regular file"),
    Case("out_dev_full", lambda e: ["predict", e.base.onnx, e.base.npy, "--out", "/dev/full"], "error",
         "/dev/full: is not a regular file"),
    Case("out_proc_version", lambda e: ["predict", e.base.onnx, e.base.npy, "--out", "/proc/version"], "error",
         "/proc/version"),
    Case("out_fifo", lambda e: ["predict", e.base.onnx, e.base.npy, "--out", _fifo_out(e)], "error",
         "is not a regular file"),
    Case("out_is_folder", lambda e: ["predict", e.base.onnx, e.base.npy, "--out", e.tmp], "error", "is a folder"),
    Case("out_under_a_file", lambda e: ["predict", e.base.onnx, e.base.npy, "--out",
                                        _key_file(e, b"x", "f") / "r.jsonl"], "error", "r.jsonl"),
    Case("out_text_file", lambda e: predict(e, e.base.npy) if _out_with(e, b"hello\nworld\n") else None, "error",
         "line 1 is not valid JSON"),
    Case("out_garbled_middle_line", lambda e: predict(e, e.base.npy) if _out_with(
        e, b'{"case": "a"}\nnot json\n{"case": "b"}\n') else None, "error", "line 2 is not valid JSON"),
    Case("ok_out_partial_last_line_resumed", lambda e: predict(e, e.base.npy) if _out_with(
        e, b'{"case": "a"}\n{"case": "b", "prob') else None, "ok", "", _resumed),
    Case("ok_out_in_new_nested_folder", lambda e: ["predict", e.base.onnx, e.base.npy, "--out", _nested(e), "--roi",
                                                   "whole"], "ok"),
    Case("out_locked_by_another_run", lambda e: predict(e, e.base.npy) if _locked_out(e) else None, "error",
         "is being written by another sranet run", _release),
    Case("heatmaps_is_a_file", lambda e: predict(e, e.base.npy, extra=["--heatmaps", _key_file(e, b"x", "maps")]),
         "error", "is a file"),
    Case("heatmaps_dev_null", lambda e: predict(e, e.base.npy, extra=["--heatmaps", "/dev/null"]), "error",
         "/dev/null"),
    # -- manifests ---------------------------------------------------------------------------------------------------
    Case("ok_manifest", lambda e: _manifest_cases(e, "case_id,path,label", lambda a, b: [f"a,{a},0", f"b,{b},1"]),
         "ok"),
    Case("ok_manifest_relative_paths_and_bom", lambda e: ["predict", e.base.onnx, "--manifest", _bom_manifest(e),
                                                          "--out", e.out, "--roi", "whole"], "ok"),
    Case("ok_manifest_id_of_150_characters", lambda e: _manifest_cases(e, "case_id,path", lambda a, b: [
        f"{'c' * 150},{a}"]), "ok", "", _key_is_100_chars),
    Case("manifest_ids_equal_in_first_100_characters", lambda e: ["predict", e.base.onnx, "--manifest", _long_ids(e),
                                                                  "--out", e.out], "error", "duplicates the one on line 2"),
    Case("manifest_unknown_column", lambda e: _manifest_cases(e, "case_id,path,lable", lambda a, b: [f"a,{a},1"]),
         "error", "unknown column 'lable'"),
    Case("manifest_missing_path_column", lambda e: _manifest_cases(e, "case_id,label", lambda a, b: ["a,1"]), "error",
         "required column 'path'"),
    Case("manifest_duplicate_ids", lambda e: _manifest_cases(e, "case_id,path", lambda a, b: [f"a,{a}", f"a,{b}"]),
         "error", "duplicates the one on line 2"),
    Case("manifest_id_without_usable_characters", lambda e: _manifest_cases(e, "case_id,path",
                                                                            lambda a, b: [f"///,{a}"]),
         "error", "no characters usable in a file name"),
    Case("manifest_label_two", lambda e: _manifest_cases(e, "case_id,path,label", lambda a, b: [f"a,{a},2"]), "error",
         "label='2'"),
    Case("manifest_stage_seven", lambda e: _manifest_cases(e, "case_id,path,stage", lambda a, b: [f"a,{a},7"]),
         "error", "stage='7'"),
    Case("manifest_label_contradicts_stage", lambda e: _manifest_cases(e, "case_id,path,label,stage",
                                                                       lambda a, b: [f"a,{a},0,3"]),
         "error", "contradicts stage=3"),
    Case("manifest_split_unknown", lambda e: _manifest_cases(e, "case_id,path,split", lambda a, b: [f"a,{a},dev"]),
         "error", "split='dev'"),
    Case("manifest_side_unknown", lambda e: _manifest_cases(e, "case_id,path,side", lambda a, b: [f"a,{a},X"]),
         "error", "side='X'"),
    Case("manifest_roi_invalid", lambda e: _manifest_cases(e, "case_id,path,roi", lambda a, b: [f"a,{a},1:2"]),
         "error", "roi='1:2' is not a valid ROI"),
    Case("manifest_wrong_cell_count", lambda e: _manifest_cases(e, "case_id,path", lambda a, b: [f"a,{a},extra"]),
         "error", "has 3 cells but the header has 2"),
    Case("manifest_header_only", lambda e: _manifest_cases(e, "case_id,path", lambda a, b: []), "error",
         "header but no cases"),
    Case("manifest_empty", lambda e: ["predict", e.base.onnx, "--manifest", _key_file(e, b"", "m.csv"), "--out",
                                      e.out], "error", "manifest is empty"),
    Case("manifest_not_utf8", lambda e: ["predict", e.base.onnx, "--manifest", _key_file(
        e, b"case_id,path\n\xff\xfe,\xc3\n", "m.csv"), "--out", e.out], "error", "cannot read the manifest"),
    Case("manifest_is_folder", lambda e: ["predict", e.base.onnx, "--manifest", e.tmp, "--out", e.out], "error",
         "manifest is not a file"),
    Case("manifest_dev_zero", lambda e: ["predict", e.base.onnx, "--manifest", "/dev/zero", "--out", e.out], "error",
         "/dev/zero"),
    Case("manifest_fifo", lambda e: ["predict", e.base.onnx, "--manifest", _fifo_out(e, "m.csv"), "--out", e.out],
         "error", "m.csv"),
    Case("manifest_missing", lambda e: ["predict", e.base.onnx, "--manifest", e.tmp / "nope.csv", "--out", e.out],
         "error", "manifest not found"),
    Case("manifest_row_path_missing", lambda e: _manifest_cases(e, "case_id,path", lambda a, b: [
        f"a,{a}", "b,missing.npy"]), "failure", "missing.npy: does not exist"),
]


def _nested(env) -> Path:
    """The results file in folders that do not exist yet: the case's own results file, through a symlink."""
    target = env.tmp / "a" / "b" / "results.jsonl"
    os.symlink(target, env.out)  # the classifier reads env.out; the run creates a/b/ and the file
    return target


def _fifo_out(env, name="out.jsonl") -> Path:
    path = env.tmp / name
    os.mkfifo(path)
    return path


def _bom_manifest(env) -> Path:
    write_npy(env.tmp / "cases" / "a.npy", good_hu(seed=4))
    path = env.tmp / "m.csv"
    path.write_bytes("\ufeffcase_id,path\na,cases/a.npy\n".encode())
    return path


__all__ = ["CASES", "np"]
