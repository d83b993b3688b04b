"""Will TensorRT's ONNX parser take this graph? A check that runs without TensorRT.

Every node of the graph is looked up in TensorRT's published ONNX operator table (``trt_onnx_ops.json``, built from
onnx-tensorrt's ``docs/operators.md``, TensorRT 10.15 revision; the file names its source) and the attributes that
the table restricts are checked: pooling rank and dilations, the ``Indices`` output of MaxPool, Conv rank, Resize
modes, constant ``axes`` of reductions and (un)squeezes, zero points of Q/DQ, TopK's ``sorted``. The tensor types the
nodes see (from ONNX shape inference) are checked against the table's type column, and the model's opset against
the parser's opset range.

This is a static check of the published table, not a TensorRT build: it catches the errors the parser would
report for an unsupported op or attribute, not tactic or memory failures, which only ``build_engine`` can find.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from sranet.errors import ArtifactError

TABLE_FILE = "trt_onnx_ops.json"

# ONNX TensorProto element types -> the table's type names
_ONNX_TYPES = {1: "FP32", 2: "UINT8", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL", 10: "FP16", 11: "DOUBLE",
               16: "BF16", 17: "FP8", 18: "FP8", 19: "FP8", 20: "FP8", 22: "INT4", 23: "FP4"}
_QUANTIZED = {"INT8", "INT4", "FP8", "FP4"}
_Q_OPS = {"QuantizeLinear", "DequantizeLinear"}


@dataclass
class OpIssue:
    node: str
    op_type: str
    problem: str

    def __str__(self) -> str:
        return f"{self.op_type} node {self.node!r}: {self.problem}"


@dataclass
class TrtOpReport:
    """Result of ``check_tensorrt_ops``. ``ok`` is True when no node breaks the table's rules."""

    path: str
    tensorrt_version: str
    source: str
    opset: int
    op_counts: dict[str, int]
    issues: list[OpIssue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "ok": self.ok, "tensorrt_version": self.tensorrt_version, "source": self.source,
                "opset": self.opset, "op_counts": self.op_counts,
                "issues": [vars(i) for i in self.issues], "notes": self.notes}

    def summary(self) -> str:
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(self.op_counts.items()))
        head = (f"TensorRT op check (static, against the TensorRT {self.tensorrt_version} ONNX parser table): "
                f"opset {self.opset}, {sum(self.op_counts.values())} nodes: {ops}.")
        if self.ok:
            return f"{head}\n  all ops and attributes supported."
        return head + "\n" + "\n".join(f"  UNSUPPORTED {i}" for i in self.issues)


