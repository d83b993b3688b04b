"""The validated options of a TensorRT or TensorRT-RTX build and the facts of the ONNX it builds from, both decided
without TensorRT, and the summary of a built engine's inspector report. ``sranet.export.build_plan`` turns the options
into the build plan per TensorRT line; ``sranet.export.tensorrt`` carries it out.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sranet.errors import ArtifactError, InputError, check_choice
from sranet.runtime.artifact import DEFAULT_PROFILE, INPUT_NAME, OUTPUT_NAMES, PRECISIONS, ArtifactInfo
from sranet.runtime.sidecar import FLAVOURS

MAX_BATCH_LIMIT = 1024
# TensorRT's HardwareCompatibilityLevel, by the name the CLI uses
HARDWARE_COMPATIBILITY = {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-compute-capability": "SAME_COMPUTE_CAPABILITY"}


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


__all__ = ["HARDWARE_COMPATIBILITY", "RTX_DEFAULT_SKIP", "EngineOptions", "OnnxFacts", "compute_capability_member",
           "inspect_onnx", "member_compute_capability", "parse_compute_capabilities", "parse_profile",
           "summarize_layers"]
