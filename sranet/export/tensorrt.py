"""Build a raw TensorRT or TensorRT-RTX plan from the exported ONNX, plus its JSON sidecar.

What is built is decided without TensorRT in ``sranet.export.engine_options`` (``EngineOptions.from_cli``,
``inspect_onnx``) and ``sranet.export.build_plan`` (``plan_build``); their names are re-exported here. This module
carries the decision out with the real builder: ``tensorrt`` (TensorRT 10/11, on the GPU it builds for) or
``tensorrt_rtx`` (TensorRT-RTX, ahead of time for chosen compute capabilities, no GPU needed). The builder's own
messages are collected, so a parser or builder failure becomes one ArtifactError naming the ONNX node and what
TensorRT said about it.
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sranet.errors import ArtifactError, DependencyMissingError, InputError
from sranet.export.build_plan import BuildPlan, flavour_name, plan_build
from sranet.export.engine_options import (
    HARDWARE_COMPATIBILITY,
    RTX_DEFAULT_SKIP,
    EngineOptions,
    OnnxFacts,
    compute_capability_member,
    inspect_onnx,
    member_compute_capability,
    parse_compute_capabilities,
    parse_profile,
    summarize_layers,
)
from sranet.export.sidecar import make_sidecar, write_sidecar
from sranet.runtime.artifact import INPUT_NAME, ArtifactInfo
from sranet.runtime.devices import TRT_INSTALL_HINT, TRT_RTX_INSTALL_HINT, import_tensorrt
from sranet.runtime.files import atomic_write


def make_logger(trt, *, verbose: bool = False, echo: bool = True):
    """A ``trt.ILogger`` that keeps every error message (``.errors``) and the builder's listing of the engine's layers
    (``.engine_layers``, logged with DETAILED profiling verbosity), and prints warnings and errors (everything with
    ``verbose``) to stderr as TensorRT's own logger would (nothing with ``echo=False``: the caller reports)."""

    class RecordingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.engine_layers = ""  # the builder's "Layers:" listing (DETAILED profiling verbosity)

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(str(msg))
            if str(msg).startswith("Layers:\n"):
                self.engine_layers = str(msg)
            if echo and (verbose or severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR,
                                                 trt.ILogger.Severity.WARNING)):
                print(f"[{flavour_of(trt)}] {severity.name}: {msg}", file=sys.stderr)

    return RecordingLogger()


def flavour_of(trt) -> str:
    return "tensorrt-rtx" if trt.__name__.startswith("tensorrt_rtx") else "tensorrt"


def parser_errors(parser) -> list[str]:
    """OnnxParser errors as 'node NAME (OP): description' lines (node_name/node_operator exist from TensorRT 8.6)."""
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        name = err.node_name() if hasattr(err, "node_name") else f"#{err.node()}"
        op = err.node_operator() if hasattr(err, "node_operator") else ""
        lines.append(f"node {name or '#' + str(err.node())} ({op or '?'}): {err.desc()} [{err.code()}]")
    return lines


def network_layers(trt, network) -> list[dict[str, Any]]:
    """The parsed network as the builder sees it: per layer its index, name, type and output tensors (name, data
    type, shape with -1 for the dynamic batch). Needs no GPU."""
    layers = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        inputs = [layer.get_input(j) for j in range(layer.num_inputs)]
        layers.append({
            "index": i, "name": layer.name, "type": layer.type.name,
            "inputs": [{"name": t.name, "dtype": t.dtype.name} for t in inputs if t is not None],
            "outputs": [{"name": t.name, "dtype": t.dtype.name, "shape": list(t.shape)} for t in outputs],
        })
    return layers


_SEGMENTS = re.compile(r"(Inputs|Constants|Outputs): \[(.*?)\](?=, (?:Constants|Outputs|TacticName):)")


