"""One interface for every runtime (Polygraphy-style runners, Ultralytics-style suffix registry).

The contract, the same names and meanings for every backend (ONNX Runtime, PyTorch, TensorRT and any later one):

    Cls(path, *, device="cpu", threads=None, cuda_graphs=False, max_batch=None, **OPTIONS)

device       "cpu" or "cuda:N" (``sranet.runtime.devices.parse_device``; "cuda" is "cuda:0").
threads      CPU threads for inference; None = the library's own default.
cuda_graphs  capture the forward pass once per batch size and replay it (GPU only).
max_batch    the largest batch ``infer`` accepts; None = whatever the artifact allows. GPU backends size their
             buffers and optimisation profiles by it.
OPTIONS      the few settings one runtime has and the others do not, named in the class's ``OPTIONS`` and
             documented there (e.g. ONNX Runtime's ``provider``, PyTorch's ``dtype``).

A backend that cannot honour an option (threads for a TensorRT plan, CUDA graphs on the CPU, a device it does not
run on) raises ``InputError`` naming the option, the artifact and what to do, never a silent change.

``Backend.infer`` checks the input once, here, then calls the backend's ``_infer``. Backends register by artifact
suffix in ``BACKENDS`` as "module:Class" strings; ``open_backend(path)`` imports the module only then, so opening an
``.onnx`` never imports torch or tensorrt. The PyTorch backend lives in ``sranet.model.backend`` because it needs
the model, which sits above the runtime; the registry names it by string and never imports it at module level.
"""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import numpy as np

from sranet.errors import ArtifactError, InputError, suggest
from sranet.runtime.artifact import INPUT_NAME, OUTPUT_NAMES, ArtifactInfo
from sranet.runtime.devices import Device, parse_device
from sranet.runtime.limits import THREADS_PER_CPU, max_threads

# suffix -> "module:Class"; modules are imported lazily by open_backend
BACKENDS: dict[str, str] = {
    ".onnx": "sranet.runtime.backends.onnxruntime:OnnxRuntimeBackend",
    ".pt": "sranet.model.backend:TorchBackend",
    ".engine": "sranet.runtime.backends.tensorrt:TensorRTBackend",
    ".plan": "sranet.runtime.backends.tensorrt:TensorRTBackend",
    ".xml": "sranet.runtime.backends.openvino:OpenVinoBackend",  # OpenVINO IR (+ .bin), `sranet export --openvino`
}