@functools.lru_cache(maxsize=1)
def load_table() -> dict[str, Any]:
    """The operator table: {"tensorrt_version", "opset_min", "opset_max", "source", "operators": {op: {...}}}."""
    text = resources.files("sranet.export").joinpath(TABLE_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def check_tensorrt_ops(onnx_path: str | os.PathLike | Any) -> TrtOpReport:
    """Check every node of an ONNX model (path or ModelProto) against TensorRT's ONNX parser table."""
    import onnx

    if isinstance(onnx_path, onnx.ModelProto):
        model, path = onnx_path, "<in memory>"
    else:
        path = os.fspath(onnx_path)
        if not os.path.isfile(path):
            raise ArtifactError("does not exist; expected an ONNX model.", path=path,
                                hint="Export one with `sranet export CHECKPOINT --out model.onnx`.")
        model = onnx.load(path)
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - types are then unknown for some tensors; the op check still runs
        pass

    table = load_table()
    ops = table["operators"]
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    report = TrtOpReport(path=path, tensorrt_version=table["tensorrt_version"], source=table["source"],
                         opset=opset, op_counts={})
    if not table["opset_min"] <= opset <= table["opset_max"]:
        report.issues.append(OpIssue("<model>", "opset", f"opset {opset} is outside the parser's range "
                                     f"[{table['opset_min']}, {table['opset_max']}]."))

    graph = model.graph
    constants = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = node
    types: dict[str, str] = {}
    for vi in [*graph.input, *graph.output, *graph.value_info]:
        if vi.type.HasField("tensor_type"):
            types[vi.name] = _ONNX_TYPES.get(vi.type.tensor_type.elem_type, f"onnx-type-{vi.type.tensor_type.elem_type}")
    for t in graph.initializer:
        types[t.name] = _ONNX_TYPES.get(t.data_type, f"onnx-type-{t.data_type}")
    ranks: dict[str, int] = {vi.name: len(vi.type.tensor_type.shape.dim)
                             for vi in [*graph.input, *graph.value_info] if vi.type.tensor_type.HasField("shape")}

    for node in graph.node:
        report.op_counts[node.op_type] = report.op_counts.get(node.op_type, 0) + 1
        name = node.name or (node.output[0] if node.output else "?")
        if node.domain not in ("", "ai.onnx"):
            report.issues.append(OpIssue(name, node.op_type, f"custom domain {node.domain!r} needs a TensorRT plugin."))
            continue
        entry = ops.get(node.op_type)
        if entry is None or not entry["supported"]:
            why = "not in the table" if entry is None else "marked unsupported (N) in the table"
            report.issues.append(OpIssue(name, node.op_type, f"operator {why}."))
            continue
        for problem in _check_types(node, entry, types) + _check_attributes(node, constants, ranks):
            report.issues.append(OpIssue(name, node.op_type, problem))
    return report


def _check_types(node, entry, types: dict[str, str]) -> list[str]:
    allowed = set(entry["types"])
    problems = []
    # the table's type column is about the data a node consumes (comparisons output BOOL); Cast also its output
    tensors = [*node.input, *(node.output if node.op_type in ("Cast", "CastLike") else [])]
    if node.op_type in _Q_OPS:
        tensors = list(node.input[:1])  # the data operand; scale and zero point follow it
    for tensor in tensors:
        t = types.get(tensor)
        if not tensor or t is None:
            continue
        if t in ("INT64", "INT32") and tensor in node.input[1:]:
            continue  # shape/axes/index operands (Reshape shape, Expand shape, ...) are not the data type
        if t in _QUANTIZED and node.op_type != "DequantizeLinear":
            problems.append(f"tensor {tensor!r} has quantized type {t} outside a Q/DQ pair; TensorRT reaches {t} only "
                            "through QuantizeLinear/DequantizeLinear.")
        elif t not in allowed and t != "UINT8":
            problems.append(f"tensor {tensor!r} has type {t}; the parser supports {', '.join(sorted(allowed))}.")
    return problems


def _attr(node, name: str, default=None):
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _is_constant(name: str, constants) -> bool:
    return name == "" or name in constants


def _check_attributes(node, constants, ranks: dict[str, int]) -> list[str]:
    op = node.op_type
    problems: list[str] = []
    if op in ("MaxPool", "AveragePool", "LpPool"):
        kernel = _attr(node, "kernel_shape", [])
        if len(kernel) not in (2, 3):
            problems.append(f"{len(kernel)}D pooling; only 2D or 3D is supported.")
        dil = _attr(node, "dilations", [])
        if dil and any(d != 1 for d in dil):
            problems.append(f"dilations={list(dil)}; must be empty or all ones.")
        if op == "MaxPool" and len(node.output) > 1 and node.output[1]:
            problems.append("uses the Indices output, which the parser does not support.")
    elif op in ("Conv", "ConvTranspose"):
        kernel = _attr(node, "kernel_shape", [])
        rank = len(kernel) or (ranks.get(node.input[0], 0) - 2)
        if rank not in (1, 2, 3):
            problems.append(f"{rank}D convolution; TensorRT convolves 1D (as 2D), 2D or 3D inputs.")
    elif op == "Resize":
        ctm = _attr(node, "coordinate_transformation_mode", b"half_pixel")
        mode = _attr(node, "mode", b"nearest")
        nearest = _attr(node, "nearest_mode", b"round_prefer_floor")
        ctm, mode, nearest = (v.decode() if isinstance(v, bytes) else v for v in (ctm, mode, nearest))
        if ctm not in ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"):
            problems.append(f"coordinate_transformation_mode={ctm!r} is not supported.")
        if mode not in ("nearest", "linear"):
            problems.append(f"mode={mode!r} is not supported (nearest or linear only).")
        if mode == "nearest" and nearest not in ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil"):
            problems.append(f"nearest_mode={nearest!r} is not supported.")
        if _attr(node, "antialias", 0):
            problems.append("antialias=1 is not supported.")
        policy = _attr(node, "keep_aspect_ratio_policy", b"stretch")
        if (policy.decode() if isinstance(policy, bytes) else policy) != "stretch":
            problems.append("keep_aspect_ratio_policy must be 'stretch'.")
    elif op.startswith("Reduce") or op in ("Squeeze", "Unsqueeze"):
        if len(node.input) > 1 and not _is_constant(node.input[1], constants):
            problems.append(f"axes come from the runtime tensor {node.input[1]!r}; they must be a constant.")
    elif op in ("QuantizeLinear", "DequantizeLinear"):
        if len(node.input) > 2 and node.input[2]:
            zp = constants.get(node.input[2])
            if zp is None:
                problems.append("zero point is not a constant; it must be a constant 0.")
            elif hasattr(zp, "dims"):
                import onnx.numpy_helper

                if onnx.numpy_helper.to_array(zp).any():
                    problems.append("zero point is not 0; TensorRT needs symmetric quantization.")
    elif op == "TopK":
        if _attr(node, "sorted", 1) != 1:
            problems.append("sorted=0 is not supported.")
    elif op == "Dropout":
        if len(node.input) > 2 and node.input[2] and not _is_constant(node.input[2], constants):
            problems.append("is_training must be a constant False.")
    return problems
