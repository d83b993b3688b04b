"""One interface for every runtime (Polygraphy-style runners, Ultralytics-style suffix registry).

``Backend.infer`` checks the input once, here, then calls the backend's ``_infer``. Backends register by artifact
suffix; ``open_backend(path)`` picks the class from the suffix and imports its module only then, so opening an
``.onnx`` never imports torch or tensorrt.
"""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

from sranet.errors import ArtifactError, InputError, suggest
from sranet.runtime.artifact import INPUT_NAME, OUTPUT_NAMES, ArtifactInfo

# suffix -> "module:Class"; modules are imported lazily by open_backend
BACKENDS: dict[str, str] = {
    ".onnx": "sranet.runtime.backends.onnxruntime:OnnxRuntimeBackend",
    ".pt": "sranet.runtime.backends.torch:TorchBackend",
    ".engine": "sranet.runtime.backends.tensorrt:TensorRTBackend",
    ".plan": "sranet.runtime.backends.tensorrt:TensorRTBackend",
    ".xml": "sranet.runtime.backends.openvino:OpenVinoBackend",  # OpenVINO IR (+ .bin), `sranet export --openvino`
}


class Backend(ABC):
    """A loaded artifact that maps ``ct`` (B, 1, S, S, S) float32 to ``prob`` (B,) and ``attention`` (B, N).

    Subclasses set ``name``, fill ``self.info`` (ArtifactInfo) in ``__init__`` and implement ``_infer``.
    ``max_batch`` is None when any batch size is accepted.
    """

    name: ClassVar[str] = "backend"
    info: ArtifactInfo
    path: Path
    max_batch: int | None = None
    min_batch: int = 1

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
                "Split the batch, or rebuild the engine with a wider --batch MIN:OPT:MAX profile."
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


def open_backend(path: str | os.PathLike, **options) -> Backend:
    """Open an artifact with the backend its suffix names. ``options`` go to that backend (e.g. providers, device)."""
    if not Path(path).is_file():
        raise ArtifactError("does not exist or is not a file.", path=path, hint="Check the path to the artifact.")
    return backend_class(path)(path, **options)


__all__ = ["BACKENDS", "INPUT_NAME", "OUTPUT_NAMES", "Backend", "backend_class", "open_backend"]
