"""Export targets: for each runtime, the artifact it loads and the graph form that runs fastest on it.

``sranet export --target NAME`` picks the graph (``sranet.export.graphs``) from this table: the first form in the
target's preference list for the precision that applies to the model (spectral only where it at least halves a
layer's arithmetic, s2d only where a layer has one input channel). The measurements behind each choice are in
docs/export.md ("Export targets") and benchmarks/results/cpu_graphs.json. An explicit ``--conv-impl`` overrides the
choice, within what the target accepts.
"""

from __future__ import annotations

from dataclasses import dataclass

from sranet.config import ModelConfig
from sranet.errors import InputError, check_choice


@dataclass(frozen=True)
class Target:
    name: str
    runtime: str  # "onnxruntime" | "openvino" | "tensorrt"
    suffix: str  # the artifact --out must end in
    graphs: dict[str, tuple[str, ...]]  # precision -> graph forms in order of preference
    why: str  # one line for the CLI and the docs

    @property
    def precisions(self) -> tuple[str, ...]:
        return tuple(self.graphs)


TARGETS: dict[str, Target] = {
    "onnxruntime-cpu": Target(
        "onnxruntime-cpu", "onnxruntime", ".onnx",
        {"fp32": ("spectral", "direct"), "fp16": ("direct",), "int8": ("direct",)},
        "ONNX Runtime's CPU MatMul runs the spectral conv2 at close to its peak rate; its Conv3d is im2col + SGEMM, "
        "so conv1 stays direct (the s2d form computes 1.73x the multiply-adds in a better shape and is no faster)."),
    "openvino-cpu": Target(
        "openvino-cpu", "openvino", ".xml",
        {"fp32": ("spectral", "direct"), "bf16": ("s2d-spectral", "s2d", "direct")},
        "OpenVINO's bf16 dot products need pairs of input channels: conv1 (one channel) becomes the 8-channel s2d "
        "form; conv2 spectral in both precisions."),
    "tensorrt": Target(
        "tensorrt", "tensorrt", ".onnx",
        {"fp32": ("direct",), "fp16": ("direct",), "int8": ("direct",)},
        "TensorRT chooses its own convolution kernels (implicit GEMM, Winograd, FFT) for Conv nodes; a rewritten "
        "graph only takes that choice away."),
}


def get_target(name: str) -> Target:
    check_choice("--target", name, TARGETS, InputError)
    return TARGETS[name]


def choose_graph(target: Target, precision: str, cfg: ModelConfig) -> tuple[str, str]:
    """(graph form, reason) for ``precision`` on ``target`` and this model: the first preferred form that applies."""
    from sranet.export.graphs import plan_graph

    if precision not in target.graphs:
        raise InputError(f"target {target.name!r} takes precisions {', '.join(target.precisions)}, not {precision!r}.",
                         hint="Pick one of those, or another --target.")
    skipped = []
    for form in target.graphs[precision]:
        try:
            plan_graph(cfg, form)
        except InputError:
            skipped.append(form)
            continue
        reason = target.why if not skipped else (f"{target.why} ({', '.join(skipped)} does not apply to this model: "
                                                 f"see `--conv-impl {skipped[0]}` for why.)")
        return form, reason
    raise InputError(f"no graph form of target {target.name!r} applies to this model (tried {', '.join(skipped)}).")


def check_graph_for_target(target: Target, conv_impl: str, precision: str) -> None:
    """Refuse an explicit --conv-impl the target's runtime should not get."""
    if precision not in target.graphs:
        raise InputError(f"target {target.name!r} takes precisions {', '.join(target.precisions)}, not {precision!r}.")
    if target.runtime == "tensorrt" and conv_impl != "direct":
        raise InputError(f"--conv-impl {conv_impl} is a CPU graph; TensorRT builds from the direct graph, where it "
                         "picks its own convolution kernels.", hint="Drop --conv-impl for --target tensorrt.")
    if target.runtime == "onnxruntime" and conv_impl.startswith("s2d"):
        raise InputError(f"--conv-impl {conv_impl} is exported for OpenVINO; ONNX Runtime runs the direct conv1 as "
                         "fast at fewer multiply-adds.", hint="Use --conv-impl direct or spectral for ONNX Runtime.")


@dataclass(frozen=True)
class ExportRoute:
    """What `sranet export` writes: an OpenVINO IR or an ONNX, in ``precision``, with ``conv_impl`` (None: the
    target's choice, made once the checkpoint's model config is known)."""

    openvino: bool
    precision: str
    conv_impl: str | None
    target: Target | None


def route_export(target: str | None, *, openvino: bool, precision: str, conv_impl: str | None, engine: bool,
                 triton: bool, out: str | None = None) -> ExportRoute:
    """Check the export options against each other and the output path's suffix (no model needed) and say which
    exporter runs."""
    from sranet.export.graphs import GRAPHS

    chosen = get_target(target) if target is not None else None
    if chosen is not None and openvino and chosen.runtime != "openvino":
        raise InputError(f"--openvino writes an OpenVINO IR, but --target {chosen.name} runs {chosen.runtime}.",
                         hint="Use --target openvino-cpu, or drop --openvino.")
    ir = openvino or (chosen is not None and chosen.runtime == "openvino")
    if precision == "bf16" and not ir:
        raise InputError("--bf16 is an OpenVINO inference precision (the IR keeps float32 weights).",
                         hint="Add --target openvino-cpu (or --openvino), or use --fp16 for TensorRT.")
    if ir:
        from sranet.export.openvino import OPENVINO_PRECISIONS

        if precision not in OPENVINO_PRECISIONS:
            raise InputError(f"an OpenVINO IR is exported in {' or '.join(OPENVINO_PRECISIONS)}, not {precision}.",
                             hint="Use --bf16 for reduced precision on OpenVINO; --fp16/--int8 are for TensorRT.")
        if engine or triton:
            raise InputError("--engine and --triton build from an ONNX; an OpenVINO IR is loaded by sranet's "
                             "OpenVINO backend.", hint="Export the ONNX separately for TensorRT or Triton.")
    elif chosen is not None and chosen.runtime == "onnxruntime" and engine:
        raise InputError("--engine builds a TensorRT plan, but --target onnxruntime-cpu picks a CPU graph.",
                         hint="Use --target tensorrt --engine.")
    suffix = ".xml" if ir else ".onnx"
    if out is not None and not str(out).lower().endswith(suffix):
        what = "an OpenVINO IR (its weights go to the .bin beside it)" if ir else "an ONNX model"
        raise InputError(f"output path {str(out)!r} must end in {suffix} for {what}.",
                         hint=f"Use e.g. --out model{suffix}.")
    if conv_impl is not None:
        from sranet.export.onnx import CONV_IMPLS

        check_choice("--conv-impl", conv_impl, GRAPHS if ir else CONV_IMPLS, InputError)
        if chosen is not None:
            check_graph_for_target(chosen, conv_impl, precision)
    elif chosen is not None and precision not in chosen.graphs:
        raise InputError(f"target {chosen.name!r} takes precisions {', '.join(chosen.precisions)}, not {precision!r}.")
    return ExportRoute(openvino=ir, precision=precision, conv_impl=conv_impl, target=chosen)
