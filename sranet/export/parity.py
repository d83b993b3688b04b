"""The parity gate: an exported model must agree with the PyTorch model before it is written.

Both run the same real-shaped inputs: CT-like phantoms (bone, marrow, soft tissue, air, a lesion in some of them,
noise) normalised with the artifact's preprocessing, not only random noise. The gate compares, per precision:

  prob          max |p_onnx - p_torch| over all cases                  <= Tolerance.prob_abs
  flips         cases whose decision (p >= threshold) differs           == 0, for every precision
  attention     max |a_onnx - a_torch| over all cases and 64 patches   <= Tolerance.attention_abs
  top-1 patch   fraction of cases whose most-attended patch agrees      >= Tolerance.min_top1_agreement
                (tie-aware: the ONNX top-1 patch counts as agreeing when its reference weight is within
                attention_abs of the reference maximum, since near-equal weights have no stable argmax)

The tolerances (TOLERANCES below; also in docs) are set for each precision's arithmetic: fp32 differs only in
summation order; fp16 rounds weights and activations to 11 significant bits, bf16 to 8 (with float32
accumulation, as OpenVINO computes it: bounds between fp16's and int8's); int8 QDQ quantises weights per channel
and activations per tensor, so it gets the loosest bounds, but never a decision flip.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sranet.config import ModelConfig, PreprocessConfig
from sranet.errors import ParityGateError


@dataclass(frozen=True)
class Tolerance:
    prob_abs: float
    attention_abs: float
    min_top1_agreement: float
    max_flips: int = 0


TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(prob_abs=1e-4, attention_abs=1e-4, min_top1_agreement=1.0),
    "fp16": Tolerance(prob_abs=5e-3, attention_abs=5e-3, min_top1_agreement=1.0),
    "bf16": Tolerance(prob_abs=2e-2, attention_abs=1e-2, min_top1_agreement=1.0),  # OpenVINO IR (export/openvino.py)
    "int8": Tolerance(prob_abs=5e-2, attention_abs=2e-2, min_top1_agreement=0.75),
}


@dataclass
class ParityReport:
    """What the gate measured. ``passed`` is the verdict; ``failures`` says which bound broke."""

    precision: str
    cases: int
    threshold: float
    tolerance: Tolerance
    max_abs_prob: float
    decision_flips: int
    max_abs_attention: float
    top1_agreement: float  # strict argmax agreement
    top1_agreement_tie_aware: float  # what the gate uses (see module docstring)
    inputs: str  # where the volumes came from
    runtime: dict[str, Any] = field(default_factory=dict)  # provider, what ORT did with the graph, CPU timings
    per_case: list[dict[str, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        return d

    def write_json(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    def summary(self) -> str:
        t = self.tolerance
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            f"Parity gate ({self.precision}, {self.cases} cases, {self.inputs}): {verdict}",
            f"  max |delta prob|      {self.max_abs_prob:.3g}  (limit {t.prob_abs:g})",
            f"  decision flips        {self.decision_flips}  at threshold {self.threshold:.4g} (limit {t.max_flips})",
            f"  max |delta attention| {self.max_abs_attention:.3g}  (limit {t.attention_abs:g})",
            f"  top-1 patch agreement {self.top1_agreement_tie_aware:.0%} tie-aware, {self.top1_agreement:.0%} strict "
            f"(min {t.min_top1_agreement:.0%})",
        ]
        for note in self.runtime.get("notes", []):
            lines.append(f"  note: {note}")
        lines += [f"  FAIL: {f}" for f in self.failures]
        return "\n".join(lines)


# -- inputs ---------------------------------------------------------------------------------------------------------
PARITY_STAGES = (0, 3, 2, 4)  # healthy, collapse, sclerotic rim, arthrosis; cycled over the cases


def parity_inputs(model: ModelConfig, preprocess: PreprocessConfig, cases: int, *, seed: int = 0,
                  shape: tuple[int, int, int] = (64, 80, 80)) -> tuple[np.ndarray, str]:
    """``cases`` network inputs from synthetic femoral-head CT phantoms: (cases, 1, S, S, S) float32 and a label.

    Each phantom (``sranet.data.synthetic.generate_case``, ARCO stages cycled over PARITY_STAGES) goes through the
    runtime's own preprocessing (``sranet.runtime.preprocess.preprocess`` with the artifact's PreprocessConfig and
    the phantom's ROI), exactly as ``sranet predict`` would feed it. ``shape`` is the phantom's (D, H, W) before
    cropping; smaller than a scan so that the gate stays quick, and resampled to S^3 like any crop.
    """
    from sranet.data.synthetic import generate_case
    from sranet.runtime.preprocess import preprocess as run_preprocess
    from sranet.runtime.roi import parse_roi

    if preprocess.output_size != model.input_size:
        raise ParityGateError(f"preprocess output_size {preprocess.output_size} != model input_size "
                              f"{model.input_size}; the checkpoint's configs disagree.")
    vols = []
    for i in range(cases):
        case = generate_case(seed + i, PARITY_STAGES[i % len(PARITY_STAGES)], shape=shape)
        prepared = run_preprocess(case.to_volume(), preprocess, roi=parse_roi(case.roi, case.side))
        vols.append(prepared.input)
    x = np.stack(vols)[:, None].astype(np.float32)
    label = (f"{cases} synthetic hip CT phantoms (ARCO stages {sorted({PARITY_STAGES[i % 4] for i in range(cases)})}, "
             f"{shape[0]}x{shape[1]}x{shape[2]} before ROI crop) preprocessed to {model.input_size}^3 by the runtime")
    return x, label


# -- running both sides ---------------------------------------------------------------------------------------------
def torch_outputs(model, x: np.ndarray, *, batch: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The PyTorch reference: x (N, 1, S, S, S) -> prob (N,), attention (N, P^3), float32 on the CPU."""
    import torch

    probs, atts = [], []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            out = model(torch.from_numpy(x[i:i + batch]))
            probs.append(torch.sigmoid(out.logit).float().numpy())
            atts.append(out.attention.float().numpy())
    return np.concatenate(probs), np.concatenate(atts)


