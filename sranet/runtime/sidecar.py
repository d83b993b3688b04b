"""The JSON sidecar next to every TensorRT plan, read and checked before the plan is deserialised.

A plan stays raw (loadable by ``trtexec`` and Triton); everything needed to trust and use it lives in
``<engine>.json`` (``model.engine`` -> ``model.engine.json``): TensorRT and CUDA versions, the GPU and its compute
capability, precision, the optimisation profile, SHA-256 of the plan and of the source ONNX, the ArtifactInfo
(model config, preprocessing config, threshold), the build path that was taken (TensorRT 10 builder flags or
TensorRT 11 strong typing), the builder's flavour (``tensorrt`` or ``tensorrt-rtx``; TensorRT-RTX also records its
target compute capabilities) and the platform (CPU architecture and OS) it was built on. ``sranet.export.sidecar``
writes it. Plain Python and JSON: testable without TensorRT.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sranet.errors import ArtifactError, EngineCompatibilityError
from sranet.runtime.artifact import ArtifactInfo, sha256_file

SIDECAR_FORMAT = "sranet-engine-sidecar/1"
# builders: TensorRT 10/11 (module tensorrt) and TensorRT-RTX (module tensorrt_rtx); their plans are not interchangeable
FLAVOURS = ("tensorrt", "tensorrt-rtx")
FLAVOUR_MODULES = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}
# version-compatible TensorRT plans load in later runtimes of the same major version and, across a major version,
# only in these (built major -> runtime major) pairs (TensorRT 11.4 support matrix, "Engine Portability")
VC_CROSS_MAJOR = {(8, 10), (10, 11)}


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    """``model.engine`` -> ``model.engine.json`` (the suffix is kept so ``.engine`` and ``.plan`` never collide)."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


@dataclass(frozen=True)
class DeviceEnv:
    """What a plan is tied to, here: the runtime's flavour and version, GPU name and compute capability ("9.0"),
    the CUDA version its TensorRT build targets (``cuda_runtime``, e.g. "12" from the wheel's name) and the driver's
    (``cuda_driver``), and the platform (``platform.machine()``, ``platform.system()``; ``jetson`` for a Tegra board)."""

    tensorrt: str
    gpu_name: str
    compute_capability: str
    cuda_runtime: str = ""
    cuda_driver: str = ""
    flavour: str = "tensorrt"
    machine: str = field(default_factory=platform.machine)
    system: str = field(default_factory=platform.system)
    jetson: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"tensorrt": self.tensorrt, "gpu_name": self.gpu_name, "compute_capability": self.compute_capability,
                "cuda_runtime": self.cuda_runtime, "cuda_driver": self.cuda_driver, "flavour": self.flavour,
                "machine": self.machine, "system": self.system, "jetson": self.jetson}


def sidecar_flavour(sidecar: dict[str, Any]) -> str:
    """The builder that made the plan: "tensorrt" (also for sidecars that predate the field) or "tensorrt-rtx"."""
    return str(sidecar.get("flavour") or "tensorrt")


def sidecar_targets(sidecar: dict[str, Any]) -> list[str]:
    """The compute capabilities a TensorRT-RTX plan was built for ("X.Y"); empty for a TensorRT plan."""
    return [str(cc) for cc in (sidecar.get("targets") or {}).get("compute_capabilities", [])]


