"""CUDA plumbing for the TensorRT backend, with CuPy (imported lazily): a stream, pinned host buffers and device
buffers allocated once, async copies and CUDA-graph capture/replay. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sranet.errors import BackendError, DependencyMissingError

CUPY_HINT = "Install CuPy for your CUDA version: pip install 'sranet[gpu]' (cupy-cuda12x)."


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
        self._graphs: dict[object, object] = {}

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

    def run_graph(self, key, enqueue) -> None:
        """Replay the CUDA graph stored under ``key``; on first use capture ``enqueue(stream_ptr)`` into it.

        ``enqueue`` must only enqueue work on the stream (e.g. ``context.execute_async_v3``) and use fixed addresses.
        """
        graph = self._graphs.get(key)
        if graph is None:
            enqueue(self.stream.ptr)  # one plain run first: lazy set-up (kernel loading, TensorRT shape state) stays
            self.stream.synchronize()  # out of the capture, where it is not allowed
            self.stream.begin_capture()
            try:
                enqueue(self.stream.ptr)
            finally:
                graph = self.stream.end_capture()
            self._graphs[key] = graph
        graph.launch(stream=self.stream)

    def close(self) -> None:
        self._graphs.clear()
        self.buffers.clear()
        self._pinned.clear()


__all__ = ["CUPY_HINT", "CudaBuffers", "IOBuffer", "import_cupy"]
