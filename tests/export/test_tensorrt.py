"""TensorRT engine builder: option validation, ONNX inspection and the TensorRT 10/11/TensorRT-RTX dispatch run on
CPU; the real TensorRT build is marked `trt` and skips where tensorrt is not importable (never mocked). The real
TensorRT-RTX builds, which need no GPU, are in test_tensorrt_rtx.py."""

from __future__ import annotations

import importlib.util
import json

import onnx
import pytest

from sranet.errors import ArtifactError, DependencyMissingError, InputError
from sranet.export.tensorrt import EngineOptions, inspect_onnx, parse_profile, plan_build, summarize_layers
from tests.helpers import small_graph_onnx

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


# -- options ------------------------------------------------------------------------------------------------------
def test_from_cli_accepts_a_full_set_of_options(tmp_path):
    opts = EngineOptions.from_cli("fp16", profile="2:4:16", workspace_gib=1.5, timing_cache=tmp_path / "sranet.cache",
                                  version_compatible=True, hardware_compatibility="ampere+", verbose=True)
    assert (opts.batch_min, opts.batch_opt, opts.batch_max) == (2, 4, 16)
    assert opts.workspace_bytes == int(1.5 * 2**30)
    assert opts.profile_shapes(128) == [[2, 1, 128, 128, 128], [4, 1, 128, 128, 128], [16, 1, 128, 128, 128]]
    assert EngineOptions.from_cli("fp32").hardware_compatibility == "none"
    assert parse_profile("8") == (8, 8, 8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "fp61"}, r"--precision='fp61' is not one of .* Did you mean 'fp16'\?"),
        ({"precision": "fp16", "profile": "4:2:8"}, r"1 <= MIN <= OPT <= MAX"),
        ({"precision": "fp16", "profile": "0:1:8"}, r"1 <= MIN <= OPT <= MAX"),
        ({"precision": "fp16", "profile": "1-4-8"}, r"is not MIN:OPT:MAX"),
        ({"precision": "fp16", "profile": "1:1:4096"}, r"MAX=4096 is above"),
        ({"precision": "fp16", "workspace_gib": 0}, r"--workspace-gib=0 must be a number > 0"),
        ({"precision": "fp16", "workspace_gib": float("nan")}, r"--workspace-gib=nan"),
        ({"precision": "fp16", "hardware_compatibility": "ampere"}, r"Did you mean 'ampere\+'\?"),
        ({"precision": "fp16", "dla_core": -1}, r"--dla-core=-1 must be an integer >= 0"),
        ({"precision": "fp32", "dla_core": 0}, r"DLA does not run fp32"),
        ({"precision": "fp16", "dla_core": 0, "hardware_compatibility": "ampere+"}, r"cannot be combined"),
        ({"precision": "fp16", "timing_cache": "/no/such/folder/t.cache"}, r"folder /no/such/folder does not exist"),
    ],
)
def test_from_cli_refuses_bad_values(kwargs, message):
    with pytest.raises(InputError, match=message):
        EngineOptions.from_cli(**kwargs)


# -- the ONNX -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["fp32", "fp16", "int8"])
def test_inspect_onnx_reads_precision_from_the_graph(tmp_path, variant):
    facts = inspect_onnx(small_graph_onnx(tmp_path / f"m.{variant}.onnx", variant=variant))
    assert facts.precision == variant
    assert facts.has_qdq == (variant == "int8")
    assert facts.inputs == ("ct",) and set(facts.outputs) == {"prob", "attention"}
    assert facts.batch_dim == "batch"
    assert facts.info.model.input_size == 48


def test_inspect_onnx_refuses_foreign_graphs(tmp_path):
    with pytest.raises(ArtifactError, match="expected input 'ct' and outputs"):
        inspect_onnx(small_graph_onnx(tmp_path / "x.onnx", outputs=("p", "attention")))
    bare = onnx.load(str(small_graph_onnx(tmp_path / "y.onnx")))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(ArtifactError, match="has no sranet metadata"):
        inspect_onnx(tmp_path / "bare.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00junk")
    with pytest.raises(ArtifactError, match="not a readable ONNX"):
        inspect_onnx(tmp_path / "junk.onnx")


