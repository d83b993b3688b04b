"""Artifact integrity: an artifact's content is checked against the digest recorded when it was written, before it
runs, and it may carry an Ed25519 signature so that a deployment runs only what a key it trusts has signed.

Digests (SHA-256, hex), one per kind of artifact:

- ONNX (``.onnx``): metadata entry ``sranet.content_sha256``, over the model serialised deterministically without
  the integrity entries (``INTEGRITY_KEYS``): graph, weights, opsets and every other metadata entry (threshold,
  model and preprocessing configs). Weights must be inside the file (no external data).
- TensorRT plan (``.engine``/``.plan``): the sidecar records the plan's SHA-256 (checked against the plan), and its
  own ``integrity.content_sha256`` covers the sidecar's canonical JSON (sorted keys, no spaces) without its
  ``integrity`` entry: plan hash, threshold, configs, build options.
- Checkpoint (``.pt``): ``integrity.content_sha256`` inside the checkpoint dict, over what a prediction depends on
  (format, model and preprocessing configs, threshold, and every tensor of ``model_state``: name, dtype, shape,
  bytes); ``sranet.model.checkpoint`` computes and checks it whenever a checkpoint is loaded.
- OpenVINO IR (``.xml`` + ``.bin``): entry ``sranet.content_sha256`` of ``<rt_info><sranet>``, over the XML in its
  canonical form (C14N 2.0) without the integrity entries, and the SHA-256 of the ``.bin``: topology, every layer's
  weight offsets, the weights themselves and every metadata entry.

An artifact without its digest, or whose content does not match it, is refused (IntegrityError) when it is opened
(``open_backend``, so ``Predictor.from_artifact``, ``sranet predict`` and ``sranet benchmark``), before anything
runs.

A digest proves that nothing changed by accident, or by someone who did not recompute it. A signature proves who
made the artifact: signing adds an Ed25519 signature over ``b"sranet-artifact-signature/1\\n<kind>\\n<digest>"`` and
the id of the key (the first 16 hex digits of the SHA-256 of its raw public key). With trusted keys configured
(``open_backend(..., trusted_keys=[...])``, ``sranet predict --trusted-key PUB``), an unsigned artifact, one signed
by another key, and one whose signature does not verify are refused. Keys are PEM files: an unencrypted private
key to sign (``sranet export --sign KEY``), public keys to trust. ``openssl genpkey -algorithm ed25519 -out
sign.pem`` and ``openssl pkey -in sign.pem -pubout -out sign.pub.pem`` make a pair. Signatures need the
``cryptography`` package (``pip install 'sranet[sign]'``); without it, a configured trusted key is an error,
never skipped.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from pathlib import Path

from sranet.errors import ArtifactError, IntegrityError
from sranet.runtime.artifact import INTEGRITY_KEYS, KEY_DIGEST, KEY_SIGNATURE, KEY_SIGNING_KEY
from sranet.runtime.signing import (
    check_signature,
    load_signing_key,
    load_trusted_keys,
    seal_sidecar,
    signature_fields,
    verify_sidecar,
)

# suffix -> "module:function" (path, trusted_keys) -> digest; imported lazily (a checkpoint needs torch)
VERIFIERS: dict[str, str] = {
    ".onnx": "sranet.runtime.integrity:verify_onnx",
    ".engine": "sranet.runtime.integrity:verify_engine",
    ".plan": "sranet.runtime.integrity:verify_engine",
    ".pt": "sranet.model.checkpoint:verify_checkpoint",
    ".xml": "sranet.runtime.integrity:verify_openvino_ir",
}
# suffix -> "module:function" (path, signing_key) -> digest
SIGNERS: dict[str, str] = {
    ".onnx": "sranet.runtime.integrity:sign_onnx",
    ".engine": "sranet.runtime.integrity:sign_engine",
    ".plan": "sranet.runtime.integrity:sign_engine",
    ".pt": "sranet.model.checkpoint:sign_checkpoint",
    ".xml": "sranet.runtime.integrity:sign_openvino_ir",
}
IR_SECTION = "sranet"  # <rt_info><sranet>: where an OpenVINO IR keeps ArtifactInfo (sranet.runtime.backends.openvino)


# -- ONNX -----------------------------------------------------------------------------------------------------------
def onnx_digest(model) -> str:
    """SHA-256 (hex) of ``model`` (onnx.ModelProto) serialised deterministically without INTEGRITY_KEYS entries."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    kept = [p for p in copy.metadata_props if p.key not in INTEGRITY_KEYS]
    del copy.metadata_props[:]
    copy.metadata_props.extend(kept)
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


def seal_onnx(model, signing_key=None) -> str:
    """Record the content digest (and, with ``signing_key``, a signature) in ``model``'s metadata, replacing any
    earlier one. Call it last, once the graph and every other metadata entry are final. Returns the digest."""
    digest = onnx_digest(model)
    props = {KEY_DIGEST: digest}
    if signing_key is not None:
        fields = signature_fields("onnx", digest, signing_key)
        props.update({KEY_SIGNATURE: fields["signature"], KEY_SIGNING_KEY: fields["key_id"]})
    kept = [p for p in model.metadata_props if p.key not in INTEGRITY_KEYS]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return digest