def ort_outputs(onnx_bytes: bytes, x: np.ndarray, *, batch: int = 2) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """ONNX Runtime on the CPU: returns prob (N,), attention (N, P^3) and what ORT did (ms per case, inserted Casts)."""
    import tempfile

    import onnx
    import onnxruntime as ort

    from sranet.runtime.backends.onnxruntime import make_session

    with tempfile.TemporaryDirectory() as tmp:
        # ORT's note that the saved optimised graph is machine-specific does not matter: we only count its ops
        optimized_path = os.path.join(tmp, "optimized.onnx")
        sess = make_session(onnx_bytes, optimized_model_path=optimized_path)
        optimized = onnx.load(optimized_path)
    original = onnx.load_from_string(onnx_bytes)
    casts_inserted = sum(n.op_type == "Cast" for n in optimized.graph.node) - sum(
        n.op_type == "Cast" for n in original.graph.node)
    probs, atts, times = [], [], []
    for i in range(0, len(x), batch):
        t0 = time.perf_counter()
        prob, att = sess.run(["prob", "attention"], {"ct": x[i:i + batch]})
        times.append((time.perf_counter() - t0) * 1000.0 / len(x[i:i + batch]))
        probs.append(prob)
        atts.append(att)
    info = {"provider": "CPUExecutionProvider", "onnxruntime": ort.__version__,
            "ms_per_case_median": float(np.median(times)), "casts_inserted_by_ort": int(max(casts_inserted, 0)),
            "compute_dtypes_on_cpu": _compute_dtypes(optimized), "optimized_op_counts": _op_counts(optimized)}
    return np.concatenate(probs).astype(np.float32), np.concatenate(atts).astype(np.float32), info


_COMPUTE_OPS = ("Conv", "MaxPool", "Gemm", "MatMul", "FusedConv", "FusedGemm", "QLinearConv", "NhwcMaxPool",
                "QLinearMatMul", "MatMulInteger", "ConvInteger")
_DTYPES = {1: "float32", 10: "float16", 3: "int8", 2: "uint8"}


def _compute_dtypes(model) -> dict[str, dict[str, int]]:
    """{op: {dtype: count}}: the type each heavy node of ORT's optimised graph really reads (input 0)."""
    import onnx

    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - contrib ops may defeat inference; report what is known
        pass
    g = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.value_info, *g.output]}
    types.update({t.name: t.data_type for t in g.initializer})
    out: dict[str, dict[str, int]] = {}
    for n in g.node:
        if n.op_type in _COMPUTE_OPS and n.input:
            dtype = _DTYPES.get(types.get(n.input[0], 0), "unknown")
            out.setdefault(n.op_type, {}).setdefault(dtype, 0)
            out[n.op_type][dtype] += 1
    return out


def _op_counts(model) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in model.graph.node:
        key = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
        counts[key] = counts.get(key, 0) + 1
    return counts


