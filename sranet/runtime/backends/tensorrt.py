"""TensorRT and TensorRT-RTX backend for raw ``.engine`` / ``.plan`` files written by ``sranet export --engine``
(no torch).

The sidecar (``<engine>.json``) says which builder made the plan: ``tensorrt`` plans run with ``import tensorrt``,
``tensorrt-rtx`` plans with ``import tensorrt_rtx``; the API used here is common to both. Before the plan is
deserialised the sidecar is checked against this machine: a GPU and its driver at all, the runtime's flavour and
version, the CPU architecture and OS, the GPU (its model and compute capability, or for TensorRT-RTX its compute
capability among the plan's targets), and the plan's SHA-256; TensorRT-RTX then asks its own
``Runtime.get_engine_validity``. Then: named I/O tensors, one non-blocking CUDA stream, pinned host and device
buffers allocated once for the profile's max batch, ``set_input_shape`` / ``set_tensor_address`` /
``execute_async_v3``.

CUDA graphs: a captured graph is specific to the input shapes and the execution context's state it was captured
with (TensorRT developer guide, "CUDA Graphs"), so with ``cuda_graphs`` every batch size gets its own execution
context, whose input shape is set once and never changed, and its own graph. The contexts share one block of
activation memory (``ExecutionContextAllocationStrategy.USER_MANAGED`` + ``set_device_memory``), which is safe
because they run one after another on one stream. A batch size whose capture fails runs plain enqueues on its
context (``GraphBook``). Outputs mean exactly what the ONNX Runtime backend's do: ``prob`` (B,), ``attention`` (B, N).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from sranet.errors import ArtifactError, BackendError, EngineCompatibilityError
from sranet.runtime.artifact import INPUT_NAME, OUTPUT_NAMES
from sranet.runtime.backends.base import Backend
from sranet.runtime.sidecar import (
    check_sidecar,
    read_sidecar,
    rebuild_command,
    sidecar_flavour,
    sidecar_info,
    sidecar_targets,
)


class ContextPerBatch:
    """One execution context per batch size, made on first use by ``make(batch)`` (which sets its input shape once)
    and kept: the context a graph was captured with is never given another shape."""

    def __init__(self, make: Callable[[int], object]):
        self._make = make
        self.contexts: dict[int, object] = {}

    def get(self, batch: int):
        if batch not in self.contexts:
            self.contexts[batch] = self._make(batch)
        return self.contexts[batch]

    def clear(self) -> None:
        self.contexts.clear()


class TensorRTBackend(Backend):
    """Run a TensorRT or TensorRT-RTX plan (the contract's arguments: ``sranet.runtime.backends.base``).

    path         ``model.engine`` (or ``.plan``) with ``model.engine.json`` next to it.
    device       "cuda:N": the GPU to run on. The CPU is refused: a plan runs on an NVIDIA GPU only.
    threads      refused: there is no CPU thread count to set.
    cuda_graphs  one execution context and CUDA graph per batch size, captured once, replayed after (copies stay
                 outside the graph); a batch whose capture fails runs plain enqueues (``describe`` says so).
    max_batch    at most the plan profile's max (the default); buffers are allocated for it once.
    """

    name = "tensorrt"

    def __init__(self, path: str | os.PathLike, *, device: str = "cpu", threads: int | None = None,
                 cuda_graphs: bool = False, max_batch: int | None = None):
        from sranet.runtime.devices import device_env, import_tensorrt

        self.setup(path, device=device, threads=threads, cuda_graphs=cuda_graphs, max_batch=max_batch)
        if self.device.kind != "cuda":
            self.refuse("device", device, "a TensorRT plan runs on NVIDIA GPUs only.",
                        "Pass --device cuda:N, or run the .onnx artifact on the CPU.")
        if threads is not None:
            self.refuse("threads", threads, "a TensorRT plan runs on the GPU and takes no CPU thread count.",
                        "Leave --threads out for .engine/.plan artifacts.")
        sidecar = read_sidecar(self.path)  # a missing or malformed sidecar is reported even where TensorRT is absent
        self.flavour = sidecar_flavour(sidecar)
        trt = self._import(import_tensorrt, sidecar)
        self._trt = trt
        env = device_env(trt.__version__, self.device.index, flavour=self.flavour)  # no GPU or driver: BackendError
        self.sidecar = check_sidecar(self.path, env)  # before loading
        self.info = sidecar_info(self.sidecar, path=self.path)
        from sranet.runtime.cuda_buffers import import_cupy

        # TensorRT deserialises onto the current CUDA device: make it this GPU first, so that the engine, its
        # context and the buffers all live on the same GPU
        import_cupy().cuda.Device(self.device.index).use()
        self.cuda_graphs = cuda_graphs
        self._deserialise(trt, env)
        self._allocate(trt, max_batch)
        self._shape_batch: int | None = None
        self._per_batch = ContextPerBatch(self._context_for) if cuda_graphs else None

    def _import(self, import_tensorrt, sidecar):
        """The module of the plan's flavour; where it is missing, say so with the command that rebuilds the plan
        for the other one."""
        from sranet.errors import DependencyMissingError

        try:
            return import_tensorrt(self.flavour)
        except DependencyMissingError as exc:
            other = "tensorrt" if self.flavour == "tensorrt-rtx" else "tensorrt-rtx"
            raise DependencyMissingError(
                f"{exc.message} This plan was built by {'TensorRT-RTX' if self.flavour == 'tensorrt-rtx' else 'TensorRT'}"
                " and loads only there.", path=self.path,
                hint=f"{exc.hint} Or rebuild the plan for the runtime installed here: "
                     f"{rebuild_command(sidecar, self.path, flavour=other)}") from exc

    def _deserialise(self, trt, env) -> None:
        """Engine and execution context from the plan's bytes. Version-compatible plans carry their lean runtime
        (host code) and load only with ``engine_host_code_allowed``; a DLA plan needs the runtime's DLA core set
        before deserialising; TensorRT-RTX checks the plan's header against this GPU first."""
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        opts = self.sidecar.get("options", {})
        if opts.get("version_compatible"):
            self._runtime.engine_host_code_allowed = True
        if opts.get("dla_core") is not None:
            cores = int(getattr(self._runtime, "num_DLA_cores", 0))
            if opts["dla_core"] >= cores:
                raise EngineCompatibilityError(
                    f"was built for DLA core {opts['dla_core']}, and this machine has {cores} DLA core(s).",
                    path=self.path, hint=f"Rebuild it here: {rebuild_command(self.sidecar, self.path)}")
            self._runtime.DLA_core = int(opts["dla_core"])
        plan = self.path.read_bytes()
        if self.flavour == "tensorrt-rtx" and hasattr(self._runtime, "get_engine_validity"):
            validity, diagnostics = self._runtime.get_engine_validity(plan)
            if validity == trt.EngineValidity.INVALID:
                raise EngineCompatibilityError(
                    f"TensorRT-RTX {trt.__version__} says the plan is not valid on this {env.gpu_name} (compute "
                    f"capability {env.compute_capability}; diagnostics {_diagnostics(trt, diagnostics)}).",
                    path=self.path, hint=f"Rebuild it: {rebuild_command(self.sidecar, self.path, env=env)}")
        self.engine = self._runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise ArtifactError("TensorRT could not deserialise the plan (deserialize_cuda_engine returned None).",
                                path=self.path, hint="Rebuild it on this machine with `sranet export ... --engine`.")
        self.context = None  # with CUDA graphs every batch size has its own context (_context_for) instead
        if not self.cuda_graphs:
            self.context = self.engine.create_execution_context()
            if self.context is None:
                raise BackendError("TensorRT could not create an execution context (out of GPU memory?).",
                                   path=self.path)

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
        self._names = names
        for n in names if self.context is not None else ():  # addresses never change: allocated once for the max
            self.context.set_tensor_address(n, self.buffers[n].device_ptr)
        self._shared_memory = None

    def _context_for(self, batch: int):
        """A new execution context for batch size ``batch`` (CUDA graphs): the activation memory is the one block
        all these contexts share, the input shape is set here once, the I/O addresses are the shared buffers."""
        trt = self._trt
        context = self.engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        if context is None:
            raise BackendError(f"TensorRT could not create an execution context for batch {batch}.", path=self.path)
        size = int(getattr(self.engine, "device_memory_size_v2", 0) or getattr(self.engine, "device_memory_size", 0))
        if self._shared_memory is None:
            self._shared_memory = self.buffers.cp.empty(max(size, 1), dtype=np.uint8)  # one block for every context
        ptr = int(self._shared_memory.data.ptr)
        if hasattr(context, "set_device_memory"):  # TensorRT 10.1+ and TensorRT-RTX: address and size
            context.set_device_memory(ptr, int(self._shared_memory.nbytes))
        else:  # TensorRT 10.0: the write-only property
            context.device_memory = ptr
        if not context.set_input_shape(INPUT_NAME, (batch, *self.buffers[INPUT_NAME].host.shape[1:])):
            raise BackendError(f"TensorRT refused input batch {batch} (profile batch {self.min_batch}.."
                               f"{self.max_batch}).", path=self.path)
        for n in self._names:
            context.set_tensor_address(n, self.buffers[n].device_ptr)
        return context

    def _enqueue(self, context, stream_ptr: int) -> None:
        if not context.execute_async_v3(stream_ptr):
            raise BackendError("TensorRT execute_async_v3 failed; see the TensorRT log above.", path=self.path)

    def _infer(self, ct: np.ndarray) -> dict[str, np.ndarray]:
        B = ct.shape[0]
        self.buffers.upload(INPUT_NAME, ct)
        if self.cuda_graphs:
            context = self._per_batch.get(B)
            self.buffers.run_graph(B, lambda stream_ptr: self._enqueue(context, stream_ptr))
        else:
            if self._shape_batch != B:
                if not self.context.set_input_shape(INPUT_NAME, ct.shape):
                    raise BackendError(f"TensorRT refused input shape {ct.shape} (profile batch {self.min_batch}.."
                                       f"{self.max_batch}).", path=self.path)
                self._shape_batch = B
            self._enqueue(self.context, self.buffers.stream.ptr)
        out = {name: self.buffers.download(name, B) for name in OUTPUT_NAMES}
        self.buffers.synchronize()
        return {name: np.array(value, dtype=np.float32) for name, value in out.items()}

    def describe(self) -> dict[str, str]:
        gpu = self.sidecar.get("gpu", {})
        where = (f"targets {', '.join(sidecar_targets(self.sidecar))}" if self.flavour == "tensorrt-rtx" else
                 f"{gpu.get('name')}, sm {gpu.get('compute_capability')}")
        out = {"backend": self.name, "flavour": self.flavour, "precision": self.info.precision,
               "tensorrt": self._trt.__version__, "device": f"{self.device} (plan: {where})",
               "build_path": str(self.sidecar.get("build", {}).get("path")), "cuda_graphs": str(self.cuda_graphs).lower()}
        if self.cuda_graphs and self.buffers.graph_book.fallbacks:
            out["cuda_graph_fallbacks"] = "; ".join(f"batch {k}: {v}" for k, v in self.buffers.graph_book.fallbacks.items())
        return out

    def close(self) -> None:
        if getattr(self, "_per_batch", None) is not None:
            self._per_batch.clear()
        if getattr(self, "buffers", None) is not None:
            self.buffers.close()
        self._shared_memory = None
        self.context = self.engine = None


def _diagnostics(trt, bits: int) -> str:
    """EngineInvalidityDiagnostics bits -> their names (e.g. 'UNSUPPORTED_CC')."""
    names = [name for name, member in trt.EngineInvalidityDiagnostics.__members__.items() if int(bits) & int(member)]
    return ", ".join(names) or str(int(bits))


__all__ = ["ContextPerBatch", "TensorRTBackend"]