# -- TensorRT 10 / 11 dispatch -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("version", "precision", "onnx_precision", "path", "network_flags", "builder_flags"),
    [
        ("10.7.0", "fp32", "fp32", "trt10-fp32", [], []),
        ("10.7.0", "fp16", "fp32", "trt10-fp16-builder-flag", [], ["FP16"]),
        ("10.13.2", "fp16", "fp16", "trt10-strongly-typed-fp16-onnx", ["STRONGLY_TYPED"], []),
        ("10.7.0", "int8", "int8", "trt10-int8-qdq-builder-flags", [], ["INT8", "FP16"]),
        ("11.0.0", "fp32", "fp32", "trt11-strongly-typed-fp32-onnx", ["STRONGLY_TYPED"], []),
        ("11.1.0", "fp16", "fp16", "trt11-strongly-typed-fp16-onnx", ["STRONGLY_TYPED"], []),
        ("11.1.0", "int8", "int8", "trt11-strongly-typed-qdq-onnx", ["STRONGLY_TYPED"], []),
    ],
)
def test_plan_build_dispatches_on_the_tensorrt_line(version, precision, onnx_precision, path, network_flags, builder_flags):
    plan = plan_build(version, EngineOptions.from_cli(precision, profile="1:4:16"), onnx_precision)
    assert plan.path == path
    assert plan.network_flags == network_flags
    assert plan.builder_flags == builder_flags
    assert plan.profiling_verbosity == "LAYER_NAMES_ONLY"
    assert any("batch 1/4/16" in d for d in plan.decisions)


def test_tensorrt_11_has_no_fp16_flag_so_it_needs_the_fp16_onnx():
    with pytest.raises(InputError, match=r"strongly typed networks only.*model.fp16.onnx"):
        plan_build("11.0.1", EngineOptions.from_cli("fp16"), "fp32")


@pytest.mark.parametrize(
    ("precision", "onnx_precision", "message"),
    [("int8", "fp32", "--int8 needs the QDQ"), ("fp16", "int8", "quantized .* but --precision is fp16"),
     ("fp32", "fp16", "fp16 variant but --precision is fp32")],
)
def test_precision_and_onnx_must_agree(precision, onnx_precision, message):
    for version in ("10.7.0", "11.0.0"):
        with pytest.raises(InputError, match=message):
            plan_build(version, EngineOptions.from_cli(precision), onnx_precision)


def test_old_tensorrt_is_refused():
    with pytest.raises(DependencyMissingError, match="TensorRT 8.6.1 is too old"):
        plan_build("8.6.1", EngineOptions.from_cli("fp16"), "fp32")


def test_compatibility_dla_and_verbose_become_config_decisions():
    plan = plan_build("10.3.0", EngineOptions.from_cli("fp16", version_compatible=True, dla_core=1, verbose=True), "fp32")
    assert plan.builder_flags == ["FP16", "VERSION_COMPATIBLE", "GPU_FALLBACK"]
    assert plan.dla_core == 1 and plan.profiling_verbosity == "DETAILED"
    assert any("fall back to the GPU" in d for d in plan.decisions)
    assert any("engine_host_code_allowed" in d for d in plan.decisions)
    hw = plan_build("10.9.0", EngineOptions.from_cli("fp32", hardware_compatibility="same-compute-capability"), "fp32")
    assert hw.hardware_compatibility_level == "SAME_COMPUTE_CAPABILITY"


@pytest.mark.parametrize("version", ["10.3.0", "10.8.1"])
def test_same_compute_capability_needs_tensorrt_10_9(version):
    with pytest.raises(DependencyMissingError, match=rf"needs TensorRT 10\.9 or later.*this is TensorRT {version}"):
        plan_build(version, EngineOptions.from_cli("fp32", hardware_compatibility="same-compute-capability"), "fp32")
    assert plan_build("11.1.0", EngineOptions.from_cli("fp32", hardware_compatibility="same-compute-capability"),
                      "fp32").hardware_compatibility_level == "SAME_COMPUTE_CAPABILITY"


@pytest.mark.parametrize(("version", "flavour"), [("10.3.0", "tensorrt"), ("11.1.0", "tensorrt"),
                                                 ("1.7.1.116", "tensorrt-rtx")])
def test_fp32_plans_are_built_without_tf32(version, flavour):
    """An fp32 plan means IEEE fp32: TF32 (on by default in TensorRT) is cleared; reduced precisions keep it."""
    plan = plan_build(version, EngineOptions.from_cli("fp32", flavour=flavour), "fp32")
    assert plan.cleared_flags == ["TF32"] and any("TF32 off" in d for d in plan.decisions)
    assert plan_build(version, EngineOptions.from_cli("fp16", flavour=flavour), "fp16").cleared_flags == []


# -- TensorRT-RTX options (no TensorRT-RTX needed) ----------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("8.9", ("8.9",)), ("sm89", ("8.9",)), ("SM_120", ("12.0",)), ("120,86", ("8.6", "12.0")),
    (["7.5", "sm121", "7.5"], ("7.5", "12.1")), ("8.6 8.9", ("8.6", "8.9")), (None, ()),
])
def test_compute_capabilities_are_normalised(text, expected):
    from sranet.export.engine_options import parse_compute_capabilities

    assert parse_compute_capabilities(text) == expected


