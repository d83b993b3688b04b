"""ONNX Runtime on a GPU, what can be checked without one: the run options that give every batch size its own CUDA
graph, the TensorRT provider's single graph, the batch range its profile sets, and IO-binding buffers that are never
dropped while graphs may replay them (real ONNX Runtime CPU sessions)."""

from __future__ import annotations

import numpy as np
import pytest

from sranet.errors import InputError
from sranet.runtime.artifact import DEFAULT_MAX_BATCH
from sranet.runtime.backends.base import open_backend
from sranet.runtime.backends.onnxruntime import (
    CPU_EP,
    CUDA_EP,
    MAX_BOUND_BATCHES,
    TRT_EP,
    effective_max_batch,
    graph_run_config,
)


def test_cuda_provider_graphs_are_one_per_batch_size():
    chain = [CUDA_EP, CPU_EP]
    ids = [graph_run_config(chain, b, cuda_graphs=True, captured_batch=3)["gpu_graph_id"] for b in (3, 1, 3)]
    assert ids == ["3", "1", "3"]  # B=3 -> 1 -> 3: the second 3 replays the graph captured for 3, never 1's
    assert graph_run_config(chain, 2, cuda_graphs=False, captured_batch=None) == {}


def test_tensorrt_provider_keeps_one_graph_and_refuses_another_batch():
    chain = [TRT_EP, CUDA_EP, CPU_EP]
    assert graph_run_config(chain, 3, cuda_graphs=True, captured_batch=None) == {}
    assert graph_run_config(chain, 3, cuda_graphs=True, captured_batch=3) == {}
    with pytest.raises(InputError, match=r"batch 1 after a CUDA graph was captured for batch 3.*provider='cuda'"):
        graph_run_config(chain, 1, cuda_graphs=True, captured_batch=3)


def test_the_tensorrt_provider_profile_bounds_the_batch():
    assert effective_max_batch([TRT_EP, CUDA_EP, CPU_EP], None) == DEFAULT_MAX_BATCH
    assert effective_max_batch([TRT_EP, CUDA_EP, CPU_EP], 4) == 4
    assert effective_max_batch([CUDA_EP, CPU_EP], None) is None
    assert effective_max_batch([CPU_EP], 2) == 2


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_bound_buffers_are_kept_while_graphs_may_replay_them(tiny_artifacts, cuda_graphs):
    onnx_path, _ = tiny_artifacts
    backend = open_backend(onnx_path, io_binding=True)
    backend.cuda_graphs = cuda_graphs  # what a GPU backend with graphs has; the CPU session binds the same way
    S = backend.info.model.input_size
    batches = list(range(1, MAX_BOUND_BATCHES + 3))
    for b in batches:
        out = backend.infer(np.zeros((b, 1, S, S, S), np.float32))
        assert out["prob"].shape == (b,)
    kept = sorted(backend._bindings)
    assert kept == (batches if cuda_graphs else batches[-MAX_BOUND_BATCHES:])

