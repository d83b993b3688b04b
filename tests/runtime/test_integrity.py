"""Artifact integrity: content digests recorded when an artifact is written and checked when it is opened, and
Ed25519 signatures required once a trusted key is configured (ONNX, engine sidecars; checkpoints in
tests/model/test_checkpoint_integrity.py)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from sranet.errors import ArtifactError, InputError, IntegrityError
from sranet.runtime.artifact import KEY_DIGEST, KEY_SIGNATURE, KEY_SIGNING_KEY, KEY_THRESHOLD
from sranet.runtime.backends.base import open_backend
from sranet.runtime.integrity import (
    onnx_digest,
    seal_onnx,
    sign_artifact,
    verify_artifact,
    verify_onnx,
)
from sranet.runtime.sidecar import read_sidecar, sidecar_path
from sranet.runtime.signing import key_id, load_signing_key, load_trusted_keys
from tests.helpers import small_graph_onnx, write_engine

pytest.importorskip("cryptography")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    from tests.robustness.inputs import make_keys

    root = tmp_path_factory.mktemp("keys")
    return make_keys(root, "a"), make_keys(root, "b")


def _meta(path):
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_onnx_digest_covers_graph_weights_and_metadata_but_not_itself(tmp_path):
    import onnx

    path = small_graph_onnx(tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    digest = _meta(path)[KEY_DIGEST]
    assert onnx_digest(proto) == digest == verify_onnx(path)
    # the digest entry itself (and signature entries) are outside it; everything else is inside
    seal_onnx(proto)
    assert onnx_digest(proto) == digest
    for edit in (lambda p: setattr(p, "producer_name", "someone"),
                 lambda p: p.graph.node[0].attribute[0].ints.__setitem__(0, 6),
                 lambda p: p.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(np.array([2], np.int64),
                                                                                        "axes")),
                 lambda p: [m for m in p.metadata_props if m.key == KEY_THRESHOLD][0].__setattr__("value", "0.0")):
        changed = onnx.ModelProto()
        changed.CopyFrom(proto)
        edit(changed)
        assert onnx_digest(changed) != digest


def test_a_digest_survives_save_and_load_and_catches_a_flipped_byte(tmp_path):
    import onnx

    path = small_graph_onnx(tmp_path / "m.onnx")
    again = tmp_path / "again.onnx"
    onnx.save(onnx.load(str(path)), str(again))  # re-serialised by another writer: still the same content
    assert verify_onnx(again) == verify_onnx(path)
    raw = bytearray(path.read_bytes())
    at = raw.find(b"sranet.threshold") + 40  # inside the metadata value that follows the key
    raw[at] ^= 0x01
    (tmp_path / "flipped.onnx").write_bytes(bytes(raw))
    with pytest.raises((IntegrityError, ArtifactError)):
        verify_onnx(tmp_path / "flipped.onnx")


def test_unsealed_and_edited_onnx_are_refused_when_opened(tmp_path):
    import onnx

    path = small_graph_onnx(tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    for p in proto.metadata_props:
        if p.key == KEY_THRESHOLD:
            p.value = "0.0"
    onnx.save(proto, str(tmp_path / "edited.onnx"))
    with pytest.raises(IntegrityError, match="changed after export"):
        open_backend(tmp_path / "edited.onnx")
    kept = [p for p in proto.metadata_props if p.key != KEY_DIGEST]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    with pytest.raises(IntegrityError, match="has no content digest"):
        open_backend(tmp_path / "bare.onnx")


def test_signatures_with_trusted_keys(tmp_path, keys):
    (private, public), (other_private, other_public) = keys
    path = small_graph_onnx(tmp_path / "m.onnx")
    with pytest.raises(IntegrityError, match="is not signed"):
        verify_onnx(path, trusted_keys=[public])
    digest = sign_artifact(path, private)
    meta = _meta(path)
    assert meta[KEY_DIGEST] == digest and meta[KEY_SIGNING_KEY] == key_id(load_signing_key(private))
    assert verify_onnx(path, trusted_keys=[public]) == digest
    assert verify_onnx(path, trusted_keys=[other_public, public]) == digest  # any trusted key will do
    assert verify_onnx(path) == digest  # no key configured: the digest alone
    with pytest.raises(IntegrityError, match=f"signed by key {key_id(load_signing_key(private))}, which is not"):
        verify_onnx(path, trusted_keys=[other_public])
    # the signer id claims the trusted key, but the signature is another key's
    import onnx

    forged = tmp_path / "forged.onnx"
    shutil.copy(path, forged)
    sign_artifact(forged, other_private)
    proto = onnx.load(str(forged))
    for p in proto.metadata_props:
        if p.key == KEY_SIGNING_KEY:
            p.value = meta[KEY_SIGNING_KEY]
    onnx.save(proto, str(forged))
    with pytest.raises(IntegrityError, match="signature does not verify"):
        verify_onnx(forged, trusted_keys=[public])
    assert KEY_SIGNATURE in _meta(forged)
    # and the whole opening path takes them: open_backend and Predictor.from_artifact
    from sranet.runtime.predictor import Predictor

    with Predictor.from_artifact(path, trusted_keys=[public]) as predictor:
        assert predictor.info.threshold == 0.5
    with pytest.raises(IntegrityError, match="which is not a trusted key"):
        Predictor.from_artifact(path, trusted_keys=[other_public])


def test_keys_are_checked_with_clear_errors(tmp_path, keys):
    (private, public), _ = keys
    with pytest.raises(InputError, match="is a private key"):
        load_trusted_keys([private])
    with pytest.raises(InputError, match="This is a public key"):
        load_signing_key(public)
    with pytest.raises(InputError, match="does not exist"):
        load_trusted_keys(tmp_path / "none.pem")
    assert load_trusted_keys(None) == [] and len(load_trusted_keys(public)) == 1
    huge = tmp_path / "huge.pem"
    huge.write_bytes(b"x" * 100_000)
    with pytest.raises(InputError, match="a PEM key is a few hundred"):
        load_trusted_keys(huge)


def test_engine_sidecar_digest_and_signature(tmp_path, keys):
    (private, public), (_, other_public) = keys
    engine = write_engine(tmp_path)
    data = read_sidecar(engine)
    assert set(data["integrity"]) == {"content_sha256"}
    with pytest.raises(IntegrityError, match="is not signed"):
        verify_artifact(engine, trusted_keys=[public])
    sign_artifact(engine, private)
    assert verify_artifact(engine, trusted_keys=[public]) == read_sidecar(engine)["integrity"]["content_sha256"]
    with pytest.raises(IntegrityError, match="not a trusted key"):
        verify_artifact(engine, trusted_keys=[other_public])
    # an edited threshold in the sidecar: refused by read_sidecar itself (so by the TensorRT backend too)
    edited = json.loads(sidecar_path(engine).read_text())
    edited["artifact"][KEY_THRESHOLD] = "0.0"
    sidecar_path(engine).write_text(json.dumps(edited))
    with pytest.raises(IntegrityError, match="sidecar content .* does not match"):
        read_sidecar(engine)
    # a sidecar without a digest, and a replaced plan
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    engine2 = write_engine(tmp_path / "b")
    bare = json.loads(sidecar_path(engine2).read_text())
    bare.pop("integrity")
    sidecar_path(engine2).write_text(json.dumps(bare))
    with pytest.raises(IntegrityError, match="sidecar has no content digest"):
        verify_artifact(engine2)
    engine3 = write_engine(tmp_path / "c")
    engine3.write_bytes(b"another plan")
    with pytest.raises(IntegrityError, match="SHA-256 of the plan"):
        verify_artifact(engine3)


def test_verify_artifact_knows_every_backend_suffix():
    from sranet.runtime.backends.base import BACKENDS
    from sranet.runtime.integrity import SIGNERS, VERIFIERS

    assert set(VERIFIERS) == set(BACKENDS) == set(SIGNERS)
    with pytest.raises(ArtifactError, match="has suffix '.h5'"):
        verify_artifact("model.h5")


@pytest.mark.integration
def test_openvino_ir_digest_covers_xml_and_bin(tmp_path, keys, tiny_artifacts):
    import importlib.util

    if importlib.util.find_spec("openvino") is None:  # not importorskip: a plain `import openvino` starts its telemetry
        pytest.skip("openvino is not installed")
    from sranet.export.openvino import export_openvino
    from sranet.runtime.backends.openvino import read_info

    (private, public), (_, other_public) = keys
    ir = export_openvino(tiny_artifacts[1], tmp_path / "m.xml", parity_cases=2, signing_key=private).path
    assert verify_artifact(ir, trusted_keys=[public]) and read_info(ir).threshold == 0.5
    with pytest.raises(IntegrityError, match="not a trusted key"):
        verify_artifact(ir, trusted_keys=[other_public])
    with open_backend(ir, trusted_keys=[public]) as backend:  # the whole opening path
        assert backend.info.precision == "fp32"
    weights = ir.with_suffix(".bin")
    original = weights.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    weights.write_bytes(bytes(flipped))
    with pytest.raises(IntegrityError, match=r"the weights \(.bin\)"):
        open_backend(ir)
    weights.write_bytes(original)
    text = ir.read_text()
    ir.write_text(text.replace('<sranet.threshold value="0.5"', '<sranet.threshold value="0.0"'))
    with pytest.raises(IntegrityError, match="does not match the digest"):
        open_backend(ir)


def test_without_cryptography_a_trusted_key_is_refused_never_skipped(monkeypatch, keys, tmp_path):
    import sys

    from sranet.errors import DependencyMissingError

    (_, public), _ = keys
    for name in [m for m in sys.modules if m == "cryptography" or m.startswith("cryptography.")]:
        monkeypatch.setitem(sys.modules, name, None)  # as if the package were not installed
    monkeypatch.setitem(sys.modules, "cryptography", None)
    path = small_graph_onnx(tmp_path / "m.onnx")
    assert verify_onnx(path)  # the digest needs no cryptography
    with pytest.raises(DependencyMissingError, match=r"pip install 'sranet\[sign\]'"):
        verify_onnx(path, trusted_keys=[public])