def _load_onnx(path: str | os.PathLike):
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and others for a damaged file
        raise ArtifactError(f"is not a readable ONNX model ({type(exc).__name__}: {exc}).", path=path,
                            hint="Export it again with `sranet export CHECKPOINT --out model.onnx`.") from exc


def verify_onnx(path: str | os.PathLike, trusted_keys=None) -> str:
    """Check an ONNX artifact's digest (and signature, with ``trusted_keys``); return the digest. IntegrityError
    (or ArtifactError for a file that is not an sranet ONNX) otherwise."""
    from sranet.runtime.artifact import ArtifactInfo

    trusted = load_trusted_keys(trusted_keys)
    model = _load_onnx(path)
    meta = {p.key: p.value for p in model.metadata_props}
    ArtifactInfo.from_metadata(meta, path=path)  # "not written by sranet export" before "no digest"
    import onnx

    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise IntegrityError("keeps weights in external data files, which its digest cannot cover.", path=path,
                             hint="Export it again with `sranet export` (weights inside the .onnx).")
    recorded = meta.get(KEY_DIGEST)
    if not recorded:
        raise IntegrityError(
            f"has no content digest (metadata {KEY_DIGEST}): it was not sealed by `sranet export`, so nothing shows "
            "whether its graph, weights or threshold were changed.", path=path,
            hint="Export it again with `sranet export CHECKPOINT --out model.onnx`.")
    actual = onnx_digest(model)
    if actual != recorded:
        raise IntegrityError(
            f"its content (SHA-256 {actual[:16]}...) does not match the digest recorded at export "
            f"({recorded[:16]}...): the graph, weights or metadata (such as the threshold) were changed after export.",
            path=path, hint="Use the artifact as `sranet export` wrote it, or export it again.")
    check_signature("onnx", recorded, meta.get(KEY_SIGNATURE), meta.get(KEY_SIGNING_KEY), trusted, path=path)
    return recorded


def sign_onnx(path: str | os.PathLike, signing_key) -> str:
    """Add a signature to a sealed ONNX file in place (atomically), after checking its digest. Returns the digest."""
    from sranet.runtime.files import atomic_write

    verify_onnx(path)
    model = _load_onnx(path)
    digest = seal_onnx(model, signing_key)
    atomic_write(path, model.SerializeToString())
    return digest


# -- engines ---------------------------------------------------------------------------------------------------------
def verify_engine(path: str | os.PathLike, trusted_keys=None) -> str:
    """Check a plan's sidecar (its digest and signature) and the plan's SHA-256 against it; return the sidecar's
    digest. Needs no TensorRT."""
    from sranet.runtime.artifact import sha256_file
    from sranet.runtime.sidecar import read_sidecar, sidecar_path

    sidecar = read_sidecar(path)  # checks the sidecar's digest
    digest = verify_sidecar(sidecar, path=sidecar_path(path), trusted_keys=trusted_keys)
    expected = str(sidecar["plan"].get("sha256"))
    actual = sha256_file(path)
    if actual != expected:
        raise IntegrityError(
            f"SHA-256 of the plan is {actual[:16]}..., the sidecar records {expected[:16]}...; the plan was replaced "
            "or damaged after it was built.", path=path, hint="Rebuild the engine with `sranet export ... --engine`.")
    return digest


def sign_engine(path: str | os.PathLike, signing_key) -> str:
    """Sign a plan's sidecar in place (atomically), after checking it and the plan. Returns the digest."""
    from sranet.runtime.files import atomic_write
    from sranet.runtime.sidecar import read_sidecar, sidecar_path

    verify_engine(path)
    sealed = seal_sidecar(read_sidecar(path), signing_key)
    atomic_write(sidecar_path(path), json.dumps(sealed, indent=2, sort_keys=True) + "\n")
    return sealed["integrity"]["content_sha256"]


# -- OpenVINO IR ------------------------------------------------------------------------------------------------------
def _ir_tree(path: str | os.PathLike):
    """(tree, <rt_info><sranet> element or None) of an IR's XML; ArtifactError when it is not XML."""
    import xml.etree.ElementTree as ET

    try:
        tree = ET.parse(path)
    except (ET.ParseError, OSError) as exc:
        raise ArtifactError(f"is not a readable OpenVINO IR ({type(exc).__name__}: {exc}).", path=path,
                            hint="Export it again with `sranet export CHECKPOINT --target openvino-cpu`.") from exc
    return tree, tree.getroot().find(f"rt_info/{IR_SECTION}")


def _ir_weights(path: str | os.PathLike) -> Path:
    weights = Path(path).with_suffix(".bin")
    if not weights.is_file():
        raise ArtifactError(f"has no weights file {weights.name} beside it.", path=path,
                            hint="Copy the .xml together with its .bin.")
    return weights