def parse_engine_layers(text: str) -> list[dict[str, Any]]:
    """The builder's "Layers:" log message -> per compiled layer its name, kind (e.g. "correlation" for a
    convolution, "gemm", "kgen" for generated fused kernels), the data types of its inputs, constants (weights) and
    outputs, and the ONNX nodes it came from. This is what TensorRT-RTX compiled, not just what it parsed."""
    layers = []
    for line in text.splitlines()[1:]:
        m = re.match(r"Name: (.*?), LayerType: (\w+), ", line)
        if not m:
            continue
        entry: dict[str, Any] = {"name": m.group(1), "kind": m.group(2)}
        for segment, body in _SEGMENTS.findall(line):
            entry[segment.lower()] = re.findall(r"Datatype: (\w+)", body)
        entry["onnx_layers"] = re.findall(r"\[ONNX Layer: ([^\]]+)\]", line)
        layers.append(entry)
    return layers


def network_io(network) -> dict[str, dict[str, Any]]:
    """{tensor name: {"mode", "dtype", "shape"}} of the network's inputs and outputs."""
    out = {}
    for i in range(network.num_inputs):
        t = network.get_input(i)
        out[t.name] = {"mode": "input", "dtype": t.dtype.name, "shape": list(t.shape)}
    for i in range(network.num_outputs):
        t = network.get_output(i)
        out[t.name] = {"mode": "output", "dtype": t.dtype.name, "shape": list(t.shape)}
    return out


@dataclass
class CompiledPlan:
    """A plan built in memory by ``compile_network``: the bytes, and what the builder did."""

    plan: bytes
    flavour: str
    version: str
    build: BuildPlan
    targets: list[str] = field(default_factory=list)  # TensorRT-RTX: compute capabilities built for
    offered: list[str] = field(default_factory=list)  # TensorRT-RTX: every target the installed version has
    layers: list[dict[str, Any]] = field(default_factory=list)
    engine_layers: list[dict[str, Any]] = field(default_factory=list)  # with verbose: what the builder compiled
    io: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    timing_cache: bytes | None = None
    cache_reused: bool = False


def offered_targets(trt) -> list[str]:
    """The compute capabilities the installed TensorRT-RTX can build for ('X.Y'), from its ComputeCapability enum."""
    found = (member_compute_capability(name) for name in trt.ComputeCapability.__members__)
    return sorted((cc for cc in found if cc), key=lambda cc: tuple(int(x) for x in cc.split(".")))


def resolve_targets(options: EngineOptions, offered: list[str], version: str) -> list[str]:
    """The TensorRT-RTX targets to build: those asked for (each must be offered), else every offered one the
    precision can be built for (``RTX_DEFAULT_SKIP``)."""
    if options.compute_capabilities:
        missing = [cc for cc in options.compute_capabilities if cc not in offered]
        if missing:
            raise InputError(f"--compute-capability {','.join(missing)}: TensorRT-RTX {version} builds for "
                             f"{', '.join(offered)} only.", hint="For another GPU (e.g. 9.0, H100/H200; 8.7, Jetson "
                             "Orin) build with TensorRT on that machine: --engine-flavour tensorrt.")
        return list(options.compute_capabilities)
    return [cc for cc in offered if cc not in RTX_DEFAULT_SKIP[options.precision]]


