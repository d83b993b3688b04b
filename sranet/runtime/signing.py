"""Ed25519 keys and signatures over artifact digests, and the digest of an engine sidecar (canonical JSON).

The low-level half of ``sranet.runtime.integrity`` (which explains the scheme): it imports nothing of sranet's but
its errors, so the sidecar reader and the checkpoint code can use it. Signatures need the ``cryptography`` package
(``pip install 'sranet[sign]'``); it is imported only when a key is used.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sranet.errors import DependencyMissingError, InputError, IntegrityError

SIGNATURE_DOMAIN = "sranet-artifact-signature/1"
CRYPTO_HINT = "pip install 'sranet[sign]' (the cryptography package)."
KEYGEN_HINT = ("Make a key pair with: openssl genpkey -algorithm ed25519 -out sign.pem && "
               "openssl pkey -in sign.pem -pubout -out sign.pub.pem")
KEY_MAX_BYTES = 64 << 10  # a PEM key is a few hundred bytes


# -- keys -----------------------------------------------------------------------------------------------------------
def _ed25519():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:
        raise DependencyMissingError("signing and checking signatures need the cryptography package, which is not "
                                     "installed.", hint=CRYPTO_HINT) from exc
    return ed25519, serialization


def _read_pem(path: str | os.PathLike, what: str) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} {str(p)!r} does not exist or is not a file.", hint=KEYGEN_HINT)
    if p.stat().st_size > KEY_MAX_BYTES:
        raise InputError(f"{what} {str(p)!r} is {p.stat().st_size} bytes; a PEM key is a few hundred.",
                         hint="Give the key file itself.")
    return p.read_bytes()


def load_signing_key(key: Any):
    """An Ed25519 private key from a PEM file (unencrypted PKCS#8, as openssl genpkey writes), or the key itself."""
    ed25519, serialization = _ed25519()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    data = _read_pem(key, "signing key")
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # encrypted, and no password
        raise InputError(f"signing key {str(key)!r} is encrypted; sranet reads unencrypted PEM keys.",
                         hint="Decrypt a copy on the signing machine: openssl pkey -in KEY -out plain.pem") from exc
    except ValueError as exc:
        hint = ("This is a public key; signing needs the private key it belongs to." if b"PUBLIC KEY" in data
                else KEYGEN_HINT)
        raise InputError(f"signing key {str(key)!r} is not a PEM private key ({exc}).", hint=hint) from exc
    if not isinstance(private, ed25519.Ed25519PrivateKey):
        raise InputError(f"signing key {str(key)!r} is a {type(private).__name__.lstrip('_')}, not an Ed25519 key.",
                         hint=KEYGEN_HINT)
    return private


def load_trusted_keys(keys: Any) -> list:
    """Ed25519 public keys from PEM files (or key objects): None -> [] (no signature required)."""
    if keys is None:
        return []
    if isinstance(keys, (str, os.PathLike)) or not isinstance(keys, Iterable):
        keys = [keys]
    keys = list(keys)
    if not keys:
        return []
    ed25519, serialization = _ed25519()
    out = []
    for key in keys:
        if isinstance(key, ed25519.Ed25519PublicKey):
            out.append(key)
            continue
        data = _read_pem(key, "trusted key")
        if b"PRIVATE KEY" in data:
            raise InputError(f"trusted key {str(key)!r} is a private key; trust is given to public keys, and a "
                             "private key belongs only on the signing machine.",
                             hint="Give its public key: openssl pkey -in KEY -pubout -out key.pub.pem")
        try:
            public = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as exc:
            raise InputError(f"trusted key {str(key)!r} is not a PEM public key ({exc}).", hint=KEYGEN_HINT) from exc
        if not isinstance(public, ed25519.Ed25519PublicKey):
            raise InputError(f"trusted key {str(key)!r} is a {type(public).__name__.lstrip('_')}, not an Ed25519 "
                             "key.", hint=KEYGEN_HINT)
        out.append(public)
    return out


def key_id(key) -> str:
    """First 16 hex digits of the SHA-256 of the raw public key (of a private key: of its public key)."""
    _, serialization = _ed25519()
    public = key.public_key() if hasattr(key, "public_key") else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _message(kind: str, digest: str) -> bytes:
    return f"{SIGNATURE_DOMAIN}\n{kind}\n{digest}".encode()


def signature_fields(kind: str, digest: str, signing_key) -> dict[str, str]:
    """{"signature": base64 Ed25519 signature of the digest, "key_id": ...} for ``kind`` ("onnx", "engine",
    "checkpoint")."""
    private = load_signing_key(signing_key)
    signature = private.sign(_message(kind, digest))
    return {"signature": base64.b64encode(signature).decode("ascii"), "key_id": key_id(private)}


def check_signature(kind: str, digest: str, signature: str | None, signer: str | None, trusted: list, *,
                    path) -> None:
    """Raise IntegrityError unless ``signature`` over ``digest`` verifies with one of ``trusted`` (public keys).
    Nothing is required when ``trusted`` is empty."""
    if not trusted:
        return
    ids = ", ".join(key_id(k) for k in trusted)
    if not signature:
        raise IntegrityError(
            f"is not signed, and trusted keys are configured ({ids}): only artifacts signed by one of them run.",
            path=path, hint="Sign it where it is made: sranet export ... --sign KEY.")
    try:
        raw = base64.b64decode(signature, validate=True)
    except ValueError:
        raw = b""
    from cryptography.exceptions import InvalidSignature

    for key in trusted:
        try:
            key.verify(raw, _message(kind, digest))
            return
        except InvalidSignature:
            continue
    if signer and signer not in {key_id(k) for k in trusted}:
        raise IntegrityError(f"is signed by key {signer}, which is not a trusted key ({ids}).", path=path,
                             hint="Run artifacts signed by a trusted key, or add that key's public key with "
                                  "--trusted-key if you trust it.")
    raise IntegrityError(f"its signature does not verify with the trusted key(s) {ids}: the artifact was changed "
                         "after it was signed, or the signature is not genuine.", path=path,
                         hint="Use the artifact as it was exported and signed.")


# -- engine sidecars ------------------------------------------------------------------------------------------------
def _canonical(data: dict) -> bytes:
    try:
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()
    except ValueError as exc:
        raise IntegrityError(f"sidecar holds a value JSON cannot carry exactly ({exc}).") from exc


def sidecar_digest(sidecar: dict) -> str:
    """SHA-256 (hex) of the sidecar's canonical JSON without its ``integrity`` entry."""
    return hashlib.sha256(_canonical({k: v for k, v in sidecar.items() if k != "integrity"})).hexdigest()


def seal_sidecar(sidecar: dict, signing_key=None) -> dict:
    """The sidecar with ``integrity`` = {content_sha256[, signature, key_id]} (any earlier one replaced)."""
    digest = sidecar_digest(sidecar)
    integrity = {"content_sha256": digest}
    if signing_key is not None:
        integrity.update(signature_fields("engine", digest, signing_key))
    return {**{k: v for k, v in sidecar.items() if k != "integrity"}, "integrity": integrity}


def verify_sidecar(sidecar: dict, *, path, trusted_keys=None) -> str:
    """Check a sidecar's own digest (and signature, with ``trusted_keys``); return the digest."""
    trusted = load_trusted_keys(trusted_keys)
    integrity = sidecar.get("integrity")
    if not isinstance(integrity, dict) or not integrity.get("content_sha256"):
        raise IntegrityError("sidecar has no content digest (integrity.content_sha256): nothing shows whether the "
                             "plan hash, threshold or configs in it were changed.", path=path,
                             hint="Rebuild the engine with `sranet export CHECKPOINT --engine`.")
    recorded = str(integrity["content_sha256"])
    actual = sidecar_digest(sidecar)
    if actual != recorded:
        raise IntegrityError(
            f"sidecar content (SHA-256 {actual[:16]}...) does not match the digest recorded when the plan was built "
            f"({recorded[:16]}...): it was edited after the build.", path=path,
            hint="Use the sidecar as `sranet export --engine` wrote it, or rebuild the engine.")
    check_signature("engine", recorded, integrity.get("signature"), integrity.get("key_id"), trusted, path=path)
    return recorded


__all__ = ["check_signature", "key_id", "load_signing_key", "load_trusted_keys", "seal_sidecar", "sidecar_digest",
           "signature_fields", "verify_sidecar"]
