"""Build a raw TensorRT plan from the exported ONNX, plus its JSON sidecar.

Two TensorRT lines are supported, and which path was taken is recorded in the sidecar:

* TensorRT 10: fp32 as is; fp16 with ``BuilderFlag.FP16`` on the fp32 ONNX (weak typing), or strongly typed when
  the ONNX is already the fp16 variant; int8 from the QDQ ONNX (explicit quantization) with INT8 + FP16 flags.
* TensorRT 11: strongly typed networks only (the precision flags are gone); reduced precision comes from the ONNX
  itself: the fp16 variant or the QDQ variant written by ``sranet export``.

The decisions are made by pure functions (``EngineOptions.from_cli``, ``inspect_onnx``, ``plan_build``) that run and
are tested without TensorRT; ``build_engine`` only carries them out. tensorrt is imported inside ``build_engine``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sranet.errors import ArtifactError, DependencyMissingError, InputError, check_choice
from sranet.export.sidecar import make_sidecar, write_sidecar
from sranet.runtime.artifact import DEFAULT_PROFILE, INPUT_NAME, OUTPUT_NAMES, PRECISIONS, ArtifactInfo
from sranet.runtime.devices import TRT_INSTALL_HINT, import_tensorrt
from sranet.runtime.files import atomic_write

MAX_BATCH_LIMIT = 1024
# TensorRT's HardwareCompatibilityLevel, by the name the CLI uses
HARDWARE_COMPATIBILITY = {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-compute-capability": "SAME_COMPUTE_CAPABILITY"}


@dataclass(frozen=True)
class EngineOptions:
    """Validated engine-build options (CLI units: GiB, batch profile MIN:OPT:MAX)."""

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
    ) -> EngineOptions:
        """Validate CLI values (InputError naming the value and the fix); needs no TensorRT and no GPU."""
        check_choice("--precision", precision, PRECISIONS, error=InputError)
        bmin, bopt, bmax = parse_profile(profile)
        if isinstance(workspace_gib, bool) or not isinstance(workspace_gib, (int, float)) or not (
            math.isfinite(workspace_gib) and workspace_gib > 0
        ):
            raise InputError(f"--workspace-gib={workspace_gib!r} must be a number > 0 (GiB of GPU memory for tactics), e.g. 4.")
        level = "none" if hardware_compatibility is None else hardware_compatibility
        check_choice("--hardware-compatibility", level, HARDWARE_COMPATIBILITY, error=InputError)
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
            hardware_compatibility=level, dla_core=dla_core, verbose=bool(verbose),
        )

    @property
    def workspace_bytes(self) -> int:
        return int(self.workspace_gib * (1 << 30))

    def profile_shapes(self, input_size: int) -> list[list[int]]:
        """[min, opt, max] shapes (B, 1, S, S, S) of the ``ct`` input."""
        S = input_size
        return [[b, 1, S, S, S] for b in (self.batch_min, self.batch_opt, self.batch_max)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    trt.NetworkDefinitionCreationFlag; ``decisions`` are human-readable and go into the sidecar."""

    trt_major: int
    path: str
    network_flags: list[str] = field(default_factory=list)
    builder_flags: list[str] = field(default_factory=list)
    hardware_compatibility_level: str | None = None  # trt.HardwareCompatibilityLevel attribute
    dla_core: int | None = None
    profiling_verbosity: str = "LAYER_NAMES_ONLY"
    decisions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def trt_major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        raise DependencyMissingError(f"cannot read the TensorRT version {version!r}.", hint=TRT_INSTALL_HINT) from None


