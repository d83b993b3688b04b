"""Every ONNX variant `sranet export` writes, built for real by TensorRT-RTX (no GPU needed): the build matrix of
``benchmarks/trt_rtx_builds.py`` and of the tests.

``write_variants`` makes the graphs with the exporter's own functions (``to_onnx_proto``, ``convert_fp16``,
``quantize_int8``, ``spectral_copy``) and the sranet metadata, without the parity gate (the gate compares numbers
on a CPU; here the question is what the builder makes of each graph). ``build_variant`` parses and builds one of
them for given targets with ``compile_network`` and reports what TensorRT-RTX saw and compiled.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

# name -> (precision, spectral layers, preset) of the variants (the paper's spectral layer is conv2, the one
# choose_spectral_layers picks; for tiny it is forced, as the Python API allows)
VARIANTS = {
    "fp32": ("fp32", (), "tiny"),
    "fp16": ("fp16", (), "tiny"),
    "int8_qdq": ("int8", (), "tiny"),
    "spectral": ("fp32", (2,), "tiny"),
    "small_fp16": ("fp16", (), "small"),
    "paper_fp16": ("fp16", (), "paper"),
    "paper_fp32": ("fp32", (), "paper"),
    "paper_int8_qdq": ("int8", (), "paper"),
    "paper_spectral": ("fp32", (2,), "paper"),
}


def write_variants(names, folder: str | Path, *, seed: int = 0, graphs: dict | None = None) -> dict[str, Path]:
    """``folder/<name>.onnx`` for each VARIANTS entry in ``names``, from SRANets with random weights (torch seed
    ``seed``): one fp32 graph per (preset, spectral layers), from which the fp16 and int8 variants are made.
    ``graphs`` may hold fp32 ModelProtos already exported, by (preset, spectral layers), e.g. {("tiny", ()): proto}."""
    graphs = dict(graphs or {})
    return {name: _write_variant(name, Path(folder), seed, graphs) for name in names}


def _write_variant(name: str, folder: Path, seed: int, graphs: dict) -> Path:
    import onnx

    from sranet.config import ModelConfig, PreprocessConfig
    from sranet.export.onnx import DEFAULT_OPSET, EXPORTER
    from sranet.export.precision import convert_fp16, quantize_int8
    from sranet.runtime.artifact import ArtifactInfo

    precision, layers, preset = VARIANTS[name]
    cfg = ModelConfig.preset(preset)
    key = (preset, layers)
    if key not in graphs:
        graphs[key] = _fp32_graph(cfg, layers, seed)
    proto = graphs[key]
    if precision == "fp16":
        proto = convert_fp16(proto)
    elif precision == "int8":
        from sranet.export.onnx import quiet

        rng = np.random.default_rng(seed)
        calibration = [rng.standard_normal((cfg.input_size,) * 3).astype(np.float32) for _ in range(4)]
        with quiet():
            proto, _ = quantize_int8(proto, calibration)
    else:
        proto = type(proto).FromString(proto.SerializeToString())  # a copy: the cached graph stays unlabelled
    extra = {"sranet.exporter": EXPORTER, "sranet.opset": str(DEFAULT_OPSET)}
    if layers:
        extra.update({"sranet.conv_impl": "spectral", "sranet.spectral_layers": ",".join(map(str, layers))})
    info = ArtifactInfo(cfg, PreprocessConfig.for_model(cfg), 0.5, precision=precision, extra=extra)
    onnx.helper.set_model_props(proto, info.to_metadata())
    path = folder / f"{name}.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    return path


def _fp32_graph(cfg, layers: tuple[int, ...], seed: int):
    """The exporter's checked fp32 graph of an SRANet(cfg) with random weights, Conv3d ``layers`` spectral."""
    import torch

    from sranet.export.onnx import check_graph, quiet, to_onnx_proto
    from sranet.model.sranet import SRANet

    torch.manual_seed(seed)
    model = SRANet(cfg).eval()
    if layers:
        from sranet.model.spectral import spectral_copy

        model = spectral_copy(model, layers)
    with quiet():
        proto = to_onnx_proto(model)
    check_graph(proto)
    return proto


def build_variant(onnx_path: str | Path, precision: str, targets: list[str] | None, *, profile: str = "1:2:4"):
    """Parse and build ``onnx_path`` with TensorRT-RTX for ``targets`` (None: the default set). Returns
    (CompiledPlan, summary dict: targets, plan bytes, build seconds, IO, layer kinds, convolution data types)."""
    from sranet.export.tensorrt import EngineOptions, compile_network

    options = EngineOptions.from_cli(precision, profile=profile, flavour="tensorrt-rtx",
                                     compute_capabilities=targets, verbose=True)
    t0 = time.perf_counter()
    compiled = compile_network(onnx_path, options, echo=False)
    total_s = time.perf_counter() - t0
    kinds: dict[str, int] = {}
    for layer in compiled.engine_layers:
        kinds[layer["kind"]] = kinds.get(layer["kind"], 0) + 1
    network_types: dict[str, int] = {}
    for layer in compiled.layers:
        network_types[layer["type"]] = network_types.get(layer["type"], 0) + 1
    convs = [layer for layer in compiled.engine_layers if layer["kind"] == "correlation"]
    summary: dict[str, Any] = {
        "targets": compiled.targets, "plan_bytes": len(compiled.plan), "build_s": round(compiled.seconds, 3),
        "parse_and_build_s": round(total_s, 3), "io": compiled.io, "network_layers": len(compiled.layers),
        "network_layer_types": dict(sorted(network_types.items())), "engine_layers": len(compiled.engine_layers),
        "engine_layer_kinds": dict(sorted(kinds.items())),
        "convolutions": [{"onnx": layer["onnx_layers"][0] if layer["onnx_layers"] else layer["name"],
                          "inputs": layer.get("inputs", []), "weights": (layer.get("constants") or [None])[0],
                          "outputs": layer.get("outputs", [])} for layer in convs],
    }
    return compiled, summary


__all__ = ["VARIANTS", "build_variant", "write_variants"]