# -- the gate -------------------------------------------------------------------------------------------------------
def compare(ref_prob: np.ndarray, ref_att: np.ndarray, prob: np.ndarray, att: np.ndarray, *, threshold: float,
            precision: str, inputs: str, runtime: dict[str, Any] | None = None) -> ParityReport:
    """Score candidate outputs against the reference: prob (N,), attention (N, P^3). Pure numpy."""
    tol = TOLERANCES[precision]
    dprob = np.abs(prob.astype(np.float64) - ref_prob)
    datt = np.abs(att.astype(np.float64) - ref_att).max(axis=1)
    flips = (prob >= threshold) != (ref_prob >= threshold)
    ref_top, top = ref_att.argmax(axis=1), att.argmax(axis=1)
    strict = ref_top == top
    rows = np.arange(len(ref_att))
    tie_aware = strict | (ref_att[rows, top] >= ref_att[rows, ref_top] - tol.attention_abs)
    report = ParityReport(
        precision=precision, cases=len(ref_prob), threshold=float(threshold), tolerance=tol,
        max_abs_prob=float(dprob.max()), decision_flips=int(flips.sum()), max_abs_attention=float(datt.max()),
        top1_agreement=float(strict.mean()), top1_agreement_tie_aware=float(tie_aware.mean()), inputs=inputs,
        runtime=runtime or {},
        per_case=[{"prob_ref": float(a), "prob": float(b), "abs_delta_prob": float(c), "max_abs_delta_attention": float(d),
                   "top1_ref": int(e), "top1": int(f)}
                  for a, b, c, d, e, f in zip(ref_prob, prob, dprob, datt, ref_top, top, strict=True)],
    )
    if not np.isfinite(prob).all() or not np.isfinite(att).all():
        report.failures.append("the exported model produced NaN or infinite outputs.")
    if report.max_abs_prob > tol.prob_abs:
        report.failures.append(f"max |delta prob| {report.max_abs_prob:.3g} > {tol.prob_abs:g}.")
    if report.decision_flips > tol.max_flips:
        report.failures.append(f"{report.decision_flips} decision(s) flip at threshold {threshold:.4g}.")
    if report.max_abs_attention > tol.attention_abs:
        report.failures.append(f"max |delta attention| {report.max_abs_attention:.3g} > {tol.attention_abs:g}.")
    if report.top1_agreement_tie_aware < tol.min_top1_agreement:
        report.failures.append(f"top-1 patch agreement {report.top1_agreement_tie_aware:.0%} < "
                               f"{tol.min_top1_agreement:.0%}.")
    return report


def run_parity_gate(torch_model, onnx_bytes: bytes, inputs: np.ndarray, *, threshold: float, precision: str,
                    inputs_label: str, reference: tuple[np.ndarray, np.ndarray] | None = None,
                    runtime: dict[str, Any] | None = None) -> ParityReport:
    """PyTorch (fp32, CPU) vs ONNX Runtime (CPU EP) on ``inputs`` (N, 1, S, S, S). Returns the report; never raises
    for a failed gate (see ``raise_if_failed``), so callers can save the report either way."""
    ref = reference if reference is not None else torch_outputs(torch_model, inputs)
    prob, att, info = ort_outputs(onnx_bytes, inputs)
    info.update(runtime or {})
    return compare(ref[0], ref[1], prob, att, threshold=threshold, precision=precision, inputs=inputs_label,
                   runtime=info)


def fp16_arithmetic_check(torch_model, inputs: np.ndarray, reference: tuple[np.ndarray, np.ndarray], *,
                          threshold: float) -> ParityReport:
    """PyTorch in float16 on the CPU (weights, activations and kernels in half) vs the fp32 reference, scored with
    the fp16 tolerances. Used where ONNX Runtime's CPU EP computes the fp16 graph in float32 (see the report's
    ``compute_dtypes_on_cpu``), so that fp16 arithmetic is still checked somewhere. ``inputs`` (N, 1, S, S, S)."""
    import copy

    import torch

    half = copy.deepcopy(torch_model).half().eval()
    probs, atts = [], []
    with torch.inference_mode():
        for i in range(len(inputs)):
            out = half(torch.from_numpy(inputs[i:i + 1]).half())
            probs.append(torch.sigmoid(out.logit.float()).numpy())
            atts.append(out.attention.float().numpy())
    n = len(inputs)
    return compare(reference[0][:n], reference[1][:n], np.concatenate(probs), np.concatenate(atts),
                   threshold=threshold, precision="fp16", inputs=f"PyTorch CPU float16, {n} cases")


def raise_if_failed(report: ParityReport, *, path: str | os.PathLike | None = None) -> None:
    if not report.passed:
        error = ParityGateError(
            f"the {report.precision} export disagrees with the PyTorch model: {' '.join(report.failures)} "
            "No model was written.", path=path,
            hint="See the parity report for per-case numbers; for int8, calibrate on more (and more typical) volumes.",
        )
        error.report = report  # the numbers, for the CLI and for callers
        raise error