def compile_network(onnx_path: str | os.PathLike, options: EngineOptions, *, facts: OnnxFacts | None = None,
                    trt=None, echo: bool = True) -> CompiledPlan:
    """Parse ``onnx_path`` and build the plan in memory with the builder of ``options.flavour``; nothing is written.

    Parser errors and a build that returns no plan are ArtifactErrors naming the ONNX node and quoting the builder.
    ``echo=False`` keeps the builder's log off stderr (its errors still go into the exception).
    """
    facts = facts or inspect_onnx(onnx_path)
    trt = trt or import_tensorrt(options.flavour)
    rtx = options.flavour == "tensorrt-rtx"
    plan = plan_build(trt.__version__, options, facts.precision, onnx_has_qdq=facts.has_qdq)
    logger = make_logger(trt, verbose=options.verbose, echo=echo)
    builder = trt.Builder(logger)
    if options.dla_core is not None and options.dla_core >= int(getattr(builder, "num_DLA_cores", 0)):
        raise InputError(f"--dla-core {options.dla_core}: this machine has {builder.num_DLA_cores} DLA core(s).",
                         hint="Leave --dla-core out (the GPU runs every layer), or build on a Jetson AGX Orin "
                              "(DLA cores 0 and 1).")
    network, _parser = _parse_network(trt, builder, logger, plan, onnx_path)
    shapes = options.profile_shapes(facts.info.model.input_size)
    config = _builder_config(trt, builder, plan, options, shapes)
    offered, targets = [], []
    if rtx:
        offered = offered_targets(trt)
        targets = resolve_targets(options, offered, trt.__version__)
        config.num_compute_capabilities = len(targets)
        for i, cc in enumerate(targets):
            config.set_compute_capability(getattr(trt.ComputeCapability, compute_capability_member(cc)), i)
    cache_path = Path(options.timing_cache) if options.timing_cache else None
    cache_reused = _use_timing_cache(config, cache_path) if not rtx else False

    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if serialized is None:
        said = "; ".join(logger.errors[-3:]) or "no message"
        hint = "Rerun with --verbose for the builder log; try a larger --workspace-gib."
        if rtx and "Turing" in said:
            hint = "TensorRT-RTX builds 3D convolutions for Turing (7.5) from the fp16 graph only: add --fp16, or " \
                   "leave 7.5 out of --compute-capability."
        raise ArtifactError(f"{flavour_name(options.flavour)} {trt.__version__} returned no engine: {said}",
                            path=onnx_path, hint=hint)
    return CompiledPlan(
        plan=bytes(memoryview(serialized)), flavour=options.flavour, version=trt.__version__, build=plan,
        targets=targets, offered=offered, layers=network_layers(trt, network), io=network_io(network),
        engine_layers=parse_engine_layers(logger.engine_layers) if logger.engine_layers else [],
        seconds=seconds, cache_reused=cache_reused,
        timing_cache=bytes(memoryview(config.get_timing_cache().serialize())) if cache_path else None)


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, options: EngineOptions, *,
                 source: str | None = None) -> dict[str, Any]:
    """Build ``engine_path`` (raw plan) + ``<engine>.json`` from ``onnx_path``. Returns the sidecar dict.

    ``source`` is the checkpoint the ONNX came from; it goes into the rebuild command the sidecar check prints.
    Steps: inspect the ONNX, decide the build (``plan_build``), parse, configure, build (``compile_network``), write
    plan, timing cache, layer report (``verbose``) and sidecar; each file is written atomically.
    """
    facts = inspect_onnx(onnx_path)
    if facts.info.spectral_layers:
        raise InputError(
            f"is a --conv-impl spectral export (Conv3d layers {list(facts.info.spectral_layers)} as DFT MatMuls, an "
            "optimisation for ONNX Runtime on CPUs); TensorRT chooses its own convolution kernels for Conv nodes, and "
            "a plan from this graph has not been measured.", path=onnx_path,
            hint="Export again without --conv-impl spectral (the default, direct) and build the plan from that.")
    trt = import_tensorrt(options.flavour)
    compiled = compile_network(onnx_path, options, facts=facts, trt=trt)
    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(engine_path, compiled.plan)
    cache_path = Path(options.timing_cache) if options.timing_cache else None
    if cache_path and compiled.timing_cache is not None:  # a crash never leaves a half-written cache
        atomic_write(cache_path, compiled.timing_cache)

    plan = compiled.build
    build = {"path": plan.path, "decisions": plan.decisions, "network_flags": plan.network_flags,
             "builder_flags": plan.builder_flags, "cleared_flags": plan.cleared_flags,
             "onnx_precision": facts.precision, "seconds": round(compiled.seconds, 3),
             "timing_cache": {"path": str(cache_path) if cache_path else None, "reused": compiled.cache_reused}}
    if options.verbose:
        build["layer_report"] = _layer_report(trt, engine_path, options, compiled)
    targets = {"compute_capabilities": compiled.targets, "offered": compiled.offered} if compiled.targets else None
    return _write_build_sidecar(trt, facts, options, engine_path, onnx_path, build, source, targets)


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
        errors = parser_errors(parser)
        raise ArtifactError(f"{flavour_name(plan.flavour)} {trt.__version__}'s ONNX parser rejected the model:\n  "
                            + "\n  ".join(errors), path=onnx_path,
                            hint="Check the ops above against TensorRT's ONNX operator support "
                                 "(sranet.export.trt_ops.check_tensorrt_ops lists them without TensorRT).")
    return network, parser