class Backend(ABC):
    """A loaded artifact that maps ``ct`` (B, 1, S, S, S) float32 to ``prob`` (B,) and ``attention`` (B, N).

    Subclasses set ``name`` and ``OPTIONS``, take the contract's arguments (module docstring) in ``__init__``
    (``self.setup`` checks the common ones), fill ``self.info`` (ArtifactInfo) and implement ``_infer``.
    ``max_batch`` is None when any batch size is accepted.
    """

    name: ClassVar[str] = "backend"
    OPTIONS: ClassVar[tuple[str, ...]] = ()  # backend-specific keyword options open_backend passes through
    info: ArtifactInfo
    path: Path
    device: Device = Device("cpu")
    max_batch: int | None = None
    min_batch: int = 1

    @abstractmethod
    def __init__(self, path: str | os.PathLike, *, device: str = "cpu", threads: int | None = None,
                 cuda_graphs: bool = False, max_batch: int | None = None) -> None:
        """Open the artifact at ``path`` (see the module docstring for the arguments)."""

    def setup(self, path: str | os.PathLike, *, device: str, threads: int | None, cuda_graphs: bool,
              max_batch: int | None) -> Device:
        """Check the contract's arguments, set ``path``, ``device`` and ``max_batch``; return the parsed device."""
        self.path = Path(path)
        self.device = parse_device(device)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            self.refuse("threads", threads, "must be a positive integer, or None for the library's default.",
                        "Pass --threads N with N >= 1, or leave it out.")
        if threads is not None and threads > max_threads():
            self.refuse("threads", threads, f"that is more than {THREADS_PER_CPU} per CPU on this machine "
                        f"({os.cpu_count()} CPUs, so at most {max_threads()}); more threads only wait for the same "
                        "cores.", f"Pass --threads {max_threads()} or fewer.")
        if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1):
            self.refuse("max_batch", max_batch, "must be a positive integer, or None for any batch.",
                        "Pass a batch size of 1 or more.")
        if not isinstance(cuda_graphs, bool):
            self.refuse("cuda_graphs", cuda_graphs, "must be True or False.", "Pass cuda_graphs=True or False.")
        if cuda_graphs and self.device.kind != "cuda":
            self.refuse("cuda_graphs", True, f"CUDA graphs need a GPU; this backend was asked for device "
                        f"{self.device}.", "Drop --cuda-graphs, or run with --device cuda:N.")
        self.max_batch = max_batch
        return self.device

    def refuse(self, option: str, value: Any, why: str, fix: str) -> NoReturn:
        """Raise the InputError for an option this backend cannot honour: the option, the artifact, what to do."""
        raise InputError(f"{self.name} backend: {option}={value!r}: {why}", path=getattr(self, "path", None),
                         hint=fix)

    def infer(self, ct: np.ndarray) -> dict[str, np.ndarray]:
        """ct: (B, 1, S, S, S) float32, z-scored as ``info.preprocess`` says. Returns {"prob": (B,), "attention": (B, N)}."""
        ct = self.check_input(ct)
        out = self._infer(ct)
        return {"prob": np.asarray(out["prob"], dtype=np.float32).reshape(-1),
                "attention": np.asarray(out["attention"], dtype=np.float32).reshape(ct.shape[0], -1)}

    def check_input(self, ct: np.ndarray) -> np.ndarray:
        S = self.info.model.input_size
        if not isinstance(ct, np.ndarray):
            raise InputError(f"{self.name}: input {INPUT_NAME!r} must be a numpy array, got {type(ct).__name__}.")
        if ct.ndim != 5 or ct.shape[1:] != (1, S, S, S):
            raise InputError(
                f"{self.name}: input {INPUT_NAME!r} has shape {ct.shape}; expected (B, 1, {S}, {S}, {S}). "
                "Preprocess the volume with the artifact's preprocessing config first."
            )
        if ct.dtype != np.float32:
            raise InputError(f"{self.name}: input {INPUT_NAME!r} has dtype {ct.dtype}; expected float32.")
        B = ct.shape[0]
        if B < self.min_batch or (self.max_batch is not None and B > self.max_batch):
            raise InputError(
                f"{self.name}: batch size {B} is outside this artifact's range [{self.min_batch}, {self.max_batch}]. "
                "Split the batch, or rebuild the engine with a wider --profile MIN:OPT:MAX."
            )
        if not np.isfinite(ct).all():
            raise InputError(f"{self.name}: input {INPUT_NAME!r} contains NaN or infinite values.")
        return np.ascontiguousarray(ct)

    @abstractmethod
    def _infer(self, ct: np.ndarray) -> dict[str, np.ndarray]:
        """Run the checked input; return arrays for every name in OUTPUT_NAMES."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release sessions, engines and device buffers."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> dict[str, str]:
        """Short, JSON-able description of what runs (provider, device, precision) for reports."""
        return {"backend": self.name, "precision": self.info.precision}


def backend_class(path: str | os.PathLike) -> type[Backend]:
    suffix = Path(path).suffix.lower()
    if suffix not in BACKENDS:
        raise ArtifactError(
            f"has suffix {suffix!r}; sranet runs {', '.join(sorted(BACKENDS))} artifacts.{suggest(suffix, BACKENDS)}",
            path=path,
            hint="Export one with `sranet export CHECKPOINT --out model.onnx`.",
        )
    module, cls = BACKENDS[suffix].split(":")
    return getattr(importlib.import_module(module), cls)


def open_backend(path: str | os.PathLike, *, device: str = "cpu", threads: int | None = None,
                 cuda_graphs: bool = False, max_batch: int | None = None, trusted_keys: Any = None,
                 **options: Any) -> Backend:
    """Open an artifact with the backend its suffix names (arguments: the module docstring).

    ``options`` are backend-specific settings; each must be one the backend's class lists in ``OPTIONS``, else
    InputError names it and the artifact (never passed on to be ignored). Before the backend is built, the
    artifact's content is checked against its recorded digest, and with ``trusted_keys`` (Ed25519 public keys or
    PEM paths) its signature (``sranet.runtime.integrity.verify_artifact``): IntegrityError, nothing runs.
    """
    if not Path(path).is_file():
        raise ArtifactError("does not exist or is not a file.", path=path, hint="Check the path to the artifact.")
    cls = backend_class(path)
    for key, value in options.items():
        if key not in cls.OPTIONS:
            takes = f"it takes {', '.join(cls.OPTIONS)}" if cls.OPTIONS else "it takes no backend-specific options"
            raise InputError(f"{key}={value!r} (--{key.replace('_', '-')}) is not a setting of the {cls.name} "
                             f"backend that runs {Path(path).suffix} artifacts; {takes}.{suggest(key, cls.OPTIONS)}",
                             path=path, hint="Leave it out for this artifact.")
    from sranet.runtime.integrity import verify_artifact

    verify_artifact(path, trusted_keys)
    return cls(path, device=device, threads=threads, cuda_graphs=cuda_graphs, max_batch=max_batch, **options)


__all__ = ["BACKENDS", "INPUT_NAME", "OUTPUT_NAMES", "Backend", "backend_class", "open_backend"]
