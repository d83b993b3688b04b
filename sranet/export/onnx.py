"""Checkpoint -> ONNX with the patch attention as a second output, gated against PyTorch before it is written.

Graph interface (docs/CONTRACTS.md):
  input   ct         (B, 1, S, S, S) float32, the normalised crop; B is dynamic ("batch")
  output  prob       (B,)            float32, sigmoid(logit) = p(AVNFH present)
  output  attention  (B, P^3)        float32, patch weights a_n, patch n = P*P*i + P*j + k

Exporter: torch.onnx's dynamo exporter (``torch.export`` + onnxscript), opset 18 by default. On this model it gives
a graph of 38 plain nodes (Conv, Relu, MaxPool, Gemm/MatMul, Reshape/Transpose, ReduceMin/ReduceSum, Clip, Where, ...)
with a symbolic batch and a static 64-wide attention output. The TorchScript exporter (``dynamo=False``) emits
about 100 nodes for the same model: Shape/Gather/Concat/Unsqueeze chains that recompute the batch size, 30
Constant nodes, and a symbolic attention width. Both parse in TensorRT 10; the dynamo graph is the one a person can
read, and 18 is the lowest opset the dynamo exporter writes (TensorRT 10.0 parses opsets 9-20, 10.15 up to 24).

Order of work: load checkpoint -> PyTorch reference outputs on phantom volumes -> export -> (fp16 | int8) ->
metadata -> content digest (and signature) -> onnx.checker + shape inference -> parity gate -> TensorRT op check ->
write. A failed gate raises ParityGateError and writes nothing: the model goes to a temporary file that is renamed
only after the gate passes. The digest (``sranet.runtime.integrity.seal_onnx``) covers graph, weights and metadata;
every runtime refuses the file once any of it changes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sranet.errors import ArtifactError, InputError, check_choice
from sranet.export.parity import (
    ParityReport,
    fp16_arithmetic_check,
    parity_inputs,
    raise_if_failed,
    run_parity_gate,
    torch_outputs,
)
from sranet.export.precision import calibration_volumes, convert_fp16, quantize_int8
from sranet.export.trt_ops import TrtOpReport, check_tensorrt_ops
from sranet.runtime.artifact import (
    INPUT_NAME,
    KEY_CONV_IMPL,
    KEY_SPECTRAL_LAYERS,
    OUTPUT_NAMES,
    PRECISIONS,
    ArtifactInfo,
    sha256_file,
)
from sranet.runtime.files import atomic_write
from sranet.runtime.integrity import seal_onnx

DEFAULT_OPSET = 18
MIN_OPSET = 18  # the dynamo exporter's lowest; older opsets go through a version converter that fails on Reduce*
MAX_OPSET = 24  # TensorRT 10.15's ONNX parser's highest
EXPORTER = "torch.onnx dynamo"
CONV_IMPLS = ("direct", "spectral")  # sranet/model/spectral.py; spectral is an fp32 ONNX Runtime (CPU) optimisation
FP16_SIM_CASES = 2  # PyTorch float16 on a CPU is slow (about 13 s per 128^3 case on 2 cores)
MAX_PARITY_CASES = 256  # each is a phantom volume run through PyTorch and ONNX Runtime


@dataclass
class ExportResult:
    path: Path
    info: ArtifactInfo
    parity: ParityReport
    trt_ops: TrtOpReport
    parity_path: Path
    opset: int
    sha256: str
    timings_s: dict[str, float] = field(default_factory=dict)


def _wrapper(model):
    """SRANet -> module with outputs (prob (B,), attention (B, N)), the ONNX interface."""
    import torch

    class ProbAndAttention(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, ct: torch.Tensor):
            out = self.net(ct)
            return torch.sigmoid(out.logit), out.attention  # (B,), (B, N)

    return ProbAndAttention(model).eval()


@contextlib.contextmanager
def quiet():
    """Keep the exporter's and quantiser's progress prints, log lines and warnings off the user's console."""
    import logging

    previous = logging.root.manager.disable
    sink = io.StringIO()
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def to_onnx_proto(model, *, opset: int = DEFAULT_OPSET):
    """SRANet (eval, CPU, fp32) -> onnx.ModelProto with input ``ct`` and outputs ``prob``, ``attention``,
    dynamic batch, weights embedded. The exporter's progress prints and warnings are kept off the console."""
    import torch

    S = model.cfg.input_size
    example = torch.zeros(2, 1, S, S, S)  # batch 2, so torch.export does not specialise the batch to 1
    batch = torch.export.Dim("batch")
    with quiet():
        program = torch.onnx.export(
            _wrapper(model), (example,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES), dynamic_shapes={INPUT_NAME: {0: batch}}, optimize=True, verbose=False,
        )
    proto = program.model_proto
    found = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if found != opset:
        raise ArtifactError(f"the exporter wrote opset {found}, not the requested {opset}.",
                            hint=f"Use --opset between {MIN_OPSET} and {MAX_OPSET}.")
    return proto


