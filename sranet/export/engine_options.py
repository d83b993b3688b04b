"""What a TensorRT or TensorRT-RTX build will do, decided without TensorRT: the validated options, the facts of the
ONNX, and the build plan per TensorRT line. ``sranet.export.tensorrt`` carries the plan out.

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

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sranet.errors import ArtifactError, DependencyMissingError, InputError, check_choice
from sranet.runtime.artifact import DEFAULT_PROFILE, INPUT_NAME, OUTPUT_NAMES, PRECISIONS, ArtifactInfo
from sranet.runtime.devices import TRT_INSTALL_HINT, TRT_RTX_INSTALL_HINT
from sranet.runtime.sidecar import FLAVOURS

MAX_BATCH_LIMIT = 1024
# TensorRT's HardwareCompatibilityLevel, by the name the CLI uses
HARDWARE_COMPATIBILITY = {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-compute-capability": "SAME_COMPUTE_CAPABILITY"}


# TensorRT's HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY exists from TensorRT 10.9 on
SAME_CC_MIN_VERSION = (10, 9)
# Turing (7.5) is left out of the default TensorRT-RTX targets for fp32 and int8 graphs: TensorRT-RTX 1.7 refuses to
# build them for it ("Cannot compile operation 'node_conv3d' for Turing (SM75): FP32 3D convolution is not
# supported"; the int8 QDQ graph fails with the same message: for Turing the quantized Conv3d is not fused into an
# int8 convolution, as it is for 8.9). Asked for explicitly, the builder's own error is reported.
RTX_DEFAULT_SKIP = {"fp32": ("7.5",), "int8": ("7.5",), "fp16": ()}


@dataclass(frozen=True)
class EngineOptions:
    """Validated engine-build options (CLI units: GiB, batch profile MIN:OPT:MAX).

    flavour               "tensorrt" (TensorRT 10/11, builds for the GPU it runs on) or "tensorrt-rtx"
                          (TensorRT-RTX, builds ahead of time for ``compute_capabilities``, no GPU needed).
    compute_capabilities  TensorRT-RTX targets as "X.Y" strings; empty = every target the installed version offers
                          that the precision can be built for (``RTX_DEFAULT_SKIP``).
    """

    precision: str = "fp32"
    batch_min: int = DEFAULT_PROFILE[0]
    batch_opt: int = DEFAULT_PROFILE[1]
    batch_max: int = DEFAULT_PROFILE[2]
    workspace_gib: float = 4.0
    timing_cache: str | None = None
    version_compatible: bool = False
    hardware_compatibility: str = "none"
    dla_core: int | None = None
    verbose: bool = False
    flavour: str = "tensorrt"
    compute_capabilities: tuple[str, ...] = ()

    @classmethod
    def from_cli(
        cls,
        precision: str,
        profile: str | tuple[int, int, int] = DEFAULT_PROFILE,
        workspace_gib: float = 4.0,
        timing_cache: str | os.PathLike | None = None,
        version_compatible: bool = False,
        hardware_compatibility: str | None = None,
        dla_core: int | None = None,
        verbose: bool = False,
        flavour: str = "tensorrt",
        compute_capabilities: str | list[str] | tuple[str, ...] | None = None,
    ) -> EngineOptions:
        """Validate CLI values (InputError naming the value and the fix); needs no TensorRT and no GPU."""
        check_choice("--precision", precision, PRECISIONS, error=InputError)
        check_choice("--engine-flavour", flavour, FLAVOURS, error=InputError)
        bmin, bopt, bmax = parse_profile(profile)
        if isinstance(workspace_gib, bool) or not isinstance(workspace_gib, (int, float)) or not (
            math.isfinite(workspace_gib) and workspace_gib > 0
        ):
            raise InputError(f"--workspace-gib={workspace_gib!r} must be a number > 0 (GiB of GPU memory for tactics), e.g. 4.")
        level = "none" if hardware_compatibility is None else hardware_compatibility
        check_choice("--hardware-compatibility", level, HARDWARE_COMPATIBILITY, error=InputError)
        targets = parse_compute_capabilities(compute_capabilities)
        if flavour == "tensorrt-rtx":
            _refuse_for_rtx(timing_cache=timing_cache, version_compatible=version_compatible, level=level,
                            dla_core=dla_core)
        elif targets:
            raise InputError("--compute-capability chooses TensorRT-RTX targets; TensorRT builds for the GPU it runs on.",
                             hint="Add --engine-flavour tensorrt-rtx, or use --hardware-compatibility ampere+ for a "
                                  "TensorRT plan that runs on any Ampere or newer GPU.")
        if timing_cache is not None:
            parent = Path(timing_cache).expanduser().resolve().parent
            if not parent.is_dir():
                raise InputError(f"--timing-cache {timing_cache}: folder {parent} does not exist. Create it, or pick "
                                 "another path (the file itself is created on the first build).")
            if Path(timing_cache).is_dir():
                raise InputError(f"--timing-cache {timing_cache} is a folder; give a file path, e.g. {timing_cache}/sranet.cache.")
        if dla_core is not None:
            if isinstance(dla_core, bool) or not isinstance(dla_core, int) or dla_core < 0:
                raise InputError(f"--dla-core={dla_core!r} must be an integer >= 0 (Jetson AGX Orin has DLA cores 0 and 1).")
            if precision == "fp32":
                raise InputError("--dla-core needs --fp16 or --int8: the DLA does not run fp32 layers.")
            if level != "none":
                raise InputError("--dla-core cannot be combined with --hardware-compatibility: hardware-compatible "
                                 "plans are not supported on Jetson/DLA. Drop one of the two.")
        return cls(
            precision=precision, batch_min=bmin, batch_opt=bopt, batch_max=bmax, workspace_gib=float(workspace_gib),
            timing_cache=None if timing_cache is None else str(timing_cache), version_compatible=bool(version_compatible),
            hardware_compatibility=level, dla_core=dla_core, verbose=bool(verbose), flavour=flavour,
            compute_capabilities=targets,
        )

    @property
    def workspace_bytes(self) -> int:
        return int(self.workspace_gib * (1 << 30))

    def profile_shapes(self, input_size: int) -> list[list[int]]:
        """[min, opt, max] shapes (B, 1, S, S, S) of the ``ct`` input."""
        S = input_size
        return [[b, 1, S, S, S] for b in (self.batch_min, self.batch_opt, self.batch_max)]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["compute_capabilities"] = list(self.compute_capabilities)
        return out


def _refuse_for_rtx(*, timing_cache, version_compatible: bool, level: str, dla_core) -> None:
    """The TensorRT options TensorRT-RTX does not have, each refused with the reason."""
    if timing_cache is not None:
        raise InputError("--timing-cache does not apply to TensorRT-RTX: its timing cache has no effect on the engine "
                         "and makes the ahead-of-time build query a GPU (TensorRT-RTX 1.1 release notes).",
                         hint="Drop --timing-cache with --engine-flavour tensorrt-rtx.")
    if version_compatible:
        raise InputError("--version-compatible does not apply to TensorRT-RTX: its engines run only with the "
                         "TensorRT-RTX release that built them.",
                         hint="Drop --version-compatible; rebuild the engine when the TensorRT-RTX runtime changes.")
    if level != "none":
        raise InputError("--hardware-compatibility does not apply to TensorRT-RTX: it chooses the GPUs an engine runs "
                         "on by --compute-capability.", hint="Use --compute-capability 8.6,8.9,12.0 (or leave it out "
                         "for every target the installed TensorRT-RTX offers).")
    if dla_core is not None:
        raise InputError("--dla-core does not apply to TensorRT-RTX: the DLA is a Jetson unit, and Jetson builds with "
                         "TensorRT.", hint="Use --engine-flavour tensorrt on the Jetson.")


def parse_compute_capabilities(text: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """'8.9,12.0' / ['sm89', '120'] / '8.9 12.0' -> ('8.9', '12.0'): sorted, unique, each "MAJOR.MINOR".

    Accepted per item: '8.9', 'sm89', 'SM_89', '89', '120', 'sm120'. Which targets exist depends on the installed
    TensorRT-RTX; that is checked when it builds.
    """
    if text is None:
        return ()
    items = [text] if isinstance(text, str) else list(text)
    pieces = [p for item in items for p in re.split(r"[,\s]+", str(item).strip()) if p]
    out = set()
    for piece in pieces:
        m = re.fullmatch(r"(?:sm_?)?(\d{1,2})\.(\d)|(?:sm_?)?(\d{2,3})", piece.strip().lower())
        if m is None:
            raise InputError(f"--compute-capability {piece!r} is not a compute capability; write it as 8.9 or sm89 "
                             "(several: 8.6,8.9,12.0).")
        if m.group(3):
            major, minor = m.group(3)[:-1], m.group(3)[-1]
        else:
            major, minor = m.group(1), m.group(2)
        out.add(f"{int(major)}.{int(minor)}")
    return tuple(sorted(out, key=lambda cc: tuple(int(x) for x in cc.split("."))))


def compute_capability_member(cc: str) -> str:
    """'8.9' -> 'SM89', '12.0' -> 'SM120': the name of the TensorRT-RTX ``ComputeCapability`` member."""
    major, minor = cc.split(".")
    return f"SM{major}{minor}"


def member_compute_capability(name: str) -> str | None:
    """'SM89' -> '8.9', 'SM120' -> '12.0'; None for the NONE/CURRENT members."""
    m = re.fullmatch(r"SM(\d+)(\d)", name)
    return f"{int(m.group(1))}.{m.group(2)}" if m else None


def parse_profile(text: str | tuple[int, int, int]) -> tuple[int, int, int]:
    """'MIN:OPT:MAX' (or a single 'N' for a fixed batch, or a (min, opt, max) tuple) -> (min, opt, max) with
    1 <= min <= opt <= max."""
    if isinstance(text, tuple):
        text = ":".join(map(str, text))
    pieces = str(text).strip().split(":")
    if len(pieces) == 1:
        pieces = pieces * 3
    try:
        if len(pieces) != 3:
            raise ValueError
        bmin, bopt, bmax = (int(p) for p in pieces)
    except ValueError:
        raise InputError(f"--profile {text!r} is not MIN:OPT:MAX (three integers), e.g. 1:4:16.") from None
    if not 1 <= bmin <= bopt <= bmax:
        raise InputError(f"--profile {text!r} needs 1 <= MIN <= OPT <= MAX, e.g. 1:{max(bopt, 1)}:{max(bmax, bopt, 1)}.")
    if bmax > MAX_BATCH_LIMIT:
        raise InputError(f"--profile {text!r}: MAX={bmax} is above {MAX_BATCH_LIMIT}; a (B, 1, 128, 128, 128) input of that "
                         "size needs >8 GiB per tensor. Use a smaller MAX.")
    return bmin, bopt, bmax


# -- what the ONNX is ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OnnxFacts:
    """Facts about an exported ONNX that decide the build: precision from the graph, I/O names, ArtifactInfo."""

    path: str
    precision: str  # "fp32", "fp16" (float16 weights or casts) or "int8" (QuantizeLinear/DequantizeLinear nodes)
    has_qdq: bool
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    info: ArtifactInfo
    batch_dim: str | int | None = None
    ops: tuple[str, ...] = field(default=())


def inspect_onnx(path: str | os.PathLike) -> OnnxFacts:
    """Read the ONNX graph (weights not loaded) and check it is an sranet export with inputs/outputs by contract."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ArtifactError("does not exist; export the ONNX first with `sranet export CHECKPOINT`.", path=path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise ArtifactError(f"is not a readable ONNX model ({exc}).", path=path) from exc
    info = ArtifactInfo.from_metadata({p.key: p.value for p in model.metadata_props}, path=path)
    graph = model.graph
    init_names = {t.name for t in graph.initializer}
    inputs = tuple(i.name for i in graph.input if i.name not in init_names)
    outputs = tuple(o.name for o in graph.output)
    if inputs != (INPUT_NAME,) or set(outputs) != set(OUTPUT_NAMES):
        raise ArtifactError(
            f"has inputs {list(inputs)} and outputs {list(outputs)}; expected input {INPUT_NAME!r} and outputs "
            f"{list(OUTPUT_NAMES)}.", path=path, hint="Export it with `sranet export`; hand-edited graphs are not supported.",
        )
    dims = graph.input[[i.name for i in graph.input].index(INPUT_NAME)].type.tensor_type.shape.dim
    batch_dim = (dims[0].dim_param or dims[0].dim_value) if dims else None
    ops = tuple(sorted({n.op_type for n in graph.node}))
    has_qdq = bool({"QuantizeLinear", "DequantizeLinear"} & set(ops))
    fp16 = onnx.TensorProto.FLOAT16
    has_fp16 = any(t.data_type == fp16 for t in graph.initializer) or any(
        n.op_type == "Cast" and any(a.name == "to" and a.i == fp16 for a in n.attribute) for n in graph.node
    )
    precision = "int8" if has_qdq else "fp16" if has_fp16 else "fp32"
    return OnnxFacts(str(path), precision, has_qdq, inputs, outputs, info, batch_dim, ops)


