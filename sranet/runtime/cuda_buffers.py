"""CUDA plumbing for the TensorRT backend, with CuPy (imported lazily): a stream, pinned host buffers and device
buffers allocated once, async copies and CUDA-graph capture/replay. Nothing here imports torch.

``GraphBook`` is the bookkeeping of the graphs, apart from CUDA: per key (a batch size) one warm-up run, one
capture, then replays; a capture that fails leaves that key on plain enqueues for good (as trtexec falls back), and
the reason is kept for ``describe``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sranet.errors import BackendError, DependencyMissingError

CUPY_HINT = ("Install CuPy for your CUDA version: pip install 'sranet[gpu-cu12]' (cupy-cuda12x) or "
             "'sranet[gpu-cu13]' (cupy-cuda13x).")


def import_cupy():
    try:
        import cupy
    except ImportError as exc:
        raise DependencyMissingError(f"GPU buffers and GPU preprocessing need CuPy ({exc}).", hint=CUPY_HINT) from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # cupy raises CUDARuntimeError without a driver
        raise BackendError(f"CuPy is installed but finds no usable CUDA GPU ({exc}).") from exc
    if count < 1:
        raise BackendError("CuPy finds no CUDA GPU on this machine.")
    return cupy


@dataclass
class IOBuffer:
    """One named tensor: a pinned host array and a device array, both of the max shape, allocated once."""

    name: str
    host: np.ndarray  # pinned, max shape
    device: object  # cupy.ndarray, max shape

    @property
    def device_ptr(self) -> int:
        return int(self.device.data.ptr)


@dataclass
class GraphBook:
    """Which keys have a captured graph, which fell back to plain runs, and why (no CUDA here: ``capture`` and
    ``launch`` are given).

    capture(enqueue) -> graph   runs ``enqueue`` under stream capture and returns the graph; raises when the
                                capture fails (then the stream must already be out of capture mode).
    launch(graph)               replays a graph.
    """

    capture: Callable[[Callable[[], None]], object]
    launch: Callable[[object], None]
    graphs: dict = field(default_factory=dict)
    fallbacks: dict = field(default_factory=dict)  # key -> why the capture failed

    def run(self, key, enqueue: Callable[[], None]) -> str:
        """Run ``enqueue`` for ``key``: "replay" of its graph, or on first use "captured" (one plain run first, so
        lazy set-up stays out of the capture, then capture and launch), or "plain" where capturing failed."""
        if key in self.graphs:
            self.launch(self.graphs[key])
            return "replay"
        if key in self.fallbacks:
            enqueue()
            return "plain"
        enqueue()  # warm-up: TensorRT's first enqueue may allocate or load kernels, which a capture does not allow
        try:
            graph = self.capture(enqueue)
        except Exception as exc:  # noqa: BLE001 - any capture failure falls back to plain enqueues, recorded
            self.fallbacks[key] = f"{type(exc).__name__}: {exc}"
            return "plain"
        self.graphs[key] = graph
        self.launch(graph)
        return "captured"

    def clear(self) -> None:
        self.graphs.clear()
        self.fallbacks.clear()


class CudaBuffers:
    """Pinned host + device buffers for named tensors, one non-blocking stream, optional CUDA graphs.

    shapes: name -> max shape (e.g. "ct": (B_max, 1, S, S, S)); dtypes: name -> numpy dtype. Copies move only the
    first ``batch`` rows, so one allocation serves every batch size up to the profile's max.
    """

    def __init__(self, shapes: dict[str, tuple[int, ...]], dtypes: dict[str, np.dtype], device: int = 0):
        cp = import_cupy()
        self.cp = cp
        self.device = cp.cuda.Device(device)
        self.device.use()
        self.stream = cp.cuda.Stream(non_blocking=True)
        self.buffers: dict[str, IOBuffer] = {}
        self._pinned = []  # keep the pinned allocations alive
        for name, shape in shapes.items():
            dtype = np.dtype(dtypes[name])
            nbytes = int(np.prod(shape)) * dtype.itemsize
            mem = cp.cuda.alloc_pinned_memory(nbytes)
            self._pinned.append(mem)
            host = np.frombuffer(mem, dtype=dtype, count=int(np.prod(shape))).reshape(shape)
            self.buffers[name] = IOBuffer(name, host, cp.empty(shape, dtype=dtype))
        self.graph_book = GraphBook(capture=self._capture, launch=lambda graph: graph.launch(stream=self.stream))

    def __getitem__(self, name: str) -> IOBuffer:
        return self.buffers[name]

    def upload(self, name: str, array: np.ndarray) -> None:
        """Copy ``array`` (batch rows of the tensor) into the pinned buffer, then async to the device."""
        buf = self.buffers[name]
        n = array.shape[0]
        buf.host[:n] = array
        buf.device[:n].set(buf.host[:n], stream=self.stream)

    def download(self, name: str, batch: int) -> np.ndarray:
        """Async copy of the first ``batch`` rows to the pinned buffer; call ``synchronize`` before reading."""
        buf = self.buffers[name]
        buf.device[:batch].get(stream=self.stream, out=buf.host[:batch], blocking=False)
        return buf.host[:batch]

    def synchronize(self) -> None:
        self.stream.synchronize()

    def run_graph(self, key, enqueue) -> str:
        """Run ``enqueue(stream_ptr)`` for ``key`` through a CUDA graph (``GraphBook.run``): captured on first use
        after one plain run, replayed after, plain where the capture failed. Returns what happened.

        ``enqueue`` must only enqueue work on the stream (e.g. ``context.execute_async_v3``) and use fixed addresses
        and a fixed context state: the graph replays exactly what was captured.
        """
        return self.graph_book.run(key, lambda: enqueue(self.stream.ptr))

    def _capture(self, enqueue):
        self.stream.synchronize()
        self.stream.begin_capture()
        try:
            enqueue()
        finally:
            graph = self.stream.end_capture()  # also ends a capture that failed, so the stream stays usable
        return graph

    def close(self) -> None:
        self.graph_book.clear()
        self.buffers.clear()
        self._pinned.clear()


__all__ = ["CUPY_HINT", "CudaBuffers", "GraphBook", "IOBuffer", "import_cupy"]
