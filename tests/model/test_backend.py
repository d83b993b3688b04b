"""TorchBackend (sranet/model/backend.py) on the CPU (always) and on CUDA (marked gpu; skipped without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from sranet.config import ModelConfig
from sranet.errors import BackendError, InputError
from sranet.model.backend import TorchBackend
from sranet.runtime.backends.base import open_backend
from tests.helpers import tiny_model, write_checkpoint

torch = pytest.importorskip("torch")

CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    model = tiny_model(seed=0)
    return write_checkpoint(tmp_path_factory.mktemp("torch_backend") / "best.pt", model, threshold=0.37), model


def batch(n: int, seed: int = 1) -> np.ndarray:
    S = ModelConfig.preset("tiny").input_size
    return np.random.default_rng(seed).standard_normal((n, 1, S, S, S)).astype(np.float32)


def reference(model, ct: np.ndarray):
    with torch.no_grad():
        out = model(torch.from_numpy(ct))
    return torch.sigmoid(out.logit).numpy(), out.attention.numpy()


def test_cpu_matches_the_model_and_carries_the_checkpoint_configs(ckpt):
    path, model = ckpt
    ct = batch(3)
    with open_backend(path) as backend:
        assert isinstance(backend, TorchBackend)
        assert backend.info.threshold == pytest.approx(0.37)
        assert backend.info.model == ModelConfig.preset("tiny")
        assert backend.info.preprocess.output_size == 48
        out = backend.infer(ct)
    prob, attention = reference(model, ct)
    assert out["prob"].shape == (3,) and out["prob"].dtype == np.float32
    assert out["attention"].shape == (3, 64)
    np.testing.assert_allclose(out["prob"], prob, atol=1e-6)
    np.testing.assert_allclose(out["attention"], attention, atol=1e-6)
    np.testing.assert_allclose(out["attention"].sum(axis=1), 1.0, atol=1e-4)


def test_bf16_autocast_on_cpu_stays_close(ckpt):
    path, model = ckpt
    ct = batch(2, seed=3)
    out = TorchBackend(path, dtype="bf16").infer(ct)
    prob, attention = reference(model, ct)
    assert out["prob"].dtype == np.float32
    assert np.abs(out["prob"] - prob).max() < 0.05
    assert np.abs(out["attention"] - attention).max() < 0.05


def test_bad_input_is_refused_once_in_the_base_class(ckpt):
    backend = TorchBackend(ckpt[0])
    with pytest.raises(InputError, match=r"expected \(B, 1, 48, 48, 48\)"):
        backend.infer(np.zeros((1, 1, 32, 32, 32), np.float32))
    with pytest.raises(InputError, match="float32"):
        backend.infer(np.zeros((1, 1, 48, 48, 48), np.float64))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dtype": "fp8"}, "dtype='fp8' is not one of"),
        ({"device": "tpu"}, "device='tpu' is not 'cpu' or 'cuda:N'"),
        ({"device": "auto"}, "device='auto' is not 'cpu' or 'cuda:N'"),
        ({"cuda_graphs": True, "device": "cpu"}, "cuda_graphs=True: CUDA graphs need a GPU"),
        ({"threads": 0}, "threads=0: must be a positive integer"),
        ({"max_batch": 0}, "max_batch=0: must be a positive integer"),
    ],
)
def test_bad_options_are_refused(ckpt, options, message):
    with pytest.raises(InputError, match=message):
        TorchBackend(ckpt[0], **options)


def test_max_batch_bounds_the_batch(ckpt):
    backend = TorchBackend(ckpt[0], max_batch=2)
    assert backend.infer(batch(2))["prob"].shape == (2,)
    with pytest.raises(InputError, match=r"batch size 3 is outside this artifact's range \[1, 2\]"):
        backend.infer(batch(3))


@pytest.mark.skipif(CUDA, reason="this machine has a GPU; the no-GPU refusal cannot be shown here")
def test_cuda_without_a_gpu_is_an_error_not_a_cpu_fallback(ckpt):
    with pytest.raises(BackendError, match="sees no CUDA GPU"):
        TorchBackend(ckpt[0], device="cuda:0")


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs an NVIDIA GPU with a CUDA build of PyTorch")
@pytest.mark.parametrize(("dtype", "atol"), [("fp32", 1e-4), ("fp16", 2e-2), ("bf16", 5e-2)])
@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_cuda_matches_the_cpu_reference(ckpt, dtype, atol, cuda_graphs):
    path, model = ckpt
    ct = batch(4, seed=5)
    backend = TorchBackend(path, device="cuda:0", dtype=dtype, cuda_graphs=cuda_graphs)
    prob, attention = reference(model, ct)
    for _ in range(2):  # second call replays the captured graph
        out = backend.infer(ct)
        np.testing.assert_allclose(out["prob"], prob, atol=atol)
        np.testing.assert_allclose(out["attention"], attention, atol=atol)
    other = batch(4, seed=6)  # new data through the same static buffer
    np.testing.assert_allclose(backend.infer(other)["prob"], reference(model, other)[0], atol=atol)