def check_graph(proto) -> Any:
    """onnx.checker (full) + shape inference; the interface must be ct (B,1,S,S,S) -> prob (B,), attention (B,N)."""
    import onnx

    onnx.checker.check_model(proto, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    names_in = [i.name for i in inferred.graph.input]
    names_out = [o.name for o in inferred.graph.output]
    if names_in != [INPUT_NAME] or names_out != list(OUTPUT_NAMES):
        raise ArtifactError(f"exported graph has inputs {names_in} and outputs {names_out}; expected "
                            f"[{INPUT_NAME!r}] and {list(OUTPUT_NAMES)}.")
    for vi in [*inferred.graph.input, *inferred.graph.output]:
        if vi.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            raise ArtifactError(f"graph tensor {vi.name!r} is not float32; the interface must stay float32.")
        if not vi.type.tensor_type.shape.dim[0].dim_param:
            raise ArtifactError(f"graph tensor {vi.name!r} has a fixed batch; expected a dynamic batch axis.")
    return inferred


def validate_export_args(out_path: str | os.PathLike, *, opset: int, precision: str, calib_manifest,
                         calib_volumes, parity_cases: int, calib_limit: int = 32, conv_impl: str = "direct",
                         spectral_layers: tuple[int, ...] | None = None) -> Path:
    """Refuse bad arguments before any work is done. Returns out_path as a Path."""
    check_choice("precision", precision, PRECISIONS, InputError)
    check_choice("conv_impl", conv_impl, CONV_IMPLS, InputError)
    if conv_impl == "spectral" and precision != "fp32":
        why = ("int8 quantises the Conv3d nodes, and spectral layers have none" if precision == "int8" else
               "the DFT sums over up to 2,744 products per bin, past what fp16 keeps exactly")
        raise InputError(f"--conv-impl spectral is fp32 only ({why}); it is an optimisation for ONNX Runtime on CPUs.",
                         hint=f"Drop --conv-impl spectral for the {precision} export.")
    if spectral_layers is not None and conv_impl != "spectral":
        raise InputError("spectral_layers was given for a direct export.", hint="Pass conv_impl='spectral' too.")
    out = Path(out_path)
    if out.suffix.lower() != ".onnx":
        raise InputError(f"output path {str(out)!r} must end in .onnx.", hint="Use e.g. --out model.onnx.")
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise InputError(f"opset={opset!r} is outside {MIN_OPSET}-{MAX_OPSET}: {MIN_OPSET} is the lowest the dynamo "
                         f"exporter writes, {MAX_OPSET} the highest TensorRT 10's parser reads.",
                         hint=f"Use --opset {DEFAULT_OPSET}.")
    if not isinstance(parity_cases, int) or parity_cases < 2:
        raise InputError(f"parity_cases={parity_cases!r}; the gate needs at least 2 volumes (4 or more recommended).")
    if parity_cases > MAX_PARITY_CASES:
        raise InputError(f"parity_cases={parity_cases} is more than {MAX_PARITY_CASES} phantom volumes; the gate's "
                         "verdict does not need more.", hint="Use --parity-cases 4 to 32.")
    if out.exists() and not out.is_file():
        raise InputError(f"output path {str(out)!r} exists and is not a regular file (a folder, device or FIFO).",
                         hint="Give a file path ending in .onnx.")
    if not isinstance(calib_limit, int) or calib_limit < 1:
        raise InputError(f"calib_limit={calib_limit!r}; at least 1 calibration volume is needed (16-64 recommended).")
    if precision == "int8" and calib_manifest is None and calib_volumes is None:
        raise InputError("int8 export needs calibration volumes.",
                         hint="Pass --calib MANIFEST (a manifest CSV of typical crops; 16-64 cases is plenty).")
    if precision != "int8" and (calib_manifest is not None or calib_volumes is not None):
        raise InputError(f"calibration data was given for a {precision} export; it is only used with int8.",
                         hint="Add --int8, or drop --calib.")
    if calib_manifest is not None and not Path(calib_manifest).is_file():
        raise InputError(f"calibration manifest {str(calib_manifest)!r} does not exist.",
                         hint="Pass the path of a manifest CSV with --calib.")
    return out


def load_model(checkpoint: str | os.PathLike):
    """(SRANet in eval mode on the CPU, ArtifactInfo with the checkpoint's SHA-256)."""
    from sranet.model.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    info = ckpt.artifact_info()
    info.source_sha256 = sha256_file(checkpoint)
    return ckpt.build_model("cpu"), info


def export_onnx(checkpoint: str | os.PathLike, out_path: str | os.PathLike, *, opset: int = DEFAULT_OPSET,
                precision: str = "fp32", calib_manifest: str | os.PathLike | None = None,
                calib_volumes: list[np.ndarray] | None = None, calib_limit: int = 32,
                parity_cases: int = 4, seed: int = 0, conv_impl: str = "direct",
                spectral_layers: tuple[int, ...] | None = None, log=None, signing_key=None) -> ExportResult:
    """Export a checkpoint to ONNX (``precision`` fp32 | fp16 | int8), gate it against PyTorch, write it.

    Writes ``out_path`` and ``<out_path>.parity.json`` (parity numbers + TensorRT op check) only when the gate
    passes; otherwise raises ParityGateError (its ``report`` attribute holds the numbers) and writes nothing.
    ``calib_volumes``: (S, S, S) float32 network inputs, instead of ``calib_manifest``, for int8.
    ``conv_impl``: "direct" (ONNX Conv nodes, for every runtime) or "spectral" (fp32 only: the Conv3d layers whose
    DFT form halves the arithmetic become MatMuls, sranet/model/spectral.py; ``spectral_layers`` picks them by
    1-based index instead, e.g. for experiments). The gate compares either against the unmodified PyTorch model.
    ``log``: callable taking one line of progress text (the CLI passes typer.echo); None = quiet.
    ``signing_key``: an Ed25519 private key (or its PEM path) to sign the model with (``sranet.runtime.integrity``);
    the content digest is recorded either way.
    The body is the export's named steps in order (reference, graph, precision, seal, gate, write), each timed;
    its length is the parameter list and this docstring.
    """
    import onnx

    say = log or (lambda _msg: None)
    out = validate_export_args(out_path, opset=opset, precision=precision, calib_manifest=calib_manifest,
                               calib_volumes=calib_volumes, parity_cases=parity_cases, calib_limit=calib_limit,
                               conv_impl=conv_impl, spectral_layers=spectral_layers)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    model, info = load_model(checkpoint)
    info.precision = precision
    inputs, label = parity_inputs(info.model, info.preprocess, parity_cases, seed=seed)
    reference = torch_outputs(model, inputs)  # before export: a change to the model after this point must show
    timings["reference"] = time.perf_counter() - t0

    t = time.perf_counter()
    layers = _spectral_layers(info.model, spectral_layers) if conv_impl == "spectral" else ()
    say(f"Exporting {Path(checkpoint).name} ({info.model.input_size}^3, {info.model.num_patches} patches) with "
        f"{EXPORTER}, opset {opset} ...")
    fp32 = _fp32_graph(model, layers, opset, say)
    timings["export"] = time.perf_counter() - t
    runtime: dict[str, Any] = {"exporter": EXPORTER, "opset": opset, "conv_impl": conv_impl,
                               "spectral_layers": list(layers)}

    t = time.perf_counter()
    candidate = _precision_variant(fp32, precision, info, calib_manifest, calib_volumes, calib_limit, runtime, say)
    timings["precision"] = time.perf_counter() - t
    info.extra = {"sranet.exporter": EXPORTER, "sranet.opset": str(opset), KEY_CONV_IMPL: conv_impl}
    if layers:
        info.extra[KEY_SPECTRAL_LAYERS] = ",".join(map(str, layers))
    onnx.helper.set_model_props(candidate, info.to_metadata())
    seal_onnx(candidate, signing_key)  # last change to the model: the digest covers everything above
    check_graph(candidate)
    data = candidate.SerializeToString()

    t = time.perf_counter()
    report = _gate(model, fp32, data, inputs, label, reference, info, runtime)
    timings["parity"] = time.perf_counter() - t
    trt = check_tensorrt_ops(candidate)
    raise_if_failed(report, path=out)  # ParityGateError with .report; nothing has been written

    out.parent.mkdir(parents=True, exist_ok=True)
    parity_path = out.with_name(out.name + ".parity.json")
    atomic_write(out, data)
    payload = {"model": out.name, "sha256": _sha256_bytes(data), "parity": report.to_dict(),
               "tensorrt_op_check": trt.to_dict(), "timings_s": timings}
    atomic_write(parity_path, json.dumps(payload, indent=2) + "\n")
    return ExportResult(path=out, info=info, parity=report, trt_ops=trt, parity_path=parity_path, opset=opset,
                        sha256=payload["sha256"], timings_s=timings)


def _fp32_graph(model, layers: tuple[int, ...], opset: int, say):
    """The checked fp32 ONNX of ``model``, with the Conv3d ``layers`` (1-based) in spectral form when given."""
    graph_model = model
    if layers:
        from sranet.model.spectral import spectral_copy

        graph_model = spectral_copy(model, layers)
        say(_spectral_summary(model.cfg, layers))
    fp32 = to_onnx_proto(graph_model, opset=opset)
    check_graph(fp32)
    return fp32


def _precision_variant(fp32, precision: str, info: ArtifactInfo, calib_manifest, calib_volumes, calib_limit: int,
                       runtime: dict[str, Any], say):
    """The graph to gate: ``fp32`` itself, its fp16 variant, or its int8 QDQ variant (calibration info into
    ``runtime``)."""
    if precision == "fp16":
        return convert_fp16(fp32)
    if precision == "int8":
        volumes = calib_volumes if calib_volumes is not None else calibration_volumes(
            calib_manifest, info.preprocess, limit=calib_limit)
        say("Calibrating int8 on real volumes ...")
        with quiet():
            candidate, runtime["calibration"] = quantize_int8(fp32, volumes)
        return candidate
    return fp32


def _gate(model, fp32, data: bytes, inputs, label: str, reference, info: ArtifactInfo, runtime: dict[str, Any]):
    """The parity report of the serialised candidate ``data`` against the PyTorch ``reference``; for fp16 on a CPU
    whose ONNX Runtime computes in float32, PyTorch float16 arithmetic is part of the gate too."""
    precision = info.precision
    if precision != "fp32":
        from sranet.export.parity import ort_outputs

        _, _, fp32_info = ort_outputs(fp32.SerializeToString(), inputs)
        runtime["fp32_ms_per_case_median"] = fp32_info["ms_per_case_median"]
    report = run_parity_gate(model, data, inputs, threshold=info.threshold, precision=precision, inputs_label=label,
                             reference=reference, runtime=runtime)
    if precision == "fp16" and _ort_computes_fp16_in_fp32(report):
        n = min(FP16_SIM_CASES, len(inputs))
        sim = fp16_arithmetic_check(model, inputs[:n], reference, threshold=info.threshold)
        summary = {k: v for k, v in sim.to_dict().items() if k not in ("per_case", "runtime", "tolerance")}
        report.runtime["fp16_arithmetic_simulation"] = summary
        report.failures += [f"PyTorch float16 simulation: {f}" for f in sim.failures]
    _explain_cpu_run(report)
    return report


def _spectral_layers(cfg, requested: tuple[int, ...] | None) -> tuple[int, ...]:
    """The layers to export in spectral form: ``requested``, or those where it at least halves the arithmetic."""
    from sranet.model.flops import SPECTRAL_MAX_FRACTION, choose_spectral_layers, conv_layers

    if requested is not None:
        known = [L.index for L in conv_layers(cfg)]
        bad = [i for i in requested if i not in known]
        if bad or not requested:
            raise InputError(f"spectral_layers={tuple(requested)!r}: this model's Conv3d layers are {known}.")
        return tuple(sorted(set(requested)))
    layers = choose_spectral_layers(cfg)
    if not layers:
        costs = "; ".join(f"conv{L.index} {L.direct_flops() / 1e6:.3g} direct vs {L.spectral_flops()['total'] / 1e6:.3g} "
                          "spectral" for L in conv_layers(cfg))
        raise InputError(f"--conv-impl spectral would not cut this model's arithmetic: no Conv3d layer drops to "
                         f"{SPECTRAL_MAX_FRACTION:.0%} of its direct FLOPs (MFLOP per patch: {costs}).",
                         hint="Export with --conv-impl direct; small kernels on small patches are cheapest direct.")
    return layers


def _spectral_summary(cfg, layers: tuple[int, ...]) -> str:
    from sranet.model.flops import conv_layers, count_flops, graph_matmul_flops

    parts = [f"conv{L.index} {L.direct_flops() * cfg.num_patches / 1e9:.3g} -> "
             f"{L.spectral_flops()['total'] * cfg.num_patches / 1e9:.3g} GFLOP" for L in conv_layers(cfg)
             if L.index in layers]
    return (f"Spectral Conv3d for {', '.join(parts)} per volume; the graph does "
            f"{graph_matmul_flops(cfg, layers) / 1e9:.3g} of the model's {count_flops(cfg).matmul_flops / 1e9:.3g} "
            "GFLOP of matrix arithmetic.")


def _ort_computes_fp16_in_fp32(report: ParityReport) -> bool:
    dtypes = report.runtime.get("compute_dtypes_on_cpu", {})
    return any(k != "float16" for counts in dtypes.values() for k in counts)


def _explain_cpu_run(report: ParityReport) -> None:
    """Say in the report what ONNX Runtime on this CPU did with a reduced-precision graph (no speed-up claims)."""
    r = report.runtime
    notes = r.setdefault("notes", [])
    if report.precision == "fp16":
        in_fp32 = sorted(op for op, counts in r.get("compute_dtypes_on_cpu", {}).items() if "float32" in counts)
        if in_fp32:
            notes.append(
                f"ONNX Runtime's CPU EP has no fp16 kernels for {', '.join(in_fp32)} here: it inserted "
                f"{r.get('casts_inserted_by_ort', 0)} Casts and computed them in float32 on fp16-rounded weights, so "
                "the ONNX Runtime numbers above measure fp16 weight rounding, not fp16 arithmetic."
            )
        sim = r.get("fp16_arithmetic_simulation")
        if sim:
            notes.append(
                f"fp16 arithmetic was checked with PyTorch float16 on the CPU ({sim['cases']} cases): max |delta prob| "
                f"{sim['max_abs_prob']:.3g}, max |delta attention| {sim['max_abs_attention']:.3g}, "
                f"{sim['decision_flips']} flips; part of the gate. TensorRT's own fp16 kernels run only on a GPU."
            )
    elif report.precision == "int8":
        dtypes = r.get("compute_dtypes_on_cpu", {})
        ran = ", ".join(f"{op} in {'/'.join(sorted(c))}" for op, c in sorted(dtypes.items()))
        int8_conv = any({"int8", "uint8"} & set(c) for op, c in dtypes.items() if "Conv" in op)
        how = ("the Conv3d layers ran on ORT's 8-bit integer kernels (QLinearConv; ORT on x86 rewrites int8 "
               "activations to uint8), so integer arithmetic is what the gate measured" if int8_conv else "ORT dequantised around float Conv3d, so the gate measured int8 rounding "
               "of weights and activations, not int8 kernels")
        notes.append(f"ONNX Runtime's CPU EP ran the QDQ graph as: {ran or 'unknown'}; {how}. TensorRT's int8 "
                     "tactics differ and run only on a GPU.")
    if "fp32_ms_per_case_median" in r:
        notes.append(f"CPU time per case: fp32 {r['fp32_ms_per_case_median']:.1f} ms, {report.precision} "
                     f"{r['ms_per_case_median']:.1f} ms (ONNX Runtime, this machine; not a GPU figure).")


def _sha256_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()

