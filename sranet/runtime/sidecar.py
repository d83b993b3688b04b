"""The JSON sidecar next to every TensorRT plan, read and checked before the plan is deserialised.

A plan stays raw (loadable by ``trtexec`` and Triton); everything needed to trust and use it lives in
``<engine>.json`` (``model.engine`` -> ``model.engine.json``): TensorRT and CUDA versions, the GPU and its compute
capability, precision, the optimisation profile, SHA-256 of the plan and of the source ONNX, the ArtifactInfo
(model config, preprocessing config, threshold) and the build path that was taken (TensorRT 10 builder flags or
TensorRT 11 strong typing). ``sranet.export.sidecar`` writes it. Plain Python and JSON: testable without TensorRT.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sranet.errors import ArtifactError, EngineCompatibilityError
from sranet.runtime.artifact import ArtifactInfo, sha256_file

SIDECAR_FORMAT = "sranet-engine-sidecar/1"


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    """``model.engine`` -> ``model.engine.json`` (the suffix is kept so ``.engine`` and ``.plan`` never collide)."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


@dataclass(frozen=True)
class DeviceEnv:
    """What a plan is tied to: TensorRT version, GPU name and compute capability ("9.0"), CUDA versions."""

    tensorrt: str
    gpu_name: str
    compute_capability: str
    cuda_runtime: str = ""
    cuda_driver: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"tensorrt": self.tensorrt, "gpu_name": self.gpu_name, "compute_capability": self.compute_capability,
                "cuda_runtime": self.cuda_runtime, "cuda_driver": self.cuda_driver}


def rebuild_command(sidecar: dict[str, Any], engine_path: str | os.PathLike) -> str:
    """The exact ``sranet export ... --engine`` command that rebuilds this plan with the same options."""
    opts = sidecar.get("options", {})
    source = sidecar.get("source") or "CHECKPOINT"
    # `sranet export --out X.onnx --engine` writes X.onnx and X.engine next to it
    onnx_out = Path(engine_path).with_suffix(".onnx")
    args = ["sranet", "export", str(source), "--out", str(onnx_out), "--engine"]
    precision = opts.get("precision", "fp32")
    if precision == "fp16":
        args.append("--fp16")
    elif precision == "int8":
        args += ["--int8", "--calib", "MANIFEST"]
    args += ["--profile", f"{opts.get('batch_min', 1)}:{opts.get('batch_opt', 1)}:{opts.get('batch_max', 1)}"]
    args += ["--workspace-gib", f"{opts.get('workspace_gib', 4.0):g}"]
    if opts.get("timing_cache"):
        args += ["--timing-cache", str(opts["timing_cache"])]
    if opts.get("version_compatible"):
        args.append("--version-compatible")
    if opts.get("hardware_compatibility") not in (None, "none"):
        args += ["--hardware-compatibility", opts["hardware_compatibility"]]
    if opts.get("dla_core") is not None:
        args += ["--dla-core", str(opts["dla_core"])]
    return shlex.join(args)


def read_sidecar(engine_path: str | os.PathLike) -> dict[str, Any]:
    """Read and structurally check ``<engine>.json``. Missing or malformed -> ArtifactError saying how to rebuild."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise ArtifactError(
            f"has no sidecar {path.name}; sranet needs it to check the plan and to know how to preprocess.",
            path=engine_path,
            hint="Build the engine with `sranet export CHECKPOINT --engine`, which writes both files.",
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"sidecar is not valid JSON ({exc}).", path=path) from exc
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise ArtifactError(
            f"sidecar format is {data.get('format') if isinstance(data, dict) else None!r}; expected {SIDECAR_FORMAT!r}.",
            path=path, hint="Rebuild the engine with this version of sranet.",
        )
    for key in ("plan", "tensorrt", "gpu", "precision", "profile", "options", "artifact"):
        if key not in data:
            raise ArtifactError(f"sidecar lacks {key!r}; it is incomplete.", path=path,
                                hint="Rebuild the engine with `sranet export CHECKPOINT --engine`.")
    from sranet.runtime.signing import verify_sidecar

    verify_sidecar(data, path=path)  # its own digest: an edited threshold or plan hash is refused here
    return data


def sidecar_info(sidecar: dict[str, Any], *, path: str | os.PathLike | None = None) -> ArtifactInfo:
    return ArtifactInfo.from_metadata(sidecar["artifact"], path=path)


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in str(text).split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def compatibility_problems(sidecar: dict[str, Any], env: DeviceEnv) -> list[str]:
    """Why this plan cannot be deserialised here (empty list: it can). Pure function of sidecar and environment.

    TensorRT version: an exact match, or with ``version_compatible`` any later runtime (TensorRT runs
    version-compatible plans from older builders, not the reverse). GPU: the same compute capability and model
    name, unless the plan was built hardware-compatible (ampere+: compute capability >= 8.0 here;
    same-compute-capability: equal compute capability).
    """
    problems = []
    opts = sidecar.get("options", {})
    built, here = str(sidecar["tensorrt"]), env.tensorrt
    if opts.get("version_compatible"):
        if _version_tuple(here) < _version_tuple(built):
            problems.append(f"it was built with TensorRT {built} (version-compatible), newer than TensorRT {here} here")
    elif built != here:
        problems.append(f"it was built with TensorRT {built}, this machine has TensorRT {here}")

    gpu = sidecar["gpu"]
    cc_built, cc_here = str(gpu.get("compute_capability")), env.compute_capability
    level = opts.get("hardware_compatibility") or "none"
    if level == "ampere+":
        if _version_tuple(cc_here) < (8, 0):
            problems.append(f"it was built for Ampere and newer (compute capability >= 8.0), this GPU is {cc_here}")
    elif cc_built != cc_here:
        problems.append(f"it was built on a {gpu.get('name')} (compute capability {cc_built}), "
                        f"this GPU is a {env.gpu_name} (compute capability {cc_here})")
    elif level == "none" and gpu.get("name") != env.gpu_name:
        problems.append(f"it was built on a {gpu.get('name')}, this GPU is a {env.gpu_name} "
                        "(same compute capability, but plans are tuned to one GPU model)")
    return problems


def check_sidecar(engine_path: str | os.PathLike, env: DeviceEnv, *, check_sha: bool = True) -> dict[str, Any]:
    """Everything to check BEFORE deserialising a plan. Returns the sidecar.

    Raises EngineCompatibilityError (with the rebuild command) for another TensorRT version or GPU, and
    ArtifactError when the plan's SHA-256 is not the one recorded (a different or damaged file).
    """
    sidecar = read_sidecar(engine_path)
    problems = compatibility_problems(sidecar, env)
    if problems:
        raise EngineCompatibilityError(
            "cannot run here: " + "; ".join(problems) + ".",
            path=engine_path,
            hint=f"TensorRT plans are tied to the GPU and TensorRT version they were built with. Rebuild it on this "
                 f"machine: {rebuild_command(sidecar, engine_path)}",
        )
    if check_sha:
        actual = sha256_file(engine_path)
        expected = sidecar["plan"].get("sha256")
        if actual != expected:
            raise ArtifactError(
                f"SHA-256 of the plan is {actual[:16]}..., the sidecar records {str(expected)[:16]}...; the plan was "
                "replaced or damaged after it was built.",
                path=engine_path,
                hint=f"Rebuild it: {rebuild_command(sidecar, engine_path)}",
            )
    return sidecar


__all__ = [
    "SIDECAR_FORMAT", "DeviceEnv", "check_sidecar", "compatibility_problems", "read_sidecar", "rebuild_command",
    "sidecar_info", "sidecar_path",
]
