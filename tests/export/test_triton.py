"""Triton repositories: every generated config.pbtxt (ONNX Runtime, TensorRT, TensorRT-RTX through the Python
backend, Python backend on CPUs) is parsed with Triton's own ModelConfig schema (tritonclient's model_config_pb2 and
protobuf's text format), which rejects unknown fields and wrong types. The server round trips are in
test_triton_server.py (marker `triton`)."""

from __future__ import annotations

import importlib.util
import json

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from sranet.errors import ArtifactError, InputError
from sranet.export.triton import PYTHON_MODEL, write_triton_repo
from tests.helpers import RTX_BUILDER, small_graph_onnx, write_engine

HAS_TRT_RTX = importlib.util.find_spec("tensorrt_rtx") is not None


def parse_config(model_dir) -> mc.ModelConfig:
    return text_format.Parse((model_dir / "config.pbtxt").read_text(), mc.ModelConfig())


def check_io(cfg: mc.ModelConfig, *, python: bool, S: int = 48, N: int = 64, kind=mc.ModelInstanceGroup.KIND_GPU):
    (ct,) = cfg.input
    assert (ct.name, ct.data_type, list(ct.dims)) == ("ct", mc.TYPE_FP32, [1, S, S, S])
    outputs = {o.name: o for o in cfg.output}
    assert set(outputs) == {"prob", "attention"}
    assert list(outputs["prob"].dims) == [1]
    # the native backends' model answers prob as (B,): a per-sample scalar; the Python model answers (b, 1) itself
    assert outputs["prob"].HasField("reshape") is not python
    if not python:
        assert list(outputs["prob"].reshape.shape) == []
    assert list(outputs["attention"].dims) == [N]
    assert all(o.data_type == mc.TYPE_FP32 for o in outputs.values())
    (group,) = cfg.instance_group
    assert group.kind == kind and group.count == 1
    (warmup,) = cfg.model_warmup
    assert warmup.batch_size == 1 and warmup.inputs["ct"].zero_data and list(warmup.inputs["ct"].dims) == [1, S, S, S]
    params = {key: value.string_value for key, value in cfg.parameters.items()}
    assert json.loads(params["sranet.preprocess_config"])["output_size"] == S
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 100
    return params


def test_onnx_repository(tmp_path):
    model_dir = write_triton_repo(small_graph_onnx(tmp_path / "m.onnx"), tmp_path / "repo", max_batch=16)
    assert model_dir == tmp_path / "repo" / "sranet"
    assert (model_dir / "1" / "model.onnx").read_bytes() == (tmp_path / "m.onnx").read_bytes()
    cfg = parse_config(model_dir)
    assert (cfg.name, cfg.platform, cfg.backend, cfg.max_batch_size) == ("sranet", "onnxruntime_onnx", "", 16)
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8, 16]
    params = check_io(cfg, python=False)
    assert float(params["sranet.threshold"]) == 0.5
    assert "tritonserver --model-repository REPO" in (model_dir / "README.md").read_text()


def test_plan_repository_takes_its_batch_sizes_from_the_profile(tmp_path):
    engine = write_engine(tmp_path, profile="1:4:16")
    model_dir = write_triton_repo(engine, tmp_path / "repo", max_batch=8, model_name="avn_fp16")
    assert (model_dir / "1" / "model.plan").is_file() and (model_dir / "1" / "model.plan.json").is_file()
    cfg = parse_config(model_dir)
    assert (cfg.name, cfg.platform, cfg.max_batch_size) == ("avn_fp16", "tensorrt_plan", 8)
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    params = check_io(cfg, python=False)
    assert float(params["sranet.threshold"]) == 0.42 and params["sranet.precision"] == "fp16"
    assert "version-compatible" not in (model_dir / "README.md").read_text()


def test_a_version_compatible_plan_says_how_triton_must_load_it(tmp_path):
    model_dir = write_triton_repo(write_engine(tmp_path, profile="1:4:8", version_compatible=True), tmp_path / "repo",
                                  max_batch=8)
    assert "--backend-config=tensorrt,version-compatible=true" in (model_dir / "README.md").read_text()


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_python_backend_repository_for_the_onnx(tmp_path, device):
    model_dir = write_triton_repo(small_graph_onnx(tmp_path / "m.onnx"), tmp_path / "repo", max_batch=8,
                                  device=device, backend="python")
    cfg = parse_config(model_dir)
    assert (cfg.backend, cfg.platform, cfg.max_batch_size) == ("python", "", 8)
    kind = mc.ModelInstanceGroup.KIND_CPU if device == "cpu" else mc.ModelInstanceGroup.KIND_GPU
    params = check_io(cfg, python=True, kind=kind)
    assert params["sranet.artifact"] == "model.onnx"
    assert (model_dir / "1" / "model.py").read_text() == PYTHON_MODEL.read_text()
    readme = (model_dir / "README.md").read_text()
    assert 'PATH="$PWD/triton-env/bin:$PATH" tritonserver' in readme and "numpy<2" in readme


