"""PyTorch backend: the reference runtime, and the GPU runtime for machines without TensorRT.

Loads a training checkpoint (``.pt``) through ``sranet.train.checkpoint.load_checkpoint`` and runs SRANet on the CPU
or a CUDA GPU, optionally under autocast (fp16/bf16), with ``torch.compile`` or with CUDA-graph capture and replay.
torch is imported inside ``__init__`` only, so importing this module stays light.

Nothing is changed behind the user's back: asking for CUDA without a GPU, or for CUDA graphs on the CPU, is a
``BackendError``, never a silent fallback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from sranet.config import ModelConfig, PreprocessConfig
from sranet.errors import ArtifactError, BackendError, DependencyMissingError, check_choice
from sranet.runtime.artifact import ArtifactInfo
from sranet.runtime.backends.base import Backend

DTYPES = ("fp32", "fp16", "bf16")
# A captured graph holds a static input of (B, 1, S, S, S) per batch size; cap how many sizes we keep.
MAX_GRAPHS = 4


def checkpoint_info(ckpt: Any, *, precision: str = "fp32", path: str | os.PathLike | None = None) -> ArtifactInfo:
    """ArtifactInfo (model config, preprocess config, threshold) of a loaded checkpoint.

    Accepts the configs as objects or as dicts (the ``torch.save`` dict stores dicts; see docs/CONTRACTS.md).
    """
    def get(name: str):
        value = ckpt.get(name) if isinstance(ckpt, dict) else getattr(ckpt, name, None)
        if value is None:
            raise ArtifactError(f"checkpoint has no {name!r}; it was not written by `sranet train`.", path=path)
        return value

    model = get("model_config")
    prep = get("preprocess_config")
    model = model if isinstance(model, ModelConfig) else ModelConfig.from_dict(dict(model))
    prep = prep if isinstance(prep, PreprocessConfig) else PreprocessConfig.from_dict(dict(prep))
    return ArtifactInfo(model=model, preprocess=prep, threshold=float(get("threshold")), precision=precision)


def resolve_device(device: str):
    """'cpu' | 'cuda' | 'cuda:N' | 'auto' -> torch.device. CUDA without a GPU is a BackendError (no fallback)."""
    import torch

    if not isinstance(device, str) or not (device in ("cpu", "cuda", "auto") or device.startswith("cuda:")):
        raise BackendError(f"torch backend: device={device!r} is not 'cpu', 'cuda', 'cuda:N' or 'auto'.")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BackendError(
                f"torch backend: device={device!r} was asked for, but PyTorch sees no CUDA GPU "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}).",
                hint="Use --device cpu, or install a CUDA build of PyTorch on a machine with an NVIDIA GPU.",
            )
        dev = torch.device(device)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BackendError(
                f"torch backend: device={device!r} does not exist; this machine has {torch.cuda.device_count()} GPU(s)."
            )
        return dev
    return torch.device("cpu")


class TorchBackend(Backend):
    """Run a ``.pt`` checkpoint with PyTorch.

    path         training checkpoint (``sranet train`` writes RUN/best.pt).
    device       'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when available).
    dtype        'fp32', or 'fp16' / 'bf16' autocast (weights stay fp32; outputs are returned as float32).
    cuda_graphs  capture the forward pass once per batch size and replay it (CUDA only; static input buffer).
    compile      wrap the model with ``torch.compile`` (first call compiles; slow to start).
    threads      CPU threads for torch (0 = leave torch's default).
    """

    name = "torch"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        device: str = "cpu",
        dtype: str = "fp32",
        cuda_graphs: bool = False,
        compile: bool = False,
        threads: int = 0,
    ):
        try:
            import torch
        except ImportError as exc:
            raise DependencyMissingError(
                "the PyTorch backend needs torch, which is not installed.", hint="pip install 'sranet[train]'"
            ) from exc
        try:
            from sranet.train.checkpoint import load_checkpoint
        except ImportError as exc:
            raise DependencyMissingError(f"cannot import sranet.train.checkpoint ({exc}).") from exc

        check_choice("torch backend dtype", dtype, DTYPES, error=BackendError)
        self.path = Path(path)
        self.device = resolve_device(device)
        if cuda_graphs and self.device.type != "cuda":
            raise BackendError(
                f"torch backend: cuda_graphs=True needs a CUDA device, got device={str(self.device)!r}.",
                hint="Drop --cuda-graphs, or run with --device cuda.",
            )
        if cuda_graphs and compile:
            raise BackendError(
                "torch backend: choose either cuda_graphs or compile, not both "
                "(torch.compile(mode='reduce-overhead') already uses CUDA graphs)."
            )
        if threads and threads > 0:
            torch.set_num_threads(int(threads))

        ckpt = load_checkpoint(self.path)
        self.info = checkpoint_info(ckpt, precision=dtype, path=self.path)
        model = ckpt.build_model()
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.dtype = dtype
        self.cuda_graphs = bool(cuda_graphs)
        self.compiled = bool(compile)
        self._amp = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
        self._net = torch.compile(self.model) if compile else self.model
        self._graphs: dict[int, tuple[Any, Any, Any, Any]] = {}  # batch -> (graph, static_in, prob, attention)
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

    # -- the forward pass -------------------------------------------------------------------------------------------
    def _forward(self, x):
        """x: (B, 1, S, S, S) float32 on self.device -> prob (B,) float32, attention (B, N) float32 (device tensors)."""
        import torch

        # autocast's weight-cast cache must be off inside a CUDA-graph capture (PyTorch's CUDA-graph notes)
        with torch.autocast(self.device.type, dtype=self._amp or torch.float32, enabled=self._amp is not None,
                            cache_enabled=not self.cuda_graphs):
            out = self._net(x)
        return torch.sigmoid(out.logit.float()), out.attention.float()

    def _capture(self, batch: int):
        """Capture one CUDA graph for a fixed batch: static input (B,1,S,S,S) -> static prob (B,), attention (B,N)."""
        import torch

        S = self.info.model.input_size
        static_in = torch.zeros((batch, 1, S, S, S), device=self.device, dtype=torch.float32)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(3):  # warm-up: cuDNN autotuning and allocator pools, outside the capture
                self._forward(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph):
            prob, attention = self._forward(static_in)
        if len(self._graphs) >= MAX_GRAPHS:
            self._graphs.pop(next(iter(self._graphs)))
        self._graphs[batch] = (graph, static_in, prob, attention)
        return self._graphs[batch]

    def _infer(self, ct: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        x = torch.from_numpy(ct)
        if not self.cuda_graphs:
            with torch.inference_mode():
                if self._stream is not None:
                    with torch.cuda.stream(self._stream):
                        prob, attention = self._forward(x.to(self.device, non_blocking=True))
                    self._stream.synchronize()
                else:
                    prob, attention = self._forward(x)
            return {"prob": prob.cpu().numpy(), "attention": attention.cpu().numpy()}

        graph, static_in, prob, attention = self._graphs.get(ct.shape[0]) or self._capture(ct.shape[0])
        static_in.copy_(x, non_blocking=False)
        graph.replay()
        return {"prob": prob.cpu().numpy().copy(), "attention": attention.cpu().numpy().copy()}

    def describe(self) -> dict[str, str]:
        import torch

        device = str(self.device)
        if self.device.type == "cuda":
            device = f"{device} ({torch.cuda.get_device_name(self.device)})"
        return {
            "backend": self.name,
            "device": device,
            "precision": self.dtype,
            "cuda_graphs": str(self.cuda_graphs).lower(),
            "compile": str(self.compiled).lower(),
            "torch": torch.__version__,
        }

    def close(self) -> None:
        self._graphs.clear()
        self.model = self._net = None


__all__ = ["DTYPES", "TorchBackend", "checkpoint_info", "resolve_device"]
