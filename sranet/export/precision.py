"""Reduced-precision variants of the exported fp32 ONNX: fp16 and int8 QDQ. Both keep float32 ``ct`` in and
float32 ``prob``/``attention`` out, so every runtime feeds and reads them the same way.

fp16   every float initializer and activation becomes float16; a Cast after the input and before each output
       keeps the graph's interface float32. This is the form TensorRT's strongly typed networks (TensorRT 11, and
       10 with STRONGLY_TYPED) build as fp16 without any builder flag.
int8   static QDQ quantisation with ONNX Runtime's quantiser: QuantizeLinear/DequantizeLinear pairs around the
       Conv layers (the patch CNN, where nearly all the arithmetic is), int8 weights per output channel, int8
       activations per tensor, symmetric (zero point 0, which TensorRT requires), biases left in float (TensorRT's
       DequantizeLinear takes no int32), scales calibrated on real preprocessed volumes.

On a CPU, ONNX Runtime runs both variants but gains nothing from them: it has no fp16 kernels for most of this
graph and inserts Casts to run those nodes in float32, and its QDQ Conv3d is dequantise -> float Conv -> quantise.
The parity report records what ORT did (``casts_inserted_by_ort``, op counts after optimisation, ms per case).
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sranet.config import PreprocessConfig
from sranet.errors import ArtifactError, InputError, ManifestError, check_choice

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
INT8_OP_TYPES = ("Conv",)


def convert_fp16(model):
    """fp32 ModelProto -> fp16 ModelProto with float32 graph inputs/outputs (Casts at the boundary)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    fp16 = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    _toposort(fp16.graph)
    onnx.checker.check_model(fp16)
    return fp16


def _toposort(graph) -> None:
    """Reorder graph.node topologically in place (the fp16 converter appends its boundary Casts at the end)."""
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:
            raise ArtifactError("the fp16 graph has a cycle or an undefined input; it cannot be sorted.")
        for n in ready:
            ordered.append(n)
            known.update(n.output)
        pending = [n for n in pending if n not in ready]
    del graph.node[:]
    graph.node.extend(ordered)


def _reader(volumes: Iterable[np.ndarray]):
    """An onnxruntime CalibrationDataReader over (S, S, S) or (1, 1, S, S, S) float32 arrays (made here, because
    onnxruntime.quantization is imported only when int8 is asked for)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it: Iterator[np.ndarray] = iter(volumes)
            self.count = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            if x is None:
                return None
            self.count += 1
            return {"ct": np.ascontiguousarray(x, dtype=np.float32).reshape(1, 1, *x.shape[-3:])}

    return Reader()


def quantize_int8(model, calibration: Iterable[np.ndarray], *, method: str = "minmax",
                  per_channel: bool = True) -> tuple[Any, dict[str, Any]]:
    """fp32 ModelProto -> (int8 QDQ ModelProto, calibration info). ``calibration`` yields (S, S, S) or
    (1, 1, S, S, S) float32 normalised volumes (the network input). At least one is needed."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    check_choice("calibration method", method, CALIBRATION_METHODS, InputError)
    volumes = iter(calibration)
    first = next(volumes, None)
    if first is None:
        raise InputError("int8 calibration got no volumes; at least one is needed (16 or more recommended).")
    reader = _reader(itertools.chain([first], volumes))
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp, "fp32.onnx"), Path(tmp, "int8.onnx")
        onnx.save(model, src)
        quantize_static(
            str(src), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, op_types_to_quantize=list(INT8_OP_TYPES),
            calibrate_method=methods[method],
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
        )
        q = onnx.load(dst)
    onnx.checker.check_model(q)
    info = {"calibration_volumes": reader.count, "method": method, "per_channel_weights": per_channel,
            "quantized_op_types": list(INT8_OP_TYPES), "activations": "int8 per tensor, symmetric",
            "format": "QDQ"}
    return q, info


def calibration_volumes(manifest: str | os.PathLike, preprocess: PreprocessConfig, *,
                        limit: int = 32) -> Iterator[np.ndarray]:
    """Yield up to ``limit`` network inputs, (S, S, S) float32, from a manifest's cases, read and preprocessed
    with the runtime's own I/O and preprocessing (the artifact's PreprocessConfig). Training and validation
    cases are used when the manifest has a split column; test cases never calibrate."""
    from sranet.runtime.io import load_volume
    from sranet.runtime.manifest import read_manifest
    from sranet.runtime.preprocess import preprocess as run_preprocess
    from sranet.runtime.roi import parse_roi

    path = Path(manifest)
    if not path.is_file():
        raise ManifestError("calibration manifest does not exist.", path=path,
                            hint="Pass a manifest CSV (case_id, path, ...) of typical CT crops with --calib.")
    cases = read_manifest(path)
    fit = [c for c in cases if getattr(c, "split", None) in ("train", "val")]
    chosen = (fit or [c for c in cases if getattr(c, "split", None) != "test"])[:limit]
    if not chosen:
        raise ManifestError("has no train/val (or unsplit) cases to calibrate int8 on.", path=path)
    for case in chosen:
        roi = parse_roi(case.roi, case.side) if case.roi else None
        volume = load_volume(case.path, roi=roi)
        yield np.asarray(run_preprocess(volume, preprocess, roi=roi).input, dtype=np.float32)
