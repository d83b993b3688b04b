"""Writing the JSON sidecar of a TensorRT plan (``sranet.runtime.sidecar`` reads and checks it)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sranet.runtime.artifact import KEY_PRECISION, ArtifactInfo, sha256_file
from sranet.runtime.files import atomic_write
from sranet.runtime.sidecar import SIDECAR_FORMAT, DeviceEnv, sidecar_path


def make_sidecar(
    *,
    plan_path: str | os.PathLike,
    onnx_path: str | os.PathLike,
    info: ArtifactInfo,
    env: DeviceEnv,
    options: dict[str, Any],
    profile: dict[str, list[list[int]]],
    build: dict[str, Any],
    source: str | None = None,
    targets: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Assemble the sidecar dict. ``profile``: input name -> [min, opt, max] shapes (B, 1, S, S, S).

    ``env`` is the builder's machine: flavour, version, GPU (none for a TensorRT-RTX ahead-of-time build), platform.
    ``targets`` (TensorRT-RTX): {"compute_capabilities": what the plan was built for, "offered": every target the
    builder's version has}.
    """
    import datetime

    from sranet import __version__

    return {
        "format": SIDECAR_FORMAT,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "sranet": __version__,
        "plan": {"file": Path(plan_path).name, "sha256": sha256_file(plan_path), "bytes": Path(plan_path).stat().st_size},
        "onnx": {"path": str(onnx_path), "sha256": sha256_file(onnx_path)},
        "source": source,
        "flavour": env.flavour,
        "tensorrt": env.tensorrt,
        "platform": {"machine": env.machine, "system": env.system, "jetson": env.jetson},
        "targets": targets,
        "cuda_runtime": env.cuda_runtime,
        "cuda_driver": env.cuda_driver,
        "gpu": {"name": env.gpu_name, "compute_capability": env.compute_capability},
        "precision": options.get("precision", info.precision),
        "profile": profile,
        "options": options,
        "build": build,
        "artifact": {**info.to_metadata(), KEY_PRECISION: options.get("precision", info.precision)},
    }


def write_sidecar(engine_path: str | os.PathLike, sidecar: dict[str, Any], *, signing_key=None) -> Path:
    """Write ``<engine>.json`` with its content digest (and a signature with ``signing_key``:
    ``sranet.runtime.integrity``)."""
    from sranet.runtime.signing import seal_sidecar

    sealed = seal_sidecar(sidecar, signing_key)
    return atomic_write(sidecar_path(engine_path), json.dumps(sealed, indent=2, sort_keys=True) + "\n")


__all__ = ["make_sidecar", "write_sidecar"]
