"""TensorRT backend for raw ``.engine`` / ``.plan`` files written by ``sranet export --engine`` (no torch).

Before the plan is deserialised its sidecar (``<engine>.json``) is checked against this machine: TensorRT version,
GPU model and compute capability, and the plan's SHA-256. Then: named I/O tensors, one execution context, one
non-blocking CUDA stream, pinned host and device buffers allocated once for the profile's max batch,
``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3``, and optionally CUDA-graph capture and replay per
batch size. Outputs mean exactly what the ONNX Runtime backend's do: ``prob`` (B,) and ``attention`` (B, N).
"""

from __future__ import annotations

import os

import numpy as np

from sranet.errors import ArtifactError, BackendError
from sranet.runtime.artifact import INPUT_NAME, OUTPUT_NAMES
from sranet.runtime.backends.base import Backend
from sranet.runtime.sidecar import check_sidecar, read_sidecar, sidecar_info


class TensorRTBackend(Backend):
    """Run a TensorRT plan (the contract's arguments: ``sranet.runtime.backends.base``).

    path         ``model.engine`` (or ``.plan``) with ``model.engine.json`` next to it.
    device       "cuda:N": the GPU to run on. The CPU is refused: a plan runs on an NVIDIA GPU only.
    threads      refused: there is no CPU thread count to set.
    cuda_graphs  capture ``execute_async_v3`` once per batch size and replay it (copies stay outside the graph).
    max_batch    at most the plan profile's max (the default); buffers are allocated for it once.
    """

    name = "tensorrt"

    def __init__(self, path: str | os.PathLike, *, device: str = "cpu", threads: int | None = None,
                 cuda_graphs: bool = False, max_batch: int | None = None):
        from sranet.runtime.cuda_buffers import import_cupy
        from sranet.runtime.devices import device_env, import_tensorrt

        self.setup(path, device=device, threads=threads, cuda_graphs=cuda_graphs, max_batch=max_batch)
        if self.device.kind != "cuda":
            self.refuse("device", device, "a TensorRT plan runs on NVIDIA GPUs only.",
                        "Pass --device cuda:N, or run the .onnx artifact on the CPU.")
        if threads is not None:
            self.refuse("threads", threads, "a TensorRT plan runs on the GPU and takes no CPU thread count.",
                        "Leave --threads out for .engine/.plan artifacts.")
        read_sidecar(self.path)  # a missing or malformed sidecar is reported even where TensorRT is absent
        trt = import_tensorrt()
        self._trt = trt
        self.sidecar = check_sidecar(self.path, device_env(trt.__version__, self.device.index))  # before loading
        self.info = sidecar_info(self.sidecar, path=self.path)
        # TensorRT deserialises onto the current CUDA device: make it this GPU first, so that the engine, its
        # context and the buffers all live on the same GPU
        import_cupy().cuda.Device(self.device.index).use()
        self._deserialise(trt)
        self._allocate(trt, max_batch)
        self.cuda_graphs = cuda_graphs
        self._shape_batch: int | None = None

    def _deserialise(self, trt) -> None:
        """Engine and execution context from the plan's bytes (version-compatible plans run the lean runtime)."""
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if self.sidecar.get("options", {}).get("version_compatible"):
            self._runtime.engine_host_code_allowed = True  # version-compatible plans embed the lean runtime
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise ArtifactError("TensorRT could not deserialise the plan (deserialize_cuda_engine returned None).",
                                path=self.path, hint="Rebuild it on this machine with `sranet export ... --engine`.")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise BackendError("TensorRT could not create an execution context (out of GPU memory?).", path=self.path)

    def _allocate(self, trt, max_batch: int | None) -> None:
        """Check the I/O names, settle the batch range, allocate buffers once for the max batch, bind addresses."""
        from sranet.runtime.cuda_buffers import CudaBuffers

        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if inputs != [INPUT_NAME] or set(outputs) != set(OUTPUT_NAMES):
            raise ArtifactError(f"plan has inputs {inputs} and outputs {outputs}; expected {INPUT_NAME!r} -> "
                                f"{list(OUTPUT_NAMES)}.", path=self.path)
        bmin, _, bmax = (int(s[0]) for s in self.engine.get_tensor_profile_shape(INPUT_NAME, 0))
        if max_batch is not None and not bmin <= max_batch <= bmax:
            self.refuse("max_batch", max_batch, f"the plan's optimisation profile takes batches {bmin}..{bmax}.",
                        f"Pass a max_batch in that range, or rebuild the plan with --profile {bmin}:{bmin}:{max_batch}.")
        self.min_batch, self.max_batch = bmin, max_batch or bmax
        shapes, dtypes = {}, {}
        for n in names:
            shape = list(self.engine.get_tensor_shape(n))  # -1 for the dynamic batch
            shape[0] = self.max_batch
            shapes[n], dtypes[n] = tuple(shape), np.dtype(trt.nptype(self.engine.get_tensor_dtype(n)))
        self.buffers = CudaBuffers(shapes, dtypes, device=self.device.index)
        for n in names:  # addresses never change: buffers are allocated once for the max batch
            self.context.set_tensor_address(n, self.buffers[n].device_ptr)

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
                "device": f"{self.device} ({gpu.get('name')}, sm {gpu.get('compute_capability')})",
                "build_path": str(self.sidecar.get("build", {}).get("path")), "cuda_graphs": str(self.cuda_graphs).lower()}

    def close(self) -> None:
        if getattr(self, "buffers", None) is not None:
            self.buffers.close()
        self.context = self.engine = None


__all__ = ["TensorRTBackend"]
