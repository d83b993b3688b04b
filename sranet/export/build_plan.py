"""The build plan per TensorRT line, decided without TensorRT from the validated ``EngineOptions`` and the ONNX's
precision. ``sranet.export.tensorrt`` carries the plan out.

Three builders are supported; which path was taken is recorded in the sidecar:

* TensorRT 10: fp32 as is; fp16 with ``BuilderFlag.FP16`` on the fp32 ONNX (weak typing), or strongly typed when
  the ONNX is already the fp16 variant; int8 from the QDQ ONNX (explicit quantization) with INT8 + FP16 flags.
* TensorRT 11: strongly typed networks only (the precision flags are gone); reduced precision comes from the ONNX
  itself: the fp16 variant or the QDQ variant written by ``sranet export``.
* TensorRT-RTX (``flavour="tensorrt-rtx"``, module ``tensorrt_rtx``): strongly typed like TensorRT 11, built ahead of
  time for chosen GPU generations (compute capabilities) without a GPU; no timing cache, no version or hardware
  compatibility levels, no DLA.

fp32 plans are built with TF32 off on every line: TensorRT enables TF32 for fp32 convolutions and matrix products
by default, which rounds their inputs to 10 mantissa bits; an fp32 plan here means IEEE fp32 arithmetic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sranet.errors import DependencyMissingError, InputError
from sranet.export.engine_options import HARDWARE_COMPATIBILITY, RTX_DEFAULT_SKIP, EngineOptions
from sranet.runtime.artifact import INPUT_NAME
from sranet.runtime.devices import TRT_INSTALL_HINT, TRT_RTX_INSTALL_HINT

# TensorRT's HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY exists from TensorRT 10.9 on
SAME_CC_MIN_VERSION = (10, 9)


@dataclass
class BuildPlan:
    """What build_engine will do, decided without TensorRT. Flag names are attributes of trt.BuilderFlag /
    trt.NetworkDefinitionCreationFlag; ``decisions`` are human-readable and go into the sidecar.

    ``cleared_flags`` are builder flags switched off (TF32 for fp32 plans); ``compute_capabilities`` the
    TensorRT-RTX targets asked for ("X.Y"; empty = the default set, resolved against the installed version when it
    builds)."""

    trt_major: int
    path: str
    flavour: str = "tensorrt"
    network_flags: list[str] = field(default_factory=list)
    builder_flags: list[str] = field(default_factory=list)
    cleared_flags: list[str] = field(default_factory=list)
    hardware_compatibility_level: str | None = None  # trt.HardwareCompatibilityLevel attribute
    dla_core: int | None = None
    compute_capabilities: list[str] = field(default_factory=list)
    profiling_verbosity: str = "LAYER_NAMES_ONLY"
    decisions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def version_tuple(version: str) -> tuple[int, ...]:
    """'10.9.0.34' -> (10, 9, 0, 34); digits of each dotted piece, stopping at the first piece without any."""
    parts = []
    for piece in str(version).split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def trt_major(version: str, flavour: str = "tensorrt") -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        hint = TRT_RTX_INSTALL_HINT if flavour == "tensorrt-rtx" else TRT_INSTALL_HINT
        raise DependencyMissingError(f"cannot read the {flavour_name(flavour)} version {version!r}.", hint=hint) from None


def flavour_name(flavour: str) -> str:
    return "TensorRT-RTX" if flavour == "tensorrt-rtx" else "TensorRT"


def plan_build(trt_version: str, options: EngineOptions, onnx_precision: str, *, onnx_has_qdq: bool | None = None) -> BuildPlan:
    """Decide the build for ``trt_version`` of ``options.flavour`` (TensorRT '10.7.0', '11.1.0'; TensorRT-RTX
    '1.7.1') and an ONNX of ``onnx_precision``.

    Raises InputError when the ONNX cannot give the asked precision on that line, saying which ONNX to use, and
    DependencyMissingError when the installed version lacks something the options need.
    """
    rtx = options.flavour == "tensorrt-rtx"
    major = trt_major(trt_version, options.flavour)
    has_qdq = onnx_precision == "int8" if onnx_has_qdq is None else onnx_has_qdq
    want = options.precision
    if not rtx and major < 10:
        raise DependencyMissingError(f"TensorRT {trt_version} is too old; sranet builds with TensorRT 10 or 11.",
                                     hint=TRT_INSTALL_HINT)
    _check_onnx_precision(want, onnx_precision, has_qdq)
    plan = BuildPlan(trt_major=major, path="", flavour=options.flavour)
    if rtx:
        _plan_rtx(plan, options, trt_version, onnx_precision)
    elif major == 10:
        _plan_trt10(plan, want, onnx_precision)
    else:
        _plan_strongly_typed(plan, trt_version, want, onnx_precision)
    if want == "fp32":
        plan.cleared_flags.append("TF32")
        plan.decisions.append("TF32 off (BuilderFlag.TF32 cleared): fp32 convolutions and matrix products run in IEEE "
                              "fp32, not with inputs rounded to TF32's 10 mantissa bits.")

    _add_options(plan, options, trt_version)
    return plan


def _check_onnx_precision(want: str, onnx_precision: str, has_qdq: bool) -> None:
    """Refuse an ONNX that cannot give precision ``want`` on any line, saying which ONNX to use."""
    if want == "int8" and not has_qdq:
        raise InputError(
            f"--int8 needs the QDQ (explicitly quantized) ONNX; this ONNX is {onnx_precision}. "
            "Run `sranet export CHECKPOINT --int8 --calib MANIFEST --engine`, which writes and uses model.int8.onnx."
        )
    if want != "int8" and has_qdq:
        raise InputError(f"this ONNX is quantized (QDQ nodes) but --precision is {want}; use --int8, or the fp32 ONNX.")
    if want == "fp32" and onnx_precision == "fp16":
        raise InputError("this ONNX is the fp16 variant but --precision is fp32; pass the fp32 ONNX, or add --fp16.")


def _plan_rtx(plan: BuildPlan, options: EngineOptions, trt_version: str, onnx_precision: str) -> None:
    """TensorRT-RTX: strongly typed, precision from the ONNX, built ahead of time for the chosen targets."""
    want = options.precision
    plan.path = f"trtrtx-strongly-typed-{'qdq' if want == 'int8' else want}-onnx"
    if want == "fp16" and onnx_precision != "fp16":
        raise InputError(
            f"TensorRT-RTX {trt_version} builds strongly typed networks only (it has no FP16 builder flag), so "
            "fp16 must come from the ONNX. Pass the fp16 variant: `sranet export CHECKPOINT --fp16 --engine "
            "--engine-flavour tensorrt-rtx` writes and uses model.fp16.onnx.")
    plan.compute_capabilities = list(options.compute_capabilities)
    targets = (f"compute capabilities {', '.join(options.compute_capabilities)}" if options.compute_capabilities
               else "every target the installed version offers")
    plan.decisions.append(f"TensorRT-RTX: strongly typed network; precision {want} comes from the "
                          f"{onnx_precision} ONNX; built ahead of time for {targets}"
                          + ("" if options.compute_capabilities or not RTX_DEFAULT_SKIP[want] else
                             f" except {', '.join(RTX_DEFAULT_SKIP[want])} (no {want} 3D convolution there)") + ".")
    if want == "int8":
        plan.decisions.append("QDQ Conv3d: TensorRT-RTX fuses DequantizeLinear -> Conv into an int8 convolution "
                              "(int8 activations and weights, float output) where the target has one; the "
                              "verbose layer report lists the compiled layers and their data types.")


def _plan_trt10(plan: BuildPlan, want: str, onnx_precision: str) -> None:
    """TensorRT 10: fp32 as is, fp16 by builder flag or from the fp16 ONNX, int8 from QDQ with INT8 + FP16 flags."""
    if want == "fp32":
        plan.path = "trt10-fp32"
        plan.decisions.append("TensorRT 10, fp32: no precision flags.")
    elif want == "fp16" and onnx_precision == "fp16":
        plan.path = "trt10-strongly-typed-fp16-onnx"
        plan.network_flags.append("STRONGLY_TYPED")
        plan.decisions.append("TensorRT 10, fp16 ONNX: strongly typed network, layer types from the ONNX.")
    elif want == "fp16":
        plan.path = "trt10-fp16-builder-flag"
        plan.builder_flags.append("FP16")
        plan.decisions.append("TensorRT 10, fp32 ONNX: weakly typed network with BuilderFlag.FP16 "
                              "(TensorRT picks fp16 kernels where faster).")
    else:
        plan.path = "trt10-int8-qdq-builder-flags"
        plan.builder_flags += ["INT8", "FP16"]
        plan.decisions.append("TensorRT 10, QDQ ONNX: explicit quantization with BuilderFlag.INT8 (+FP16 for "
                              "the layers outside Q/DQ pairs).")


def _plan_strongly_typed(plan: BuildPlan, trt_version: str, want: str, onnx_precision: str) -> None:
    """TensorRT 11 and later: strongly typed networks only, the precision comes from the ONNX."""
    major = plan.trt_major
    plan.path = f"trt{major}-strongly-typed-{'qdq' if want == 'int8' else want}-onnx"
    plan.network_flags.append("STRONGLY_TYPED")
    if want == "fp16" and onnx_precision != "fp16":
        raise InputError(
            f"TensorRT {trt_version} builds strongly typed networks only (BuilderFlag.FP16 was removed), so fp16 "
            "must come from the ONNX. Pass the fp16 variant: `sranet export CHECKPOINT --fp16 --engine` writes "
            "and uses model.fp16.onnx."
        )
    plan.decisions.append(f"TensorRT {major}: strongly typed network; precision {want} comes from the "
                          f"{onnx_precision} ONNX, no precision builder flags.")


def _add_options(plan: BuildPlan, options: EngineOptions, trt_version: str) -> None:
    """The build choices that do not depend on the TensorRT line: compatibility, DLA, verbosity, the profile."""
    if options.version_compatible:
        plan.builder_flags.append("VERSION_COMPATIBLE")
        plan.decisions.append("Version-compatible plan: runs on later TensorRT runtimes of the same major version, and "
                              "a TensorRT 10 plan on TensorRT 11 (may be slower); needs "
                              "Runtime.engine_host_code_allowed = True to load (its lean runtime is host code).")
    if options.hardware_compatibility != "none":
        if (options.hardware_compatibility == "same-compute-capability"
                and version_tuple(trt_version)[:2] < SAME_CC_MIN_VERSION):
            raise DependencyMissingError(
                f"--hardware-compatibility same-compute-capability needs TensorRT 10.9 or later "
                f"(HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY); this is TensorRT {trt_version}.",
                hint="Use --hardware-compatibility ampere+, or build with TensorRT 10.9 or later.")
        plan.hardware_compatibility_level = HARDWARE_COMPATIBILITY[options.hardware_compatibility]
        plan.decisions.append(f"Hardware compatibility {options.hardware_compatibility} "
                              f"(HardwareCompatibilityLevel.{plan.hardware_compatibility_level}).")
    if options.dla_core is not None:
        plan.dla_core = options.dla_core
        plan.builder_flags.append("GPU_FALLBACK")
        plan.decisions.append(f"DLA core {options.dla_core} with GPU fallback: Conv3d and other 3D layers are not DLA "
                              "layers and fall back to the GPU; see the layer report for the real placement.")
    if options.verbose:
        plan.profiling_verbosity = "DETAILED"
        plan.decisions.append("Verbose: detailed profiling verbosity and a layer report.")
    plan.decisions.append(f"Optimisation profile for {INPUT_NAME!r}: batch {options.batch_min}/{options.batch_opt}/"
                          f"{options.batch_max} (min/opt/max); workspace limit {options.workspace_gib:g} GiB.")


__all__ = ["SAME_CC_MIN_VERSION", "BuildPlan", "flavour_name", "plan_build", "trt_major", "version_tuple"]