def plan_build(trt_version: str, options: EngineOptions, onnx_precision: str, *, onnx_has_qdq: bool | None = None) -> BuildPlan:
    """Decide the build for TensorRT ``trt_version`` (e.g. '10.7.0', '11.1.0') and an ONNX of ``onnx_precision``.

    Raises InputError when the ONNX cannot give the asked precision on that TensorRT line, saying which ONNX to use.
    """
    major = trt_major(trt_version)
    has_qdq = onnx_precision == "int8" if onnx_has_qdq is None else onnx_has_qdq
    want = options.precision
    if major < 10:
        raise DependencyMissingError(f"TensorRT {trt_version} is too old; sranet builds with TensorRT 10 or 11.",
                                     hint=TRT_INSTALL_HINT)
    if want == "int8" and not has_qdq:
        raise InputError(
            f"--int8 needs the QDQ (explicitly quantized) ONNX; this ONNX is {onnx_precision}. "
            "Run `sranet export CHECKPOINT --int8 --calib MANIFEST --engine`, which writes and uses model.int8.onnx."
        )
    if want != "int8" and has_qdq:
        raise InputError(f"this ONNX is quantized (QDQ nodes) but --precision is {want}; use --int8, or the fp32 ONNX.")
    if want == "fp32" and onnx_precision == "fp16":
        raise InputError("this ONNX is the fp16 variant but --precision is fp32; pass the fp32 ONNX, or add --fp16.")

    plan = BuildPlan(trt_major=major, path="")
    if major == 10:
        if want == "fp32":
            plan.path = "trt10-fp32"
            plan.decisions.append("TensorRT 10, fp32: no precision flags (TF32 stays TensorRT's default).")
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
    else:
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

    _add_options(plan, options)
    return plan


def _add_options(plan: BuildPlan, options: EngineOptions) -> None:
    """The build choices that do not depend on the TensorRT line: compatibility, DLA, verbosity, the profile."""
    if options.version_compatible:
        plan.builder_flags.append("VERSION_COMPATIBLE")
        plan.decisions.append("Version-compatible plan (runs on later TensorRT runtimes; may be slower).")
    if options.hardware_compatibility != "none":
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
        plan.decisions.append("Verbose: detailed profiling verbosity and an engine-inspector layer report.")
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