def _ir_digest(tree, section, path) -> str:
    """SHA-256 of the canonical XML without the integrity entries, and of the weights file."""
    import xml.etree.ElementTree as ET

    from sranet.runtime.artifact import sha256_file

    removed = [] if section is None else [e for e in section if e.tag in INTEGRITY_KEYS]
    for element in removed:
        section.remove(element)
    try:
        canonical = ET.canonicalize(ET.tostring(tree.getroot(), encoding="unicode"))
    finally:
        for element in removed:
            section.append(element)
    digest = hashlib.sha256(b"sranet-openvino-ir/1\n")
    digest.update(canonical.encode("utf-8"))
    digest.update(f"\n{sha256_file(_ir_weights(path))}".encode())
    return digest.hexdigest()


def seal_openvino_ir(path: str | os.PathLike, signing_key=None) -> str:
    """Write the content digest (and, with ``signing_key``, a signature) into an IR's ``<rt_info><sranet>``, replacing
    any earlier one. Call it once the .xml and .bin are final. Returns the digest."""
    import xml.etree.ElementTree as ET

    tree, section = _ir_tree(path)
    if section is None:
        raise ArtifactError("has no <rt_info><sranet> section to record its digest in.", path=path)
    for element in [e for e in section if e.tag in INTEGRITY_KEYS]:
        section.remove(element)
    digest = _ir_digest(tree, section, path)
    entries = {KEY_DIGEST: digest}
    if signing_key is not None:
        fields = signature_fields("openvino", digest, signing_key)
        entries.update({KEY_SIGNATURE: fields["signature"], KEY_SIGNING_KEY: fields["key_id"]})
    for key, value in entries.items():
        ET.SubElement(section, key, {"value": value})
    from sranet.runtime.files import atomic_write

    atomic_write(path, lambda f: tree.write(f, encoding="utf-8", xml_declaration=True))
    return digest


def verify_openvino_ir(path: str | os.PathLike, trusted_keys=None) -> str:
    """Check an IR's digest (and signature, with ``trusted_keys``) against its .xml and .bin; return the digest."""
    from sranet.runtime.artifact import ArtifactInfo

    trusted = load_trusted_keys(trusted_keys)
    tree, section = _ir_tree(path)
    meta = {} if section is None else {e.tag: e.get("value", "") for e in section}
    ArtifactInfo.from_metadata(meta, path=path)  # "not written by sranet export" before "no digest"
    recorded = meta.get(KEY_DIGEST)
    if not recorded:
        raise IntegrityError(
            f"has no content digest (rt_info entry {KEY_DIGEST}): it was not sealed by `sranet export`, so nothing "
            "shows whether its topology, weights or threshold were changed.", path=path,
            hint="Export it again with `sranet export CHECKPOINT --target openvino-cpu`.")
    actual = _ir_digest(tree, section, path)
    if actual != recorded:
        raise IntegrityError(
            f"its content (SHA-256 {actual[:16]}...) does not match the digest recorded at export ({recorded[:16]}...): "
            "the topology, the weights (.bin) or the metadata (such as the threshold) were changed after export.",
            path=path, hint="Use the .xml and .bin as `sranet export` wrote them, or export again.")
    check_signature("openvino", recorded, meta.get(KEY_SIGNATURE), meta.get(KEY_SIGNING_KEY), trusted, path=path)
    return recorded


def sign_openvino_ir(path: str | os.PathLike, signing_key) -> str:
    """Sign a sealed IR in place (atomically), after checking its digest. Returns the digest."""
    verify_openvino_ir(path)
    return seal_openvino_ir(path, signing_key)


# -- any artifact ---------------------------------------------------------------------------------------------------
def _registered(table: dict[str, str], path: str | os.PathLike, what: str):
    suffix = Path(path).suffix.lower()
    if suffix not in table:
        raise ArtifactError(f"has suffix {suffix!r}; sranet {what} {', '.join(sorted(table))} artifacts.", path=path)
    module, name = table[suffix].split(":")
    return getattr(importlib.import_module(module), name)


def verify_artifact(path: str | os.PathLike, trusted_keys=None) -> str:
    """Check any artifact (by suffix) before it runs: its content digest and, with ``trusted_keys`` (PEM paths or
    public keys), its signature. Returns the digest; IntegrityError / ArtifactError otherwise."""
    return _registered(VERIFIERS, path, "checks")(path, trusted_keys)


def sign_artifact(path: str | os.PathLike, signing_key) -> str:
    """Sign any artifact (by suffix) in place with ``signing_key`` (PEM path or private key), after checking its
    digest. Returns the digest."""
    return _registered(SIGNERS, path, "signs")(path, signing_key)


__all__ = [
    "INTEGRITY_KEYS", "KEY_DIGEST", "KEY_SIGNATURE", "KEY_SIGNING_KEY", "SIGNERS", "VERIFIERS", "check_signature",
    "load_signing_key", "load_trusted_keys", "onnx_digest", "seal_onnx", "seal_sidecar", "sign_artifact",
    "seal_openvino_ir", "sign_engine", "sign_onnx", "sign_openvino_ir", "verify_artifact", "verify_engine",
    "verify_onnx", "verify_openvino_ir", "verify_sidecar",
]