# -- the version dispatch (pure) ----------------------------------------------------------------------------------
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


# -- inspector report (pure) --------------------------------------------------------------------------------------
def summarize_layers(engine_information: str | dict) -> dict[str, Any]:
    """Summarise IEngineInspector JSON: layer count, DLA vs GPU placement, layers by type.

    Works on TensorRT 10 ("Layers" + "Bindings") and 11 ("Layers" + "I/O Tensors") output; layers are dicts with
    DETAILED verbosity and plain names otherwise. A layer counts as DLA when its type or name says so (TensorRT
    reports DLA subgraphs as one foreign node per DLA loadable).
    """
    data = json.loads(engine_information) if isinstance(engine_information, str) else engine_information
    layers = data.get("Layers", [])
    by_type: dict[str, int] = {}
    dla: list[str] = []
    for layer in layers:
        name = layer if isinstance(layer, str) else str(layer.get("Name", ""))
        kind = "unknown" if isinstance(layer, str) else str(layer.get("LayerType", "unknown"))
        by_type[kind] = by_type.get(kind, 0) + 1
        text = f"{kind} {name} {'' if isinstance(layer, str) else layer.get('TacticName', '')}".lower()
        if "dla" in text:
            dla.append(name)
    return {"layers": len(layers), "dla_layers": len(dla), "gpu_layers": len(layers) - len(dla),
            "dla_layer_names": dla, "by_type": dict(sorted(by_type.items())),
            "io_tensors": data.get("I/O Tensors", data.get("Bindings", []))}


__all__ = ["HARDWARE_COMPATIBILITY", "RTX_DEFAULT_SKIP", "SAME_CC_MIN_VERSION", "BuildPlan", "EngineOptions",
           "OnnxFacts", "compute_capability_member", "flavour_name", "inspect_onnx", "member_compute_capability",
           "parse_compute_capabilities", "parse_profile", "plan_build", "summarize_layers", "trt_major",
           "version_tuple"]