# -- the build (needs TensorRT and a GPU) ------------------------------------------------------------------------
def parser_errors(parser) -> list[str]:
    """OnnxParser errors as 'node NAME (OP): description' lines (node_name/node_operator exist from TensorRT 8.6)."""
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        name = err.node_name() if hasattr(err, "node_name") else f"#{err.node()}"
        op = err.node_operator() if hasattr(err, "node_operator") else ""
        lines.append(f"node {name or '#' + str(err.node())} ({op or '?'}): {err.desc()} [{err.code()}]")
    return lines


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, options: EngineOptions, *,
                 source: str | None = None) -> dict[str, Any]:
    """Build ``engine_path`` (raw plan) + ``<engine>.json`` from ``onnx_path``. Returns the sidecar dict.

    ``source`` is the checkpoint the ONNX came from; it goes into the rebuild command the sidecar check prints.
    Steps: inspect the ONNX, decide the build (``plan_build``), parse, configure, build, write plan, timing cache,
    layer report (``verbose``) and sidecar; each file is written atomically.
    """
    facts = inspect_onnx(onnx_path)
    if facts.info.spectral_layers:
        raise InputError(
            f"is a --conv-impl spectral export (Conv3d layers {list(facts.info.spectral_layers)} as DFT MatMuls, an "
            "optimisation for ONNX Runtime on CPUs); TensorRT chooses its own convolution kernels for Conv nodes, and "
            "a plan from this graph has not been measured.", path=onnx_path,
            hint="Export again without --conv-impl spectral (the default, direct) and build the plan from that.")
    trt = import_tensorrt()
    plan = plan_build(trt.__version__, options, facts.precision, onnx_has_qdq=facts.has_qdq)
    engine_path = Path(engine_path)
    logger = trt.Logger(trt.Logger.VERBOSE if options.verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _parse_network(trt, builder, logger, plan, onnx_path)
    shapes = options.profile_shapes(facts.info.model.input_size)
    config = _builder_config(trt, builder, plan, options, shapes)
    cache_path = Path(options.timing_cache) if options.timing_cache else None
    cache_reused = _use_timing_cache(config, cache_path)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ArtifactError("TensorRT returned no engine (build failed).", path=onnx_path,
                            hint="Rerun with --verbose for the builder log; try a larger --workspace-gib.")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(engine_path, memoryview(serialized))
    if cache_path:  # a crash never leaves a half-written cache for the next build
        atomic_write(cache_path, memoryview(config.get_timing_cache().serialize()))

    build = {"path": plan.path, "decisions": plan.decisions, "network_flags": plan.network_flags,
             "builder_flags": plan.builder_flags, "onnx_precision": facts.precision,
             "timing_cache": {"path": str(cache_path) if cache_path else None, "reused": cache_reused}}
    if options.verbose:
        build["layer_report"] = _layer_report(trt, logger, engine_path)
    return _write_build_sidecar(trt, facts, options, engine_path, onnx_path, shapes, build, source)


def _parse_network(trt, builder, logger, plan: BuildPlan, onnx_path: str | os.PathLike):
    """(network, parser): the network definition with the plan's creation flags, parsed from the ONNX (errors named
    by node). The parser holds the weights the network refers to, so the caller keeps it until the build is done."""
    flags = 0
    for name in plan.network_flags:
        flag = getattr(trt.NetworkDefinitionCreationFlag, name, None)
        if flag is None and not (name == "STRONGLY_TYPED" and plan.trt_major >= 11):  # always on from TensorRT 11
            raise DependencyMissingError(f"TensorRT {trt.__version__} has no NetworkDefinitionCreationFlag.{name}.",
                                         hint=TRT_INSTALL_HINT)
        flags |= 0 if flag is None else 1 << int(flag)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise ArtifactError("TensorRT's ONNX parser rejected the model:\n  " + "\n  ".join(parser_errors(parser)),
                            path=onnx_path, hint="Check the ops above against TensorRT's ONNX operator support.")
    return network, parser


def _builder_config(trt, builder, plan: BuildPlan, options: EngineOptions, shapes: list[list[int]]):
    """Builder config: workspace, the plan's flags, hardware compatibility, DLA, verbosity, one profile."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_bytes)
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if plan.hardware_compatibility_level:
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, plan.hardware_compatibility_level)
    if plan.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
    config.profiling_verbosity = getattr(trt.ProfilingVerbosity, plan.profiling_verbosity)
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, *[tuple(s) for s in shapes])
    config.add_optimization_profile(profile)
    return config


def _use_timing_cache(config, cache_path: Path | None) -> bool:
    """Give the builder the timing cache (empty when none or the file is new); True when an existing one was read.
    A cache TensorRT refuses (damaged, another version or GPU) is an InputError."""
    cache_bytes = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
    reason = "set_timing_cache returned False"
    try:
        cache = config.create_timing_cache(cache_bytes)
        accepted = cache is not None and config.set_timing_cache(cache, ignore_mismatch=False)
    except Exception as exc:  # TensorRT raises on a damaged serialized cache
        accepted, reason = False, f"{type(exc).__name__}: {exc}"
    if not accepted:
        raise InputError(f"--timing-cache {cache_path}: TensorRT refused the cache ({reason}); it is damaged or was "
                         "made by another TensorRT version or GPU.", hint="Delete it or give another file; a new one "
                         "is written after the build.")
    return bool(cache_bytes)


def _layer_report(trt, logger, engine_path: Path) -> dict[str, Any]:
    """Write ``<engine>.layers.json`` (engine inspector, JSON) and return its summary for the sidecar."""
    runtime = trt.Runtime(logger)  # must outlive the engine
    engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    if engine is None:
        raise ArtifactError("the plan just built could not be deserialised for the layer report.", path=engine_path)
    text = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    report = atomic_write(engine_path.with_name(engine_path.name + ".layers.json"), text)
    summary = summarize_layers(text)
    return {"file": report.name, **{k: v for k, v in summary.items() if k != "io_tensors"}}


def _write_build_sidecar(trt, facts: OnnxFacts, options: EngineOptions, engine_path: Path, onnx_path, shapes,
                         build: dict[str, Any], source: str | None) -> dict[str, Any]:
    """The sidecar of the plan just built: the ONNX's ArtifactInfo at the build precision, the builder's GPU."""
    from sranet.runtime.devices import current_cuda_device, device_env

    info = ArtifactInfo(model=facts.info.model, preprocess=facts.info.preprocess, threshold=facts.info.threshold,
                        source_sha256=facts.info.source_sha256, precision=options.precision, extra=facts.info.extra)
    env = device_env(trt.__version__, current_cuda_device())  # the GPU the builder ran on, not always GPU 0
    sidecar = make_sidecar(plan_path=engine_path, onnx_path=onnx_path, info=info, env=env,
                           options=options.to_dict(), profile={INPUT_NAME: shapes}, build=build, source=source)
    write_sidecar(engine_path, sidecar)
    return sidecar


__all__ = ["HARDWARE_COMPATIBILITY", "BuildPlan", "EngineOptions", "OnnxFacts", "build_engine",
           "inspect_onnx", "parse_profile", "parser_errors", "plan_build", "summarize_layers"]
