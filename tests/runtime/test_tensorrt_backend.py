"""TensorRTBackend. Without TensorRT only the refusals run; the real engine tests are marked `trt`/`gpu` and skip
with a reason where `tensorrt` is not importable. TensorRT is never mocked."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from sranet.errors import ArtifactError, BackendError, DependencyMissingError, InputError
from sranet.runtime.backends.base import backend_class, open_backend
from tests.helpers import small_graph_onnx, write_engine

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def test_engine_suffixes_map_to_the_tensorrt_backend():
    assert backend_class("m.engine").__name__ == "TensorRTBackend"
    assert backend_class("m.plan").__name__ == "TensorRTBackend"


def test_a_plan_without_sidecar_is_refused_before_anything_loads(tmp_path):
    plan = tmp_path / "m.engine"
    plan.write_bytes(b"plan")
    with pytest.raises(ArtifactError, match="has no sidecar m.engine.json"):
        open_backend(plan, device="cuda:0")


def test_the_cpu_and_cpu_threads_are_refused(tmp_path):
    plan = write_engine(tmp_path)  # a sealed sidecar: the integrity check passes, the options are refused
    with pytest.raises(InputError, match="device='cpu': a TensorRT plan runs on NVIDIA GPUs only") as info:
        open_backend(plan)
    assert "--device cuda:N" in str(info.value) and str(plan) in str(info.value)
    with pytest.raises(InputError, match="threads=2: a TensorRT plan runs on the GPU and takes no CPU thread count"):
        open_backend(plan, device="cuda:0", threads=2)


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed here; the missing-dependency message cannot be shown")
def test_without_tensorrt_the_error_names_the_install(tmp_path):
    with pytest.raises(DependencyMissingError, match="tensorrt package is needed to build or run"):
        open_backend(write_engine(tmp_path), device="cuda:0")


@pytest.mark.trt
@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRT, reason="needs TensorRT (`import tensorrt` fails here) and an NVIDIA GPU")
@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_engine_matches_onnx_runtime(tmp_path, cuda_graphs):
    from sranet.export.tensorrt import EngineOptions, build_engine

    onnx_path = small_graph_onnx(tmp_path / "m.onnx")
    build_engine(onnx_path, tmp_path / "m.engine", EngineOptions.from_cli("fp32", profile="1:2:4", workspace_gib=1))
    ct = np.random.default_rng(0).standard_normal((3, 1, 48, 48, 48)).astype(np.float32)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    prob, attention = sess.run(["prob", "attention"], {"ct": ct})
    with open_backend(tmp_path / "m.engine", device="cuda:0", cuda_graphs=cuda_graphs) as backend:
        assert (backend.min_batch, backend.max_batch) == (1, 4)
        for _ in range(2):
            out = backend.infer(ct)
            np.testing.assert_allclose(out["prob"], prob, atol=1e-4)
            np.testing.assert_allclose(out["attention"], attention, atol=1e-4)
        assert backend.infer(ct[:1])["prob"].shape == (1,)
    with open_backend(tmp_path / "m.engine", device="cuda:0", max_batch=2) as backend:
        assert backend.max_batch == 2 and backend.infer(ct[:2])["prob"].shape == (2,)
    with pytest.raises(InputError, match=r"max_batch=8: the plan's optimisation profile takes batches 1\.\.4"):
        open_backend(tmp_path / "m.engine", device="cuda:0", max_batch=8)


HAS_CUPY = importlib.util.find_spec("cupy") is not None


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUPY, reason="needs CuPy and an NVIDIA GPU")
def test_a_gpu_index_that_does_not_exist_is_a_backend_error():
    from sranet.runtime.devices import device_env

    with pytest.raises(BackendError, match="cannot read the properties of GPU 99"):
        device_env("10.7.0", 99)


def _gpu_count() -> int:
    if not HAS_CUPY:
        return 0
    import cupy

    try:
        return cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError:
        return 0


@pytest.mark.trt
@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRT or _gpu_count() < 2, reason="needs TensorRT, CuPy and two NVIDIA GPUs")
def test_engine_runs_on_the_second_gpu(tmp_path):
    """The plan is deserialised on the GPU that its buffers live on (not on GPU 0)."""
    import cupy

    from sranet.export.tensorrt import EngineOptions, build_engine

    onnx_path = small_graph_onnx(tmp_path / "m.onnx")
    with cupy.cuda.Device(1):
        build_engine(onnx_path, tmp_path / "m.engine", EngineOptions.from_cli("fp32", profile="1:1:2", workspace_gib=1))
    ct = np.random.default_rng(1).standard_normal((2, 1, 48, 48, 48)).astype(np.float32)
    import onnxruntime as ort

    prob, _ = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(["prob", "attention"], {"ct": ct})
    with open_backend(tmp_path / "m.engine", device="cuda:1") as backend:
        np.testing.assert_allclose(backend.infer(ct)["prob"], prob, atol=1e-4)


@pytest.mark.parametrize(("visible", "device", "expected"), [
    (None, 0, "0"),
    (None, 2, "2"),
    ("3", 0, "3"),  # CUDA device 0 is physical GPU 3
    ("2, 5", 1, "5"),
    ("GPU-8f6c1d2e-0000-1111-2222-333344445555,1", 0, "GPU-8f6c1d2e-0000-1111-2222-333344445555"),
])
def test_nvidia_smi_id_follows_cuda_visible_devices(visible, device, expected):
    from sranet.runtime.devices import visible_gpu_id

    env = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    assert visible_gpu_id(device, env) == expected


@pytest.mark.parametrize(("visible", "device"), [("", 0), ("1,2", 2)])
def test_a_device_outside_cuda_visible_devices_is_a_backend_error(visible, device):
    from sranet.runtime.devices import visible_gpu_id

    with pytest.raises(BackendError, match=rf"CUDA device {device} is not visible: CUDA_VISIBLE_DEVICES="):
        visible_gpu_id(device, {"CUDA_VISIBLE_DEVICES": visible})


@pytest.mark.skipif(HAS_CUPY, reason="CuPy is installed: the current device comes from the CUDA runtime")
def test_without_cupy_the_process_is_on_device_0():
    from sranet.runtime.devices import current_cuda_device

    assert current_cuda_device() == 0