def rebuild_command(sidecar: dict[str, Any], engine_path: str | os.PathLike, *, env: DeviceEnv | None = None,
                    flavour: str | None = None) -> str:
    """The exact ``sranet export ... --engine`` command that rebuilds this plan with the same options.

    ``flavour`` overrides the builder (e.g. "tensorrt" for a GPU that TensorRT-RTX has no target for); with ``env``
    a TensorRT-RTX rebuild adds this GPU's compute capability to the targets.
    """
    opts = sidecar.get("options", {})
    source = sidecar.get("source") or "CHECKPOINT"
    flavour = flavour or sidecar_flavour(sidecar)
    # `sranet export --out X.onnx --engine` writes X.onnx and X.engine next to it
    onnx_out = Path(engine_path).with_suffix(".onnx")
    args = ["sranet", "export", str(source), "--out", str(onnx_out), "--engine"]
    precision = opts.get("precision", "fp32")
    if precision == "fp16":
        args.append("--fp16")
    elif precision == "int8":
        args += ["--int8", "--calib", "MANIFEST"]
    if flavour == "tensorrt-rtx":
        args += ["--engine-flavour", "tensorrt-rtx"]
        targets = set(sidecar_targets(sidecar) if sidecar_flavour(sidecar) == "tensorrt-rtx" else [])
        if env is not None and env.compute_capability:
            targets.add(env.compute_capability)
        if targets:
            ordered = sorted(targets, key=_version_tuple)
            args += ["--compute-capability", ",".join(ordered)]
    args += ["--profile", f"{opts.get('batch_min', 1)}:{opts.get('batch_opt', 1)}:{opts.get('batch_max', 1)}"]
    args += ["--workspace-gib", f"{opts.get('workspace_gib', 4.0):g}"]
    if flavour == "tensorrt":  # options TensorRT-RTX does not have
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

    Flavour: a TensorRT-RTX plan loads only in TensorRT-RTX, a TensorRT plan only in TensorRT. Platform: the CPU
    architecture must match (an x86_64 plan never loads on aarch64); TensorRT plans also need the same OS (TensorRT-RTX
    engines are portable between Linux and Windows). TensorRT version: an exact match, or for a version-compatible
    plan a later runtime of the same major version or of the next supported one (``VC_CROSS_MAJOR``); TensorRT-RTX:
    the same release. GPU: TensorRT-RTX needs this GPU's compute capability among the plan's targets; TensorRT needs
    the same compute capability and model name, unless the plan was built hardware-compatible (ampere+: compute
    capability >= 8.0; same-compute-capability: equal), which Jetson does not support.
    """
    opts = sidecar.get("options", {})
    flavour = sidecar_flavour(sidecar)
    built, here = str(sidecar["tensorrt"]), env.tensorrt
    if flavour != env.flavour:
        return [f"it was built by {_name(flavour)} {built}, and a {_name(flavour)} plan loads only in "
                f"{_name(flavour)}; this runtime is {_name(env.flavour)} {here}"]
    problems = _platform_problems(sidecar.get("platform") or {}, flavour, env)
    if flavour == "tensorrt-rtx":
        return problems + _rtx_problems(sidecar, built, env)
    problems += _tensorrt_version_problems(built, here, version_compatible=opts.get("version_compatible"))
    return problems + _gpu_problems(sidecar["gpu"], opts.get("hardware_compatibility") or "none", env)


def _platform_problems(platform_built: dict[str, Any], flavour: str, env: DeviceEnv) -> list[str]:
    """The CPU architecture must match; a TensorRT (not TensorRT-RTX) plan also needs the same OS."""
    problems = []
    if platform_built.get("machine") and env.machine and platform_built["machine"] != env.machine:
        problems.append(f"it was built on {platform_built['machine']}, this machine is {env.machine} (plans are "
                        "native code for one CPU architecture)")
    if (flavour == "tensorrt" and platform_built.get("system") and env.system
            and platform_built["system"] != env.system):
        problems.append(f"it was built on {platform_built['system']}, this machine runs {env.system} (TensorRT plans "
                        "are not portable between operating systems)")
    return problems


def _rtx_problems(sidecar: dict[str, Any], built: str, env: DeviceEnv) -> list[str]:
    """A TensorRT-RTX plan needs the release that built it and this GPU's compute capability among its targets."""
    problems = []
    if built != env.tensorrt:
        problems.append(f"it was built with TensorRT-RTX {built}, this machine has TensorRT-RTX {env.tensorrt} "
                        "(TensorRT-RTX engines run only with the release that built them)")
    targets = sidecar_targets(sidecar)
    if env.compute_capability not in targets:
        problems.append(f"it was built for compute capabilities {', '.join(targets) or 'none recorded'}; this GPU "
                        f"is a {env.gpu_name} (compute capability {env.compute_capability})")
    return problems