def test_rtx_options_record_flavour_and_targets():
    opts = EngineOptions.from_cli("fp16", profile="1:2:4", flavour="tensorrt-rtx", compute_capabilities="sm89,8.6")
    assert opts.flavour == "tensorrt-rtx" and opts.compute_capabilities == ("8.6", "8.9")
    assert opts.to_dict()["compute_capabilities"] == ["8.6", "8.9"]
    plan = plan_build("1.7.1.116", opts, "fp16")
    assert plan.path == "trtrtx-strongly-typed-fp16-onnx" and plan.flavour == "tensorrt-rtx"
    assert plan.builder_flags == [] and plan.network_flags == [] and plan.compute_capabilities == ["8.6", "8.9"]
    default = plan_build("1.7.1.116", EngineOptions.from_cli("fp32", flavour="tensorrt-rtx"), "fp32")
    assert any("every target the installed version offers except 7.5" in d for d in default.decisions)
    qdq = plan_build("1.7.1.116", EngineOptions.from_cli("int8", flavour="tensorrt-rtx"), "int8")
    assert qdq.path == "trtrtx-strongly-typed-qdq-onnx"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"compute_capabilities": "8.9"}, r"--compute-capability chooses TensorRT-RTX targets"),
    ({"flavour": "tensorrt-rtx", "compute_capabilities": "8.9.1"}, r"'8\.9\.1' is not a compute capability"),
    ({"flavour": "tensorrt-rtx", "compute_capabilities": "ampere"}, r"'ampere' is not a compute capability"),
    ({"flavour": "tensorrt-rtx", "timing_cache": "t.cache"}, r"--timing-cache does not apply to TensorRT-RTX"),
    ({"flavour": "tensorrt-rtx", "version_compatible": True}, r"run only with the TensorRT-RTX release"),
    ({"flavour": "tensorrt-rtx", "hardware_compatibility": "ampere+"}, r"by --compute-capability"),
    ({"flavour": "tensorrt-rtx", "precision": "int8", "dla_core": 0}, r"--dla-core does not apply to TensorRT-RTX"),
    ({"flavour": "tensorrt_rtx"}, r"--engine-flavour='tensorrt_rtx' is not one of .* Did you mean 'tensorrt-rtx'\?"),
])
def test_rtx_options_refuse_what_tensorrt_rtx_does_not_have(kwargs, message):
    kwargs = {"precision": "fp16", **kwargs}
    with pytest.raises(InputError, match=message):
        EngineOptions.from_cli(**kwargs)


def test_rtx_fp16_needs_the_fp16_onnx():
    with pytest.raises(InputError, match=r"TensorRT-RTX 1\.7\.1 builds strongly typed networks only.*--engine-flavour "
                                         r"tensorrt-rtx"):
        plan_build("1.7.1", EngineOptions.from_cli("fp16", flavour="tensorrt-rtx"), "fp32")


def test_layer_report_counts_dla_and_gpu_layers():
    detailed = {"Layers": [
        {"Name": "{ForeignNode[/patch_cnn/conv0...]}", "LayerType": "DLA", "TacticName": ""},
        {"Name": "/patch_cnn/features.0/Conv", "LayerType": "CaskConvolution", "TacticName": "sm90_xmma_fprop"},
        {"Name": "/attention/K/MatMul", "LayerType": "CaskGemm", "TacticName": "sm90_gemm"},
        {"Name": "/head/Sigmoid", "LayerType": "PointWiseV2", "TacticName": "0x1"},
    ], "I/O Tensors": ["ct", "prob", "attention"]}
    summary = summarize_layers(json.dumps(detailed))
    assert (summary["layers"], summary["dla_layers"], summary["gpu_layers"]) == (4, 1, 3)
    assert summary["by_type"]["CaskConvolution"] == 1
    assert summary["io_tensors"] == ["ct", "prob", "attention"]
    names_only = summarize_layers({"Layers": ["conv0", "conv1", "sigmoid"], "Bindings": ["ct", "prob", "attention"]})
    assert (names_only["layers"], names_only["dla_layers"]) == (3, 0)


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed here; the missing-dependency message cannot be shown")
def test_build_without_tensorrt_names_the_install(tmp_path):
    from sranet.export.tensorrt import build_engine

    with pytest.raises(DependencyMissingError, match=r"tensorrt package is needed.*sranet\[gpu-cu12\]"):
        build_engine(small_graph_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", EngineOptions.from_cli("fp32"))


@pytest.mark.trt
@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRT, reason="needs TensorRT (`import tensorrt` fails here) and an NVIDIA GPU")
def test_real_build_writes_plan_sidecar_cache_and_layer_report(tmp_path):
    import tensorrt as trt

    from sranet.export.tensorrt import build_engine
    from sranet.runtime.devices import device_env
    from sranet.runtime.sidecar import check_sidecar, sidecar_path

    onnx_path = small_graph_onnx(tmp_path / "m.onnx")
    opts = EngineOptions.from_cli("fp32", profile="1:2:4", workspace_gib=1, timing_cache=tmp_path / "t.cache", verbose=True)
    sidecar = build_engine(onnx_path, tmp_path / "m.engine", opts)
    assert (tmp_path / "t.cache").stat().st_size > 0
    assert sidecar_path(tmp_path / "m.engine").is_file()
    assert sidecar["build"]["layer_report"]["layers"] >= 1
    check_sidecar(tmp_path / "m.engine", device_env(trt.__version__))
    assert sidecar["flavour"] == "tensorrt" and sidecar["build"]["cleared_flags"] == ["TF32"]
    again = build_engine(onnx_path, tmp_path / "m2.engine", opts)
    assert again["build"]["timing_cache"]["reused"] is True


