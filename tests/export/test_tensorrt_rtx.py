"""Real TensorRT-RTX builds, in the default suite: TensorRT-RTX parses and builds engines ahead of time without a GPU
(`tensorrt-rtx-cu12`, installed by the dev extra on x86-64 Linux). Every variant `sranet export` writes (fp32, fp16,
int8 QDQ, spectral; tiny and small presets; one paper-size fp16 build) is built for a real target, and what the
builder parsed (IO names, shapes, types) and compiled (the kinds and data types of its layers) is checked. Nothing is
mocked; the plans are real (running them needs a GPU: tests/runtime/test_tensorrt_backend.py)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from sranet.errors import ArtifactError, InputError

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tensorrt_rtx") is None,
                                reason="tensorrt-rtx-cu12 is not installed (the dev extra installs it on x86-64 Linux)")


# the variants built here (benchmarks/trt_rtx_builds.py builds the small preset too)
NAMES = ("fp32", "fp16", "int8_qdq", "spectral", "paper_fp16")


@pytest.fixture(scope="module")
def variants(tmp_path_factory, tiny_artifacts):
    """name -> ONNX path of the NAMES variants (sranet.bench.trt_rtx.write_variants: the exporter's functions); the
    tiny fp32 graph is the session's tiny ONNX (same exporter), so two graphs are exported here: spectral and paper."""
    import onnx

    from sranet.bench.trt_rtx import write_variants

    tiny = onnx.load(str(tiny_artifacts[0]))
    return write_variants(NAMES, tmp_path_factory.mktemp("variants"), graphs={("tiny", ()): tiny})


# what TensorRT-RTX compiles each variant's Conv3d layers into, on 8.9: (input type, weight type) per convolution
CONVOLUTIONS = {
    "fp32": [("Float", "Float")] * 2,
    "fp16": [("Half", "Half")] * 2,  # half-precision convolutions
    "int8_qdq": [("Int8", "Int8")] * 2,  # DequantizeLinear -> Conv fused into int8 convolutions (float output)
    "spectral": [("Float", "Float")],  # conv1 stays a convolution; conv2 is DFT matrix products (gemm)
    "paper_fp16": [("Half", "Half")] * 2,
}


@pytest.mark.parametrize("name", list(CONVOLUTIONS))
def test_every_export_variant_is_built_by_tensorrt_rtx(variants, name):
    from sranet.bench.trt_rtx import VARIANTS, build_variant
    from sranet.config import ModelConfig

    precision, layers, preset = VARIANTS[name]
    compiled, summary = build_variant(variants[name], precision, ["8.9"])
    S, N = ModelConfig.preset(preset).input_size, ModelConfig.preset(preset).num_patches
    assert summary["io"] == {"ct": {"mode": "input", "dtype": "FLOAT", "shape": [-1, 1, S, S, S]},
                             "prob": {"mode": "output", "dtype": "FLOAT", "shape": [-1]},
                             "attention": {"mode": "output", "dtype": "FLOAT", "shape": [-1, N]}}
    assert summary["targets"] == ["8.9"] and summary["plan_bytes"] > 100_000
    assert [(c["inputs"][0], c["weights"]) for c in summary["convolutions"]] == CONVOLUTIONS[name]
    convs = summary["network_layer_types"].get("CONVOLUTION", 0)
    assert convs == (1 if layers else 2)  # the parsed network: Conv nodes become convolution layers
    if layers:
        assert summary["engine_layer_kinds"]["gemm"] > 3  # the spectral layer's DFTs and channel products
    if precision == "int8":
        assert summary["network_layer_types"]["QUANTIZE"] >= 2 and summary["network_layer_types"]["DEQUANTIZE"] >= 2
    if name == "paper_fp16":
        assert 4_000_000 < summary["plan_bytes"] < 20_000_000  # 8.0 MB here for 11.7 M fp16 weights


@pytest.mark.integration
def test_default_targets_are_every_target_the_precision_builds_for(variants):
    import tensorrt_rtx

    from sranet.bench.trt_rtx import build_variant
    from sranet.export.tensorrt import offered_targets

    offered = offered_targets(tensorrt_rtx)
    assert {"7.5", "8.6", "8.9", "12.0"} <= set(offered) and "9.0" not in offered
    _, fp16 = build_variant(variants["fp16"], "fp16", None)
    _, fp32 = build_variant(variants["fp32"], "fp32", None)
    assert fp16["targets"] == offered
    assert fp32["targets"] == [cc for cc in offered if cc != "7.5"]


@pytest.mark.integration
@pytest.mark.parametrize(("name", "precision"), [("fp32", "fp32"), ("int8_qdq", "int8")])
def test_turing_without_fp16_is_the_builders_own_clear_error(variants, name, precision):
    from sranet.bench.trt_rtx import build_variant

    with pytest.raises(ArtifactError, match=r"returned no engine: .*Turing \(SM75\): FP32 3D convolution is not "
                                            r"supported") as info:
        build_variant(variants[name], precision, ["7.5"])
    assert "add --fp16, or leave 7.5 out of --compute-capability" in str(info.value)


@pytest.mark.integration
def test_a_target_the_version_does_not_have_is_refused(variants):
    from sranet.bench.trt_rtx import build_variant

    with pytest.raises(InputError, match=r"--compute-capability 9\.0: TensorRT-RTX .* builds for 7\.5, 8\.0, .*"
                                         r"--engine-flavour tensorrt"):
        build_variant(variants["fp16"], "fp16", ["9.0"])


def test_a_parser_error_names_the_onnx_node(tmp_path):
    """A node TensorRT-RTX's parser has no importer for becomes the export's error naming that node and its op."""
    import onnx
    from onnx import helper

    from sranet.export.tensorrt import EngineOptions, compile_network
    from tests.helpers import small_graph_onnx

    model = onnx.load(str(small_graph_onnx(tmp_path / "m.onnx")))
    head = next(n for n in model.graph.node if n.op_type == "Sigmoid")
    head.CopyFrom(helper.make_node("ScaledSigmoid", list(head.input), list(head.output), name="custom_head",
                                   domain="com.example"))
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    onnx.save(model, str(tmp_path / "bad.onnx"))
    with pytest.raises(ArtifactError, match=r"ONNX parser rejected the model:\n  node custom_head \(ScaledSigmoid\): ") \
            as info:
        compile_network(tmp_path / "bad.onnx", EngineOptions.from_cli("fp32", flavour="tensorrt-rtx",
                                                                      compute_capabilities="8.9"), echo=False)
    assert str(tmp_path / "bad.onnx") in str(info.value)


@pytest.mark.integration
def test_the_static_operator_table_agrees_with_the_real_parser(variants):
    """The static table (TensorRT 10.15's, kept for TensorRT 10.3 on Jetson where no parser runs at export) against
    TensorRT-RTX's own parser: every op our exports use is supported by both, and the whole table differs in one op."""
    import onnx
    import tensorrt_rtx as trt

    from sranet.export.trt_ops import check_tensorrt_ops, load_table

    table = load_table()["operators"]
    logger = trt.Logger(trt.Logger.ERROR)
    parser = trt.OnnxParser(trt.Builder(logger).create_network(0), logger)
    differs = sorted(op for op, entry in table.items() if entry["supported"] != parser.supports_operator(op))
    assert differs == ["DeformConv"], differs  # the one difference seen with TensorRT-RTX 1.7: the table says yes
    used = set()
    for name, path in variants.items():
        used |= {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}
        assert check_tensorrt_ops(path).ok, name
    assert all(table[op]["supported"] and parser.supports_operator(op) for op in used), sorted(used)


@pytest.mark.integration
def test_build_engine_writes_a_plan_whose_sidecar_records_flavour_targets_and_platform(variants, tmp_path):
    import platform

    from sranet.export.tensorrt import EngineOptions, build_engine
    from sranet.runtime.sidecar import read_sidecar, sidecar_path

    engine = tmp_path / "m.engine"
    sidecar = build_engine(variants["fp16"], engine, EngineOptions.from_cli(
        "fp16", profile="1:4:8", flavour="tensorrt-rtx", compute_capabilities="8.6,8.9", verbose=True))
    assert engine.stat().st_size == sidecar["plan"]["bytes"] and read_sidecar(engine) == json.loads(
        sidecar_path(engine).read_text())
    assert sidecar["flavour"] == "tensorrt-rtx" and sidecar["tensorrt"].startswith("1.")
    assert sidecar["targets"]["compute_capabilities"] == ["8.6", "8.9"] and "7.5" in sidecar["targets"]["offered"]
    assert sidecar["platform"]["machine"] == platform.machine() and sidecar["gpu"] == {"name": "",
                                                                                        "compute_capability": ""}
    assert sidecar["cuda_runtime"] == "12"  # from the tensorrt-rtx-cu12 wheel, not from CuPy
    assert sidecar["build"]["path"] == "trtrtx-strongly-typed-fp16-onnx"
    assert sidecar["profile"]["ct"] == [[b, 1, 48, 48, 48] for b in (1, 4, 8)]
    report = sidecar["build"]["layer_report"]
    assert report["source"] == "builder log" and report["convolution_input_types"] == ["Half"]
    layers = json.loads((tmp_path / report["file"]).read_text())
    assert layers["io"]["ct"]["dtype"] == "FLOAT" and len(layers["engine_layers"]) == report["layers"]


def test_sranet_export_builds_a_tensorrt_rtx_engine_and_its_triton_model(tmp_path, tiny_artifacts):
    from typer.testing import CliRunner

    from sranet.cli.main import app
    from tests.helpers import write_checkpoint

    checkpoint = write_checkpoint(tmp_path / "best.pt")
    out = tmp_path / "model.onnx"
    result = CliRunner().invoke(app, ["export", str(checkpoint), "--out", str(out), "--fp16", "--engine",
                                      "--engine-flavour", "tensorrt-rtx", "--compute-capability", "8.9",
                                      "--compute-capability", "sm120", "--profile", "1:2:4", "--parity-cases", "2",
                                      "--triton", str(tmp_path / "repo"), "--triton-backend", "python"])
    assert result.exit_code == 0, result.output
    assert "tensorrt-rtx 1." in result.output and "compute capabilities 8.9, 12.0" in result.output
    assert (tmp_path / "model.engine").is_file() and (tmp_path / "repo" / "sranet" / "1" / "model.plan").is_file()
    refused = CliRunner().invoke(app, ["export", str(checkpoint), "--out", str(tmp_path / "x.onnx"), "--engine",
                                       "--engine-flavour", "tensorrt-rtx", "--triton", str(tmp_path / "r2")])
    assert refused.exit_code == 1 and "--triton-backend python" in refused.output
    assert not (tmp_path / "x.onnx").exists()  # refused before the export


def test_a_dla_core_the_builder_does_not_have_is_refused_before_parsing(tmp_path):
    """The check runs against the real builder's ``num_DLA_cores`` (0 here), before anything is parsed. The options
    are made directly: ``EngineOptions.from_cli`` already refuses --dla-core with TensorRT-RTX."""
    from sranet.export.tensorrt import EngineOptions, compile_network
    from tests.helpers import small_graph_onnx

    options = EngineOptions(precision="fp16", dla_core=1, flavour="tensorrt-rtx", compute_capabilities=("8.9",))
    with pytest.raises(InputError, match=r"--dla-core 1: this machine has 0 DLA core\(s\)"):
        compile_network(small_graph_onnx(tmp_path / "m.onnx", variant="fp16"), options, echo=False)