def _tensorrt_version_problems(built: str, here: str, *, version_compatible) -> list[str]:
    """The same TensorRT version, or for a version-compatible plan a later runtime of a major it may run on."""
    if version_compatible:
        v_built, v_here = _version_tuple(built), _version_tuple(here)
        if v_here < v_built:
            return [f"it was built with TensorRT {built} (version-compatible), newer than TensorRT {here} here"]
        if v_here[:1] != v_built[:1] and (v_built[:1] + v_here[:1]) not in VC_CROSS_MAJOR:
            return [f"it was built with TensorRT {built} (version-compatible), which TensorRT {here} does not "
                    "load (across major versions only 8 -> 10 and 10 -> 11 are supported)"]
        return []
    if built != here:
        return [f"it was built with TensorRT {built}, this machine has TensorRT {here}"]
    return []


def _gpu_problems(gpu: dict[str, Any], level: str, env: DeviceEnv) -> list[str]:
    """The same compute capability and GPU model, unless built hardware-compatible at ``level`` (not on Jetson)."""
    cc_built, cc_here = str(gpu.get("compute_capability")), env.compute_capability
    if level != "none" and env.jetson:
        return [f"it was built hardware-compatible ({level}), which Jetson does not support"]
    if level == "ampere+":
        if _version_tuple(cc_here) < (8, 0):
            return [f"it was built for Ampere and newer (compute capability >= 8.0), this GPU is {cc_here}"]
        return []
    if cc_built != cc_here:
        return [f"it was built on a {gpu.get('name')} (compute capability {cc_built}), "
                f"this GPU is a {env.gpu_name} (compute capability {cc_here})"]
    if level == "none" and gpu.get("name") != env.gpu_name:
        return [f"it was built on a {gpu.get('name')}, this GPU is a {env.gpu_name} "
                "(same compute capability, but plans are tuned to one GPU model)"]
    return []


def _name(flavour: str) -> str:
    return "TensorRT-RTX" if flavour == "tensorrt-rtx" else "TensorRT"


def rebuild_hint(sidecar: dict[str, Any], engine_path: str | os.PathLike, env: DeviceEnv) -> str:
    """How to get a plan that runs here: the rebuild command, with TensorRT instead of TensorRT-RTX where this GPU
    is not among the targets the TensorRT-RTX version offers (e.g. an H100/H200, compute capability 9.0)."""
    flavour = sidecar_flavour(sidecar)
    offered = (sidecar.get("targets") or {}).get("offered", [])
    if flavour == "tensorrt-rtx" and offered and env.compute_capability and env.compute_capability not in offered:
        return (f"TensorRT-RTX {sidecar.get('tensorrt')} has no target for compute capability "
                f"{env.compute_capability} (it offers {', '.join(offered)}); build a TensorRT plan on this machine: "
                f"{rebuild_command(sidecar, engine_path, flavour='tensorrt')}")
    return ("Plans are tied to the GPU and the TensorRT version they were built with. Rebuild it on this machine: "
            f"{rebuild_command(sidecar, engine_path, env=env if flavour == env.flavour else None, flavour=env.flavour)}")


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
            hint=rebuild_hint(sidecar, engine_path, env),
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
    "FLAVOURS", "FLAVOUR_MODULES", "SIDECAR_FORMAT", "VC_CROSS_MAJOR", "DeviceEnv", "check_sidecar",
    "compatibility_problems", "read_sidecar", "rebuild_command", "rebuild_hint", "sidecar_flavour", "sidecar_info",
    "sidecar_path", "sidecar_targets",
]
