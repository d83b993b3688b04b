"""CUDA plumbing for the TensorRT backend, with CuPy (imported lazily): a stream, pinned host buffers and device
buffers allocated once, async copies, CUDA-graph capture/replay, and the GPU facts a plan is tied to.

Nothing here imports torch. ``device_env`` also works without CuPy (it asks ``nvidia-smi``), so a build machine with
only TensorRT still records the GPU in the sidecar.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sranet.errors import BackendError, DependencyMissingError
from sranet.export.sidecar import DeviceEnv

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


def _cuda_version(v: int) -> str:
    return f"{v // 1000}.{(v % 1000) // 10}" if v else ""


def visible_gpu_id(device: int, environ: Mapping[str, str] = os.environ) -> str:
    """The ``nvidia-smi --id`` of this process's CUDA device ``device``. CUDA numbers only the GPUs listed in
    CUDA_VISIBLE_DEVICES (indices or UUIDs); nvidia-smi numbers all of them, so device 0 may be GPU 3 to it."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return str(device)
    ids = [part.strip() for part in visible.split(",") if part.strip()]
    if not 0 <= device < len(ids):
        raise BackendError(f"CUDA device {device} is not visible: CUDA_VISIBLE_DEVICES={visible!r} lists "
                           f"{len(ids)} GPU(s).", hint="Pick a device below that count, or widen CUDA_VISIBLE_DEVICES.")
    return ids[device]


def current_cuda_device() -> int:
    """The CUDA device this process is on (the one a TensorRT builder uses): CuPy's current device, else 0."""
    try:
        import cupy
    except ImportError:
        return 0  # nothing in this process can have changed it from the default
    try:
        return int(cupy.cuda.runtime.getDevice())
    except cupy.cuda.runtime.CUDARuntimeError:
        return 0


def device_env(trt_version: str, device: int = 0) -> DeviceEnv:
    """TensorRT version + name/compute capability of GPU ``device`` + CUDA runtime/driver versions."""
    try:
        import cupy
    except ImportError:
        cupy = None
    if cupy is not None:
        try:
            props = cupy.cuda.runtime.getDeviceProperties(device)
            runtime_version = cupy.cuda.runtime.runtimeGetVersion()
            driver_version = cupy.cuda.runtime.driverGetVersion()
        except cupy.cuda.runtime.CUDARuntimeError as exc:  # no driver, or no GPU with that index
            raise BackendError(f"cannot read the properties of GPU {device} ({exc}).",
                               hint="Pick a GPU index that `nvidia-smi -L` lists, e.g. device=0.") from exc
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        return DeviceEnv(
            tensorrt=str(trt_version), gpu_name=name, compute_capability=f"{props['major']}.{props['minor']}",
            cuda_runtime=_cuda_version(runtime_version), cuda_driver=_cuda_version(driver_version),
        )
    smi = shutil.which("nvidia-smi")
    if smi is None:
        raise BackendError("cannot find the GPU: neither CuPy nor nvidia-smi is available.", hint=CUPY_HINT)
    out = subprocess.run([smi, f"--id={visible_gpu_id(device)}", "--query-gpu=name,compute_cap,driver_version",
                          "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0 or not out.stdout.strip():
        raise BackendError(f"nvidia-smi could not describe GPU {device}: {out.stderr.strip() or out.stdout.strip()}")
    name, cc, driver = (s.strip() for s in out.stdout.strip().splitlines()[0].split(","))
    return DeviceEnv(tensorrt=str(trt_version), gpu_name=name, compute_capability=cc, cuda_driver=driver)


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


__all__ = ["CudaBuffers", "IOBuffer", "current_cuda_device", "device_env", "import_cupy", "visible_gpu_id"]
