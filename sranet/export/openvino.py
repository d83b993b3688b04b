"""Checkpoint -> OpenVINO IR (``model.xml`` + ``model.bin``) for x86 CPUs, fp32 or bf16, gated against PyTorch on
OpenVINO itself before it is written.

Order of work: load checkpoint -> PyTorch reference outputs on phantom volumes -> the graph form asked for
(``sranet.export.graphs``) -> ONNX (the same exporter as ``sranet export``) -> OpenVINO model with the ArtifactInfo
in its ``<rt_info><sranet>`` section (model and preprocessing configs, threshold, checkpoint SHA-256, precision,
graph form) -> IR saved with float32 weights (OpenVINO's default would compress them to fp16) into a temporary
folder -> that IR opened by the runtime's own ``OpenVinoBackend`` with the artifact's precision -> parity gate on
OpenVINO's outputs -> rename into place and write ``<model>.xml.parity.json``. A failed gate raises ParityGateError
and writes nothing.

bf16 is an inference precision, not a file format: the IR keeps float32 weights and says ``sranet.precision =
bf16``; the backend then compiles with INFERENCE_PRECISION_HINT=bf16 (weights and activations in bf16, dot
products accumulated in float32). The gate needs a CPU that computes bf16 (AVX512_BF16 or AMX): elsewhere
OpenVINO would compute float32 and the gate would check nothing, so the export is refused there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sranet.errors import InputError, check_choice
from sranet.export.graphs import GraphPlan, build_graph, plan_graph
from sranet.export.parity import ParityReport, compare, parity_inputs, raise_if_failed, torch_outputs
from sranet.runtime.integrity import seal_openvino_ir

OPENVINO_PRECISIONS = ("fp32", "bf16")
RUNTIME_KEY = "sranet.runtime"  # "openvino": the runtime the artifact was gated on


@dataclass
class OpenVinoExportResult:
    path: Path  # the .xml; its weights are path.with_suffix(".bin")
    info: Any  # ArtifactInfo
    plan: GraphPlan
    parity: ParityReport
    parity_path: Path
    sha256: dict[str, str]  # {"xml": ..., "bin": ...}
    timings_s: dict[str, float] = field(default_factory=dict)


def validate_openvino_args(out_path: str | os.PathLike, *, precision: str, parity_cases: int,
                           threads: int | None = None, conv_impl: str = "direct") -> Path:
    """Refuse bad arguments before any work is done. Returns out_path as a Path."""
    from sranet.export.graphs import GRAPHS

    check_choice("precision", precision, OPENVINO_PRECISIONS, InputError)
    check_choice("conv_impl", conv_impl, GRAPHS, InputError)
    out = Path(out_path)
    if out.suffix.lower() != ".xml":
        raise InputError(f"output path {str(out)!r} must end in .xml for an OpenVINO IR (its weights go to the .bin "
                         "beside it).", hint="Use e.g. --out model.xml.")
    if not isinstance(parity_cases, int) or isinstance(parity_cases, bool) or parity_cases < 2:
        raise InputError(f"parity_cases={parity_cases!r}; the gate needs at least 2 volumes (4 or more recommended).")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise InputError(f"threads={threads!r} must be a positive integer, or None for OpenVINO's default.")
    return out


def export_openvino(checkpoint: str | os.PathLike, out_path: str | os.PathLike, *, precision: str = "fp32",
                    conv_impl: str = "direct", spectral_layers: tuple[int, ...] | None = None, opset: int | None = None,
                    parity_cases: int = 4, seed: int = 0, threads: int | None = None, log=None,
                    signing_key=None) -> OpenVinoExportResult:
    """Export a checkpoint to an OpenVINO IR (``precision`` fp32 | bf16, graph form ``conv_impl``, see
    sranet.export.graphs), gate it on OpenVINO against PyTorch, write ``out_path`` (.xml), its .bin and
    ``<out_path>.parity.json``. ``threads``: OpenVINO threads for the gate's run. ``log``: callable taking one line of
    progress text; None = quiet. The IR records its content digest (``sranet.runtime.integrity``), signed with
    ``signing_key`` (an Ed25519 private key or its PEM path) when given."""
    from sranet.export.onnx import DEFAULT_OPSET, load_model
    from sranet.runtime.backends.openvino import import_openvino

    say = log or (lambda _msg: None)
    out = validate_openvino_args(out_path, precision=precision, parity_cases=parity_cases, threads=threads,
                                 conv_impl=conv_impl)
    opset = DEFAULT_OPSET if opset is None else opset
    ov = import_openvino()
    core = ov.Core()
    _refuse_bf16_without_cpu_support(core, precision)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    model, info = load_model(checkpoint)
    cfg = info.model
    plan = plan_graph(cfg, conv_impl, spectral_layers)
    inputs, label = parity_inputs(cfg, info.preprocess, parity_cases, seed=seed)
    reference = torch_outputs(model, inputs)  # from the unmodified model, before any rewriting
    timings["reference"] = time.perf_counter() - t0

    t = time.perf_counter()
    say(f"Exporting {Path(checkpoint).name} for OpenVINO ({precision}); {plan.summary(cfg)} ...")
    proto = _onnx_for_openvino(model, info, plan, precision=precision, opset=opset, ov_version=ov.__version__)
    timings["export"] = time.perf_counter() - t

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.stem}.", dir=out.parent) as tmp:
        t = time.perf_counter()
        ir_path = _save_ir(ov, core, proto, info, Path(tmp), signing_key)
        timings["convert"] = time.perf_counter() - t

        t = time.perf_counter()
        report = _gate_on_openvino(ir_path, inputs, label, reference, info, plan, opset=opset, threads=threads,
                                   ov_version=ov.__version__)
        timings["parity"] = time.perf_counter() - t
        raise_if_failed(report, path=out)  # ParityGateError with .report; the temporary folder goes away
        sha = _move_ir(ir_path, out)
    parity_path = _write_parity_json(out, sha, report, timings)
    return OpenVinoExportResult(path=out, info=info, plan=plan, parity=report, parity_path=parity_path, sha256=sha,
                                timings_s=timings)


def _refuse_bf16_without_cpu_support(core, precision: str) -> None:
    """A bf16 gate on a CPU that computes float32 would check nothing: refuse it."""
    from sranet.runtime.backends.openvino import cpu_supports_bf16

    if precision == "bf16" and not cpu_supports_bf16(core):
        raise InputError(f"a bf16 export must be gated on a CPU that computes bf16 (AVX512_BF16 or AMX); this one "
                         f"({core.get_property('CPU', 'FULL_DEVICE_NAME')}) would compute float32 and the gate would "
                         "check nothing.", hint="Export bf16 on the deployment CPU, or export fp32 here.")


def _onnx_for_openvino(model, info, plan: GraphPlan, *, precision: str, opset: int, ov_version: str):
    """The checked ONNX proto of ``model`` in the graph form ``plan``; records precision and exporter in ``info``."""
    from sranet.export.onnx import EXPORTER, check_graph, to_onnx_proto

    proto = to_onnx_proto(build_graph(model, plan), opset=opset)
    check_graph(proto)
    info.precision = precision
    info.extra = {"sranet.exporter": f"{EXPORTER} -> OpenVINO {ov_version}", "sranet.opset": str(opset),
                  RUNTIME_KEY: "openvino", **plan.metadata()}
    return proto


def _save_ir(ov, core, proto, info, folder: Path, signing_key) -> Path:
    """Convert ``proto`` to an IR in ``folder`` with ``info`` in its rt_info and float32 weights, sealed; its .xml."""
    import onnx

    from sranet.runtime.backends.openvino import RT_INFO_SECTION

    graph_path, ir_path = folder / "graph.onnx", folder / "model.xml"
    onnx.save(proto, str(graph_path))
    ov_model = core.read_model(str(graph_path))
    for key, value in info.to_metadata().items():
        ov_model.set_rt_info(value, [RT_INFO_SECTION, key])
    ov.save_model(ov_model, str(ir_path), compress_to_fp16=False)  # weights stay float32
    seal_openvino_ir(ir_path, signing_key)  # the digest covers the .xml and .bin that are gated and moved
    return ir_path


def _gate_on_openvino(ir_path: Path, inputs: np.ndarray, label, reference, info, plan: GraphPlan, *, opset: int,
                      threads: int | None, ov_version: str) -> ParityReport:
    """Run the IR through the runtime's own OpenVinoBackend, one case at a time, and compare with ``reference``."""
    from sranet.export.onnx import EXPORTER
    from sranet.runtime.backends.openvino import OpenVinoBackend

    backend = OpenVinoBackend(ir_path, threads=threads)
    probs, atts, ms = [], [], []
    for i in range(len(inputs)):
        t1 = time.perf_counter()
        result = backend.infer(inputs[i:i + 1])
        ms.append((time.perf_counter() - t1) * 1e3)
        probs.append(result["prob"])
        atts.append(result["attention"])
    described = backend.describe()
    backend.close()
    runtime = {"runtime": "openvino", "openvino": ov_version, "device": "CPU",
               "config_applied": described["config_applied"], "ms_per_case_median": float(np.median(ms)),
               "ms_per_case_note": "first calls after compiling; not a benchmark", "exporter": EXPORTER,
               "opset": opset, "conv_impl": plan.conv_impl, "spectral_layers": list(plan.spectral_layers),
               "s2d_layers": list(plan.s2d_layers), "graph_matmul_flops": plan.matmul_flops(info.model)}
    return compare(reference[0], reference[1], np.concatenate(probs), np.concatenate(atts),
                   threshold=info.threshold, precision=info.precision, inputs=label, runtime=runtime)


def _move_ir(ir_path: Path, out: Path) -> dict[str, str]:
    """Move the gated IR's .xml and .bin to ``out``; their SHA-256 digests {"xml": ..., "bin": ...}."""
    sha = {"xml": _sha256(ir_path), "bin": _sha256(ir_path.with_suffix(".bin"))}
    shutil.move(str(ir_path.with_suffix(".bin")), str(out.with_suffix(".bin")))
    shutil.move(str(ir_path), str(out))
    return sha


def _write_parity_json(out: Path, sha: dict[str, str], report: ParityReport, timings: dict[str, float]) -> Path:
    """Write ``<out>.parity.json`` atomically (a temporary file, then a rename); its path."""
    parity_path = out.with_name(out.name + ".parity.json")
    payload = {"model": out.name, "weights": out.with_suffix(".bin").name, "sha256": sha,
               "parity": report.to_dict(), "timings_s": timings}
    tmp_json = parity_path.with_name(f".{parity_path.name}.tmp")
    tmp_json.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp_json, parity_path)
    return parity_path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
