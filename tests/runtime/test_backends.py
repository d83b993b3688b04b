"""Backend contract: every backend available here gives the same outputs for the same input and refuses bad input.

The artifacts are SRANet(tiny) through the exporter of `sranet export` (without its parity gate) and as a
checkpoint (the session fixture tiny_artifacts, tests/helpers.py); TensorRT is skipped with a reason where it is not installed.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from sranet.config import ModelConfig, PreprocessConfig
from sranet.errors import ArtifactError, BackendError, InputError
from sranet.runtime.artifact import ArtifactInfo
from sranet.runtime.backends import BACKENDS as REGISTRY
from sranet.runtime.backends import Backend, backend_class, open_backend
from sranet.runtime.backends.onnxruntime import (
    CPU_EP,
    CUDA_EP,
    TRT_EP,
    OnnxRuntimeBackend,
    provider_options,
    resolve_providers,
)
from sranet.runtime.devices import Device, parse_device
from tests.helpers import tiny_model

torch = pytest.importorskip("torch")
S = 48


def _phantom_batch(n=3, seed=0):
    """(n, 1, S, S, S) float32: a bright sphere (a 'femoral head') at different places plus noise, z-scored."""
    rng = np.random.default_rng(seed)
    d, h, w = np.meshgrid(*[np.arange(S)] * 3, indexing="ij")
    out = []
    for _ in range(n):
        c = rng.uniform(12, 36, 3)
        vol = 400.0 * (((d - c[0]) ** 2 + (h - c[1]) ** 2 + (w - c[2]) ** 2) < 10**2) + rng.normal(0, 30, (S, S, S))
        out.append((vol - vol.mean()) / vol.std())
    return np.stack(out)[:, None].astype(np.float32)


BACKENDS = [
    pytest.param("onnx", id="onnxruntime-cpu"),
    pytest.param("pt", id="torch-cpu"),
    pytest.param("engine", id="tensorrt", marks=pytest.mark.skipif(
        importlib.util.find_spec("tensorrt") is None, reason="tensorrt is not installed (no NVIDIA GPU/TensorRT here)")),
]


def _open(kind, artifacts):
    onnx_path, pt_path = artifacts
    if kind == "onnx":
        return open_backend(onnx_path, threads=1)
    if kind == "pt":
        return open_backend(pt_path, threads=1)
    pytest.skip("building a TensorRT engine needs a GPU; covered by benchmarks/ GPU script")


@pytest.fixture(scope="module")
def reference():
    """PyTorch outputs on the phantom batch: the reference every backend must match."""
    model = tiny_model(seed=0)
    x = _phantom_batch()
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    return x, torch.sigmoid(out.logit).numpy(), out.attention.numpy()


@pytest.mark.parametrize("kind", BACKENDS)
def test_backend_matches_reference(kind, tiny_artifacts, reference):
    x, prob, attention = reference
    with _open(kind, tiny_artifacts) as backend:
        assert backend.info.model == ModelConfig.preset("tiny")
        assert backend.info.threshold == 0.5
        out = backend.infer(x)
        single = backend.infer(x[1:2])
    assert out["prob"].shape == (3,) and out["prob"].dtype == np.float32
    assert out["attention"].shape == (3, 64) and out["attention"].dtype == np.float32
    np.testing.assert_allclose(out["prob"], prob, atol=1e-5)
    np.testing.assert_allclose(out["attention"], attention, atol=1e-5)
    np.testing.assert_allclose(out["attention"].sum(axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(single["prob"], out["prob"][1:2], atol=1e-5)  # batching does not change a case


@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((1, 1, S, S, S - 1), np.float32), "expected (B, 1, 48, 48, 48)"),
        (np.zeros((1, S, S, S), np.float32), "expected (B, 1, 48, 48, 48)"),
        (np.zeros((1, 1, S, S, S), np.float64), "expected float32"),
        (np.full((1, 1, S, S, S), np.nan, np.float32), "NaN"),
        ([[0.0]], "numpy array"),
    ],
    ids=["shape", "no-channel", "dtype", "nan", "list"],
)
def test_backend_rejects_bad_input(kind, bad, message, tiny_artifacts):
    with _open(kind, tiny_artifacts) as backend, pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        backend.infer(bad)


def test_onnx_describe_records_session_options(tiny_artifacts):
    backend = OnnxRuntimeBackend(tiny_artifacts[0], threads=2, graph_level="extended")
    d = backend.describe()
    assert d["providers"] == [CPU_EP]
    assert d["intra_op_threads"] == 2 and d["graph_level"] == "extended" and d["io_binding"] is False


def test_onnx_io_binding_gives_same_outputs(tiny_artifacts, reference):
    x, prob, _ = reference
    backend = OnnxRuntimeBackend(tiny_artifacts[0], threads=1, io_binding=True)
    first = backend.infer(x)
    np.testing.assert_allclose(first["prob"], prob, atol=1e-5)
    second = backend.infer(x[::-1].copy())  # same batch size: the bound buffers are reused
    np.testing.assert_allclose(second["prob"], prob[::-1], atol=1e-5)
    np.testing.assert_allclose(first["prob"], prob, atol=1e-5)  # earlier results are not overwritten
    np.testing.assert_allclose(backend.infer(x[:1])["prob"], prob[:1], atol=1e-5)  # another batch size


def test_unavailable_provider_is_an_error_not_a_fallback(tiny_artifacts):
    import onnxruntime as ort

    if CUDA_EP in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA; the refusal cannot be shown here")
    with pytest.raises(BackendError, match="CUDAExecutionProvider.*use --device cpu"):
        OnnxRuntimeBackend(tiny_artifacts[0], device="cuda:0", provider="cuda")
    with pytest.raises(BackendError, match="device cuda:0 needs onnxruntime's TensorrtExecutionProvider or"):
        OnnxRuntimeBackend(tiny_artifacts[0], device="cuda:0")
    with pytest.raises(InputError, match="Did you mean 'cuda'"):
        OnnxRuntimeBackend(tiny_artifacts[0], device="cuda:0", provider="cdua")
    with pytest.raises(InputError, match="provider='cuda' chooses ONNX Runtime's GPU execution provider"):
        OnnxRuntimeBackend(tiny_artifacts[0], provider="cuda")


def test_resolve_providers_chains():
    everything = [TRT_EP, CUDA_EP, CPU_EP]
    cpu, gpu = Device("cpu"), Device("cuda", 1)
    assert resolve_providers(gpu, None, everything) == [TRT_EP, CUDA_EP, CPU_EP]
    assert resolve_providers(gpu, None, [CUDA_EP, CPU_EP]) == [CUDA_EP, CPU_EP]
    assert resolve_providers(gpu, "cuda", everything) == [CUDA_EP, CPU_EP]
    assert resolve_providers(cpu, None, everything) == [CPU_EP]
    with pytest.raises(BackendError, match="TensorrtExecutionProvider"):
        resolve_providers(gpu, "tensorrt", [CUDA_EP, CPU_EP])
    with pytest.raises(BackendError, match="needs onnxruntime's"):
        resolve_providers(gpu, None, ["AzureExecutionProvider", CPU_EP])


@pytest.mark.parametrize("precision, fp16, int8", [("fp32", "0", "0"), ("fp16", "1", "0"), ("int8", "0", "1")])
def test_gpu_provider_options_are_latency_settings(tmp_path, precision, fp16, int8):
    cfg = ModelConfig.preset("tiny")
    info = ArtifactInfo(cfg, PreprocessConfig.for_model(cfg), 0.5, precision=precision)
    trt, cuda, cpu = provider_options([TRT_EP, CUDA_EP, CPU_EP], info, device_id=1, cache_dir=tmp_path, max_batch=4)
    assert trt["trt_fp16_enable"] == fp16 and trt["trt_int8_enable"] == int8
    assert trt["trt_engine_cache_enable"] == "1" and trt["trt_engine_cache_path"] == str(tmp_path / "engines")
    assert trt["trt_timing_cache_enable"] == "1" and trt["trt_timing_cache_path"] == str(tmp_path / "timing")
    assert trt["trt_profile_min_shapes"] == "ct:1x1x48x48x48"
    assert trt["trt_profile_max_shapes"] == "ct:4x1x48x48x48"
    assert trt["device_id"] == cuda["device_id"] == "1"
    assert cuda["cudnn_conv_algo_search"] == "EXHAUSTIVE"
    assert cpu == {}
    assert all(isinstance(v, str) for v in (*trt.values(), *cuda.values()))


def test_onnx_without_metadata_is_an_artifact_error(tmp_path, tiny_artifacts):
    import onnx

    proto = onnx.load(str(tiny_artifacts[0]))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(ArtifactError, match="no sranet metadata"):
        OnnxRuntimeBackend(bare)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ArtifactError, match="not a readable ONNX model"):
        OnnxRuntimeBackend(junk)


@pytest.mark.parametrize("suffix", sorted(REGISTRY))
def test_every_backend_takes_the_one_contract(suffix):
    """Same names, same defaults, keyword-only, for every registered backend; extra options are declared."""
    import inspect

    cls = backend_class(f"model{suffix}")
    assert issubclass(cls, Backend)
    params = inspect.signature(cls.__init__).parameters
    contract = {"device": "cpu", "threads": None, "cuda_graphs": False, "max_batch": None}
    for name, default in contract.items():
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY and params[name].default == default, name
    extra = [n for n in params if n not in ("self", "path", *contract)]
    assert extra == list(cls.OPTIONS), f"{cls.__name__} takes {extra} but declares OPTIONS {cls.OPTIONS}"


def test_open_backend_refuses_an_option_of_another_backend(tiny_artifacts):
    with pytest.raises(InputError, match=r"provider='cuda' \(--provider\) is not a setting of the torch backend "
                                         r"that runs \.pt artifacts; it takes dtype"):
        open_backend(tiny_artifacts[1], provider="cuda")
    with pytest.raises(InputError, match="is not a setting of the onnxruntime backend.*Did you mean 'spinning'"):
        open_backend(tiny_artifacts[0], spining=False)
    with pytest.raises(InputError, match="cuda_graphs=True: CUDA graphs need a GPU"):
        open_backend(tiny_artifacts[0], cuda_graphs=True)


@pytest.mark.parametrize(("text", "device"), [("cpu", Device("cpu")), ("cuda", Device("cuda", 0)),
                                               ("cuda:3", Device("cuda", 3)), (" CUDA:1 ", Device("cuda", 1))])
def test_device_strings(text, device):
    assert parse_device(text) == device


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:-1", "auto", "", 0, None])
def test_bad_device_strings(text):
    with pytest.raises(InputError, match="is not 'cpu' or 'cuda:N'"):
        parse_device(text)