def _builder_config(trt, builder, plan: BuildPlan, options: EngineOptions, shapes: list[list[int]]):
    """Builder config: workspace, the plan's flags, hardware compatibility, DLA, verbosity, one profile."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_bytes)
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name in plan.cleared_flags:
        config.clear_flag(getattr(trt.BuilderFlag, name))
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


def _layer_report(trt, engine_path: Path, options: EngineOptions, compiled: CompiledPlan) -> dict[str, Any]:
    """Write ``<engine>.layers.json`` and return its summary for the sidecar.

    TensorRT: the engine inspector's JSON of the plan just built (deserialised with ``engine_host_code_allowed`` for a
    version-compatible plan, whose lean runtime is host code). TensorRT-RTX builds without a GPU, where no plan can
    be deserialised: its report is the network as the builder parsed it and the layers the builder logged as
    compiled (their kinds and data types), both taken during the build.
    """
    import json

    report_path = engine_path.with_name(engine_path.name + ".layers.json")
    if compiled.flavour == "tensorrt-rtx":
        atomic_write(report_path, json.dumps({"io": compiled.io, "network_layers": compiled.layers,
                                              "engine_layers": compiled.engine_layers}, indent=1))
        by_kind: dict[str, int] = {}
        for layer in compiled.engine_layers:
            by_kind[layer["kind"]] = by_kind.get(layer["kind"], 0) + 1
        return {"file": report_path.name, "source": "builder log", "network_layers": len(compiled.layers),
                "layers": len(compiled.engine_layers), "by_type": dict(sorted(by_kind.items())),
                "convolution_input_types": sorted({t for layer in compiled.engine_layers
                                                   if layer["kind"] == "correlation" for t in layer.get("inputs", [])})}
    runtime = trt.Runtime(make_logger(trt))  # must outlive the engine
    if options.version_compatible:
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    if engine is None:
        raise ArtifactError("the plan just built could not be deserialised for the layer report.", path=engine_path)
    text = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    report = atomic_write(report_path, text)
    summary = summarize_layers(text)
    return {"file": report.name, "source": "engine inspector",
            **{k: v for k, v in summary.items() if k != "io_tensors"}}


def _write_build_sidecar(trt, facts: OnnxFacts, options: EngineOptions, engine_path: Path, onnx_path,
                         build: dict[str, Any], source: str | None, targets) -> dict[str, Any]:
    """The sidecar of the plan just built: the ONNX's ArtifactInfo at the build precision, the builder's machine."""
    from sranet.runtime.devices import build_env

    info = ArtifactInfo(model=facts.info.model, preprocess=facts.info.preprocess, threshold=facts.info.threshold,
                        source_sha256=facts.info.source_sha256, precision=options.precision, extra=facts.info.extra)
    env = build_env(trt.__version__, flavour=options.flavour)  # TensorRT: the GPU the builder ran on
    shapes = options.profile_shapes(facts.info.model.input_size)
    sidecar = make_sidecar(plan_path=engine_path, onnx_path=onnx_path, info=info, env=env,
                           options=options.to_dict(), profile={INPUT_NAME: shapes}, build=build, source=source,
                           targets=targets)
    write_sidecar(engine_path, sidecar)
    return sidecar


__all__ = ["HARDWARE_COMPATIBILITY", "TRT_RTX_INSTALL_HINT", "BuildPlan", "CompiledPlan", "EngineOptions",
           "OnnxFacts", "build_engine", "compile_network", "inspect_onnx", "make_logger", "network_io",
           "network_layers", "offered_targets", "parse_engine_layers", "parse_compute_capabilities", "parse_profile", "parser_errors",
           "plan_build", "resolve_targets", "summarize_layers"]
