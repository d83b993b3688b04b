"""TensorRTBackend. Without a GPU the refusals run for real (a TensorRT-RTX plan built here is refused before it is
deserialised), and so does the bookkeeping of contexts and CUDA graphs per batch size; the engine tests are marked
`trt`/`gpu` and skip with a reason where `tensorrt` or a GPU is missing. TensorRT is never mocked."""

from __future__ import annotations

import ctypes.util
import importlib.util

import numpy as np
import pytest

from sranet.errors import ArtifactError, BackendError, DependencyMissingError, InputError, IntegrityError
from sranet.runtime.backends.base import backend_class, open_backend
from tests.helpers import small_graph_onnx, write_engine

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
HAS_TRT_RTX = importlib.util.find_spec("tensorrt_rtx") is not None
HAS_DRIVER = ctypes.util.find_library("cuda") is not None


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


def test_a_machine_without_the_nvidia_driver_is_told_so():
    from sranet.runtime.devices import driver_gpu

    with pytest.raises(BackendError, match=r"no NVIDIA GPU driver on this machine: libcuda-missing\.so\.1 cannot be "
                                           r"loaded") as info:
        driver_gpu(0, library="libcuda-missing.so.1")
    assert "--device cpu" in str(info.value)


@pytest.mark.skipif(not HAS_TRT_RTX, reason="needs tensorrt-rtx-cu12 (the dev extra installs it)")
@pytest.mark.skipif(HAS_DRIVER or HAS_CUPY, reason="an NVIDIA driver is installed: the no-GPU refusal cannot be shown")
def test_a_tensorrt_rtx_plan_is_refused_before_deserialising_where_there_is_no_gpu(tmp_path, tiny_artifacts):
    """A real plan, built here by TensorRT-RTX for 8.9, opened on this GPU-less machine: refused with the reason,
    before TensorRT-RTX reads the plan; a damaged plan is refused earlier still, by its digest."""
    from sranet.export.tensorrt import EngineOptions, build_engine

    onnx_path, _ = tiny_artifacts
    engine = tmp_path / "m.engine"
    build_engine(onnx_path, engine, EngineOptions.from_cli("fp32", profile="1:1:2", flavour="tensorrt-rtx",
                                                           compute_capabilities="8.9"))
    with pytest.raises(BackendError, match=r"no NVIDIA GPU driver on this machine: libcuda\.so\.1 cannot be loaded"):
        open_backend(engine, device="cuda:0")
    engine.write_bytes(b"damaged")
    with pytest.raises(IntegrityError, match="SHA-256 of the plan"):
        open_backend(engine, device="cuda:0")


@pytest.mark.skipif(HAS_TRT or not HAS_TRT_RTX, reason="needs TensorRT-RTX without TensorRT installed")
def test_a_tensorrt_plan_where_only_tensorrt_rtx_is_installed_gets_the_rtx_rebuild(tmp_path):
    with pytest.raises(DependencyMissingError, match=r"tensorrt package is needed.*built by TensorRT and loads only "
                                                     r"there") as info:
        open_backend(write_engine(tmp_path), device="cuda:0")
    assert "--engine-flavour tensorrt-rtx" in str(info.value)


# -- contexts and CUDA graphs per batch size (bookkeeping, no CUDA) -------------------------------------------------
class Recorder:
    """Stands in for the CUDA side of the bookkeeping only: it records what the backend asks of contexts and of
    the graph capture, so the order of those calls can be checked."""

    def __init__(self, fail_capture_for=()):
        self.events: list[tuple] = []
        self.fail_capture_for = set(fail_capture_for)

    def make_context(self, batch):
        self.events.append(("new_context", batch))
        return {"batch": batch}  # its input shape is set once, here

    def enqueue(self, context):
        self.events.append(("enqueue", context["batch"]))

    def capture(self, key):
        def capture(enqueue):
            if key in self.fail_capture_for:
                raise RuntimeError("operation not permitted when stream is capturing")
            self.events.append(("capture_begin", key))
            enqueue()
            self.events.append(("capture_end", key))
            return ("graph", key)
        return capture


def run_batches(batches, recorder):
    """What TensorRTBackend._infer does with cuda_graphs, on the recorder: the batch's own context, then its graph."""
    from sranet.runtime.backends.tensorrt import ContextPerBatch
    from sranet.runtime.cuda_buffers import GraphBook

    contexts = ContextPerBatch(recorder.make_context)
    current = {}
    book = GraphBook(capture=lambda enqueue: recorder.capture(current["batch"])(enqueue),
                     launch=lambda graph: recorder.events.append(("launch", graph[1])))
    outcomes = []
    for batch in batches:
        context = contexts.get(batch)
        current["batch"] = batch
        outcomes.append(book.run(batch, lambda context=context: recorder.enqueue(context)))
    return outcomes, contexts, book


def test_batch_3_then_1_then_3_replays_each_graph_on_its_own_context():
    rec = Recorder()
    outcomes, contexts, book = run_batches([3, 1, 3, 1], rec)
    assert outcomes == ["captured", "captured", "replay", "replay"]
    assert sorted(contexts.contexts) == [1, 3] and [e for e in rec.events if e[0] == "new_context"] ==         [("new_context", 3), ("new_context", 1)]  # one context per batch size, made once
    assert rec.events == [
        ("new_context", 3), ("enqueue", 3), ("capture_begin", 3), ("enqueue", 3), ("capture_end", 3), ("launch", 3),
        ("new_context", 1), ("enqueue", 1), ("capture_begin", 1), ("enqueue", 1), ("capture_end", 1), ("launch", 1),
        ("launch", 3), ("launch", 1),
    ]  # the replay of batch 3 follows no shape change on its context: nothing ran on context 3 in between
    assert book.fallbacks == {}


def test_a_failed_capture_falls_back_to_plain_enqueues_for_that_batch_only():
    rec = Recorder(fail_capture_for={1})
    outcomes, _, book = run_batches([3, 1, 1, 3], rec)
    assert outcomes == ["captured", "plain", "plain", "replay"]
    assert "operation not permitted" in book.fallbacks[1] and 3 in book.graphs
    assert rec.events[-3:] == [("enqueue", 1), ("enqueue", 1), ("launch", 3)]


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


@pytest.mark.skipif(HAS_CUPY, reason="CuPy is installed: the current device comes from the CUDA runtime")
def test_without_cupy_the_process_is_on_device_0():
    from sranet.runtime.devices import current_cuda_device

    assert current_cuda_device() == 0