def test_a_tensorrt_rtx_plan_is_served_by_the_python_backend_only(tmp_path):
    engine = write_engine(tmp_path, env=RTX_BUILDER, targets=["8.9"], profile="1:2:4")
    with pytest.raises(InputError, match="tensorrt_plan backend is TensorRT's and does not load a TensorRT-RTX plan") \
            as info:
        write_triton_repo(engine, tmp_path / "native", max_batch=4)
    assert "backend='python'" in str(info.value)
    model_dir = write_triton_repo(engine, tmp_path / "repo", max_batch=4, backend="python")
    cfg = parse_config(model_dir)
    params = check_io(cfg, python=True)
    assert params["sranet.artifact"] == "model.plan" and (model_dir / "1" / "model.plan.json").is_file()


@pytest.mark.skipif(not HAS_TRT_RTX, reason="needs tensorrt-rtx-cu12 (the dev extra installs it)")
def test_config_of_a_real_tensorrt_rtx_plan(tmp_path, tiny_artifacts):
    from sranet.export.tensorrt import EngineOptions, build_engine

    engine = tmp_path / "m.engine"
    build_engine(tiny_artifacts[0], engine, EngineOptions.from_cli("fp32", profile="1:4:8", flavour="tensorrt-rtx",
                                                                   compute_capabilities="8.6,8.9"))
    cfg = parse_config(write_triton_repo(engine, tmp_path / "repo", max_batch=8, backend="python"))
    assert cfg.backend == "python" and list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    check_io(cfg, python=True)


@pytest.mark.parametrize(
    ("batch", "max_batch", "message"),
    [("1:4:16", 32, r"exceeds the plan's profile max 16.*--profile 1:4:32"), ("2:4:16", 8, r"starts at 2"),
     ("1:4:16", 0, r"max_batch=0 must be an integer >= 1")],
)
def test_plan_profile_limits_are_enforced(tmp_path, batch, max_batch, message):
    with pytest.raises(InputError, match=message) as caught:
        write_triton_repo(write_engine(tmp_path, profile=batch), tmp_path / "repo", max_batch=max_batch)
    assert "--triton-max-batch" not in str(caught.value)  # `sranet export` has no such option


def test_bad_names_and_artifacts(tmp_path):
    onnx_path = small_graph_onnx(tmp_path / "m.onnx")
    with pytest.raises(InputError, match="Triton model name '../x'"):
        write_triton_repo(onnx_path, tmp_path / "repo", max_batch=4, model_name="../x")
    with pytest.raises(InputError, match="Did you mean 'python'"):
        write_triton_repo(onnx_path, tmp_path / "repo", max_batch=4, backend="pyhton")
    (tmp_path / "m.pt").write_bytes(b"x")
    with pytest.raises(ArtifactError, match="a Triton repository is made from an .onnx, .engine or .plan"):
        write_triton_repo(tmp_path / "m.pt", tmp_path / "repo", max_batch=4)
    with pytest.raises(ArtifactError, match="does not exist"):
        write_triton_repo(tmp_path / "nope.onnx", tmp_path / "repo", max_batch=4)


def test_onnx_repository_for_a_cpu_only_server(tmp_path):
    onnx_path = small_graph_onnx(tmp_path / "m.onnx")
    gpu = parse_config(write_triton_repo(onnx_path, tmp_path / "g", max_batch=4))
    cpu = parse_config(write_triton_repo(onnx_path, tmp_path / "c", max_batch=4, device="cpu"))
    assert gpu.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert cpu.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    with pytest.raises(InputError, match="Did you mean 'gpu'"):
        write_triton_repo(onnx_path, tmp_path / "x", max_batch=4, device="gpus")


@pytest.mark.parametrize("backend", ["native", "python"])
def test_a_plan_cannot_be_served_on_cpus(tmp_path, backend):
    with pytest.raises(InputError, match="runs on a GPU only"):
        write_triton_repo(write_engine(tmp_path, profile="1:4:8"), tmp_path / "repo", max_batch=8, device="cpu",
                          backend=backend)


def test_the_schema_check_catches_a_wrong_field(tmp_path):
    """The check is Triton's schema, not a loose reader: a misspelt field fails to parse."""
    model_dir = write_triton_repo(small_graph_onnx(tmp_path / "m.onnx"), tmp_path / "repo", max_batch=4)
    text = (model_dir / "config.pbtxt").read_text().replace("max_batch_size", "max_batch_sizes")
    with pytest.raises(text_format.ParseError, match="max_batch_sizes"):
        text_format.Parse(text, mc.ModelConfig())
