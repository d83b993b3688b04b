"""TensorRT backend for raw ``.engine`` / ``.plan`` files written by ``sranet export --engine`` (no torch).

Before the plan is deserialised its sidecar (``<engine>.json``) is checked against this machine: TensorRT version,
GPU model and compute capability, and the plan's SHA-256. Then: named I/O tensors, one execution context, one
non-blocking CUDA stream, pinned host and device buffers allocated once for the profile's max batch,
``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3``, and optionally CUDA-graph capture and replay per
batch size. Outputs mean exactly what the ONNX Runtime backend's do: ``prob`` (B,) and ``attention`` (B, N).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sranet.errors import ArtifactError, BackendError
from sranet.export.sidecar import check_sidecar, read_sidecar, sidecar_info
from sranet.runtime.artifact import INPUT_NAME, OUTPUT_NAMES
from sranet.runtime.backends.base import Backend


class TensorRTBackend(Backend):
    """Run a TensorRT plan.

    path         ``model.engine`` (or ``.plan``) with ``model.engine.json`` next to it.
    device       CUDA device index.
    cuda_graphs  capture ``execute_async_v3`` once per batch size and replay it (copies stay outside the graph).
    """

    name = "tensorrt"

    def __init__(self, path: str | os.PathLike, *, device: int | str = 0, cuda_graphs: bool = False):
        from sranet.export.tensorrt import import_tensorrt
        from sranet.runtime.cuda_buffers import CudaBuffers, device_env, import_cupy

        self.path = Path(path)
        index = _device_index(device)
        read_sidecar(self.path)  # a missing or malformed sidecar is reported even where TensorRT is absent
        trt = import_tensorrt()
        self._trt = trt
        sidecar = check_sidecar(self.path, device_env(trt.__version__, index))  # before deserialising
        self.sidecar = sidecar
        self.info = sidecar_info(sidecar, path=self.path)

        # TensorRT deserialises onto the current CUDA device: make it GPU `index` first, so that the engine, its
        # context and the buffers (allocated on `index` below) all live on the same GPU
        import_cupy().cuda.Device(index).use()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if sidecar.get("options", {}).get("version_compatible"):
            self._runtime.engine_host_code_allowed = True  # version-compatible plans embed the lean runtime
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise ArtifactError("TensorRT could not deserialise the plan (deserialize_cuda_engine returned None).",
                                path=self.path, hint="Rebuild it on this machine with `sranet export ... --engine`.")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise BackendError("TensorRT could not create an execution context (out of GPU memory?).", path=self.path)

        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if inputs != [INPUT_NAME] or set(outputs) != set(OUTPUT_NAMES):
            raise ArtifactError(f"plan has inputs {inputs} and outputs {outputs}; expected {INPUT_NAME!r} -> "
                                f"{list(OUTPUT_NAMES)}.", path=self.path)
        bmin, _, bmax = (tuple(s) for s in self.engine.get_tensor_profile_shape(INPUT_NAME, 0))
        self.min_batch, self.max_batch = int(bmin[0]), int(bmax[0])
        shapes, dtypes = {}, {}
        for n in names:
            shape = list(self.engine.get_tensor_shape(n))  # -1 for the dynamic batch
            shape[0] = self.max_batch
            shapes[n], dtypes[n] = tuple(shape), np.dtype(trt.nptype(self.engine.get_tensor_dtype(n)))
        self.buffers = CudaBuffers(shapes, dtypes, device=index)
        for n in names:  # addresses never change: buffers are allocated once for the max batch
            self.context.set_tensor_address(n, self.buffers[n].device_ptr)
        self.cuda_graphs = bool(cuda_graphs)
        self._shape_batch: int | None = None

    def _enqueue(self, stream_ptr: int) -> None:
        if not self.context.execute_async_v3(stream_ptr):
            raise BackendError("TensorRT execute_async_v3 failed; see the TensorRT log above.", path=self.path)

    def _infer(self, ct: np.ndarray) -> dict[str, np.ndarray]:
        B = ct.shape[0]
        if self._shape_batch != B:
            if not self.context.set_input_shape(INPUT_NAME, ct.shape):
                raise BackendError(f"TensorRT refused input shape {ct.shape} (profile batch {self.min_batch}.."
                                   f"{self.max_batch}).", path=self.path)
            self._shape_batch = B
        self.buffers.upload(INPUT_NAME, ct)
        if self.cuda_graphs:
            self.buffers.run_graph(B, self._enqueue)  # captured per batch size (after one plain run)
        else:
            self._enqueue(self.buffers.stream.ptr)
        out = {name: self.buffers.download(name, B) for name in OUTPUT_NAMES}
        self.buffers.synchronize()
        return {name: np.array(value, dtype=np.float32) for name, value in out.items()}

    def describe(self) -> dict[str, str]:
        gpu = self.sidecar.get("gpu", {})
        return {"backend": self.name, "precision": self.info.precision, "tensorrt": self._trt.__version__,
                "device": f"{gpu.get('name')} (sm {gpu.get('compute_capability')})",
                "build_path": str(self.sidecar.get("build", {}).get("path")), "cuda_graphs": str(self.cuda_graphs).lower()}

    def close(self) -> None:
        if getattr(self, "buffers", None) is not None:
            self.buffers.close()
        self.context = self.engine = None


def _device_index(device: int | str) -> int:
    if isinstance(device, int) and not isinstance(device, bool) and device >= 0:
        return device
    text = str(device)
    if text in ("cuda", "auto"):
        return 0
    if text.startswith("cuda:") and text[5:].isdigit():
        return int(text[5:])
    raise BackendError(f"tensorrt backend: device={device!r} is not a GPU index, 'cuda' or 'cuda:N'.",
                       hint="TensorRT runs on NVIDIA GPUs only; use the .onnx artifact for the CPU.")


__all__ = ["TensorRTBackend"]
