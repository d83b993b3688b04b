"""PyTorch backend for ``.pt`` checkpoints: the reference runtime, and the GPU runtime for machines without TensorRT.

It lives here, beside the model it runs, because it needs SRANet; the runtime's suffix registry names it as
"sranet.model.backend:TorchBackend" and imports it only when a ``.pt`` is opened. It loads a training checkpoint
(``sranet.model.checkpoint.load_checkpoint``) and runs SRANet on the CPU or a CUDA GPU, optionally under autocast
(fp16/bf16) or with CUDA-graph capture and replay.

Nothing is changed behind the user's back: asking for CUDA without a GPU, or for CUDA graphs on the CPU, is an
error, never a silent fallback.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from sranet.errors import BackendError, InputError, check_choice
from sranet.model.checkpoint import load_checkpoint
from sranet.runtime.backends.base import Backend

DTYPES = ("fp32", "fp16", "bf16")
# A captured graph holds a static input of (B, 1, S, S, S) per batch size; cap how many sizes we keep.
MAX_GRAPHS = 4


class TorchBackend(Backend):
    """Run a ``.pt`` checkpoint with PyTorch (the contract's arguments: ``sranet.runtime.backends.base``).

    path         training checkpoint (``sranet train`` writes RUN/best.pt).
    device       "cpu" or "cuda:N"; a GPU that PyTorch does not see is an error.
    threads      CPU threads for torch (None = torch's default). Process-wide: ``torch.set_num_threads``.
    cuda_graphs  capture the forward pass once per batch size and replay it (CUDA only; static input buffer).
    max_batch    the largest batch ``infer`` accepts (None = any).

    Options (``OPTIONS``):
    dtype        "fp32", or "fp16" / "bf16" autocast (weights stay fp32; outputs are returned as float32).
    """

    name = "torch"
    OPTIONS = ("dtype",)

    def __init__(self, path: str | os.PathLike, *, device: str = "cpu", threads: int | None = None,
                 cuda_graphs: bool = False, max_batch: int | None = None, dtype: str = "fp32"):
        self.setup(path, device=device, threads=threads, cuda_graphs=cuda_graphs, max_batch=max_batch)
        check_choice("torch backend dtype", dtype, DTYPES, error=InputError)
        self.torch_device = self._torch_device()
        if threads is not None:
            torch.set_num_threads(threads)
        ckpt = load_checkpoint(self.path)
        self.info = ckpt.artifact_info(precision=dtype)
        self.model = ckpt.build_model().to(self.torch_device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.dtype = dtype
        self.cuda_graphs = cuda_graphs
        self._amp = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
        self._graphs: dict[int, tuple[Any, Any, Any, Any]] = {}  # batch -> (graph, static_in, prob, attention)
        self._stream = torch.cuda.Stream(self.torch_device) if self.device.kind == "cuda" else None

    def _torch_device(self) -> torch.device:
        """``self.device`` as a torch.device; a GPU PyTorch cannot see is a BackendError naming the build."""
        if self.device.kind == "cpu":
            return torch.device("cpu")
        if not torch.cuda.is_available():
            raise BackendError(
                f"torch backend: device {self.device} was asked for, but PyTorch sees no CUDA GPU "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}).", path=self.path,
                hint="Use --device cpu, or install a CUDA build of PyTorch on a machine with an NVIDIA GPU.",
            )
        if self.device.index >= torch.cuda.device_count():
            raise BackendError(f"torch backend: device {self.device} does not exist; this machine has "
                               f"{torch.cuda.device_count()} GPU(s).", path=self.path)
        return torch.device("cuda", self.device.index)

    # -- the forward pass -------------------------------------------------------------------------------------------
    def _forward(self, x):
        """x: (B, 1, S, S, S) float32 on self.device -> prob (B,) float32, attention (B, N) float32 (device tensors)."""
        # autocast's weight-cast cache must be off inside a CUDA-graph capture
        with torch.autocast(self.torch_device.type, dtype=self._amp or torch.float32, enabled=self._amp is not None,
                            cache_enabled=not self.cuda_graphs):
            out = self.model(x)
        return torch.sigmoid(out.logit.float()), out.attention.float()

    def _capture(self, batch: int):
        """Capture one CUDA graph for a fixed batch: static input (B,1,S,S,S) -> static prob (B,), attention (B,N)."""
        S = self.info.model.input_size
        static_in = torch.zeros((batch, 1, S, S, S), device=self.torch_device, dtype=torch.float32)
        side = torch.cuda.Stream(self.torch_device)
        side.wait_stream(torch.cuda.current_stream(self.torch_device))
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(3):  # warm-up: cuDNN autotuning and allocator pools, outside the capture
                self._forward(static_in)
        torch.cuda.current_stream(self.torch_device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph):
            prob, attention = self._forward(static_in)
        if len(self._graphs) >= MAX_GRAPHS:
            self._graphs.pop(next(iter(self._graphs)))
        self._graphs[batch] = (graph, static_in, prob, attention)
        return self._graphs[batch]

    def _infer(self, ct: np.ndarray) -> dict[str, np.ndarray]:
        x = torch.from_numpy(ct)
        if not self.cuda_graphs:
            with torch.inference_mode():
                if self._stream is not None:
                    with torch.cuda.stream(self._stream):
                        prob, attention = self._forward(x.to(self.torch_device, non_blocking=True))
                    self._stream.synchronize()
                else:
                    prob, attention = self._forward(x)
            return {"prob": prob.cpu().numpy(), "attention": attention.cpu().numpy()}

        graph, static_in, prob, attention = self._graphs.get(ct.shape[0]) or self._capture(ct.shape[0])
        static_in.copy_(x, non_blocking=False)
        graph.replay()
        return {"prob": prob.cpu().numpy().copy(), "attention": attention.cpu().numpy().copy()}

    def describe(self) -> dict[str, str]:
        device = str(self.device)
        if self.device.kind == "cuda":
            device = f"{device} ({torch.cuda.get_device_name(self.torch_device)})"
        return {
            "backend": self.name,
            "device": device,
            "precision": self.dtype,
            "cuda_graphs": str(self.cuda_graphs).lower(),
            "torch": torch.__version__,
        }

    def close(self) -> None:
        self._graphs.clear()
        self.model = None


__all__ = ["DTYPES", "TorchBackend"]