# enum members as NVIDIA documents them (TensorRT 10 Python API reference; TensorRT 10.x -> 11.x Python migration
# reference, "Removed Python APIs"): build_engine looks every name of a BuildPlan up with getattr on these enums
TRT10_BUILDER_FLAGS = {"FP16", "BF16", "INT8", "FP8", "INT4", "FP4", "GPU_FALLBACK", "REFIT", "DEBUG", "TF32",
                       "DISABLE_TIMING_CACHE", "SPARSE_WEIGHTS", "SAFETY_SCOPE", "OBEY_PRECISION_CONSTRAINTS",
                       "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO", "REJECT_EMPTY_ALGORITHMS", "VERSION_COMPATIBLE",
                       "EXCLUDE_LEAN_RUNTIME", "ERROR_ON_TIMING_CACHE_MISS", "STRIP_PLAN", "WEIGHT_STREAMING"}
TRT11_REMOVED_BUILDER_FLAGS = {"FP16", "INT8", "FP8", "BF16", "INT4", "FP4", "OBEY_PRECISION_CONSTRAINTS",
                               "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO"}
NETWORK_FLAGS = {"EXPLICIT_BATCH", "STRONGLY_TYPED"}
HARDWARE_LEVELS = {"NONE", "AMPERE_PLUS", "SAME_COMPUTE_CAPABILITY"}
PROFILING_VERBOSITY = {"LAYER_NAMES_ONLY", "NONE", "DETAILED"}


@pytest.mark.parametrize("version", ["10.0.1", "10.7.0", "11.0.0", "11.4.1"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("extra", [{}, {"version_compatible": True, "verbose": True}, {"dla_core": 0},
                                   {"hardware_compatibility": "ampere+"}])
def test_plans_only_name_documented_tensorrt_enum_members(version, precision, extra):
    if precision == "fp32" and "dla_core" in extra:
        pytest.skip("the DLA needs fp16 or int8 (refused by from_cli)")
    plan = plan_build(version, EngineOptions.from_cli(precision, **extra), precision)
    assert set(plan.builder_flags) <= TRT10_BUILDER_FLAGS
    if plan.trt_major >= 11:
        assert not set(plan.builder_flags) & TRT11_REMOVED_BUILDER_FLAGS
    assert set(plan.network_flags) <= NETWORK_FLAGS
    assert plan.hardware_compatibility_level in HARDWARE_LEVELS | {None}
    assert plan.profiling_verbosity in PROFILING_VERBOSITY


def test_build_refuses_a_spectral_graph_before_tensorrt(tmp_path):
    """A --conv-impl spectral ONNX (metadata sranet.spectral_layers) is refused whether or not TensorRT is here."""
    from sranet.errors import InputError
    from sranet.export.tensorrt import build_engine

    path = small_graph_onnx(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                        "sranet.conv_impl": "spectral", "sranet.spectral_layers": "2"})
    onnx.save(model, str(path))
    with pytest.raises(InputError, match=r"spectral export \(Conv3d layers \[2\]") as info:
        build_engine(path, tmp_path / "m.engine", EngineOptions.from_cli("fp32"))
    assert "without --conv-impl spectral" in str(info.value) and not (tmp_path / "m.engine").exists()
