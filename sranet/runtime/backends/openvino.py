"""OpenVINO backend for x86 CPUs (Intel and AMD): an OpenVINO IR (``.xml`` + ``.bin``) written by
``sranet export --openvino``, or an fp32 ``.onnx`` read directly.

What it sets, never leaving it to OpenVINO's defaults:
  INFERENCE_PRECISION_HINT   from the artifact: f32 for fp32, bf16 for a parity-gated bf16 IR. OpenVINO's own default
                             on CPUs with AVX512_BF16 or AMX is bf16, so an fp32 model left alone would run in bf16
                             without anyone having checked it.
  PERFORMANCE_HINT           LATENCY (one stream: one inference uses all its threads).
  INFERENCE_NUM_THREADS      ``threads`` (None or 0: OpenVINO's default, one per core).
The model is compiled for a static batch, once per batch size met (a compile takes well under a second); a static
shape lets OpenVINO pick its kernels ahead of time.

Nothing is written: ``import openvino`` normally starts Intel's telemetry client, which creates ``~/intel`` and sends
usage events; ``import_openvino`` imports it with the telemetry package blocked (OpenVINO then uses its own no-op
stub), no model cache is configured, and the IR is only read.
"""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from sranet.errors import ArtifactError, BackendError, DependencyMissingError
from sranet.runtime.artifact import INPUT_NAME, OUTPUT_NAMES, ArtifactInfo
from sranet.runtime.backends.base import Backend

TELEMETRY_MODULE = "openvino_telemetry"
RT_INFO_SECTION = "sranet"  # the IR keeps ArtifactInfo.to_metadata() under <rt_info><sranet>
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}  # artifact precision -> INFERENCE_PRECISION_HINT
MAX_COMPILED = 4  # static-batch compilations kept
INSTALL_HINT = "pip install 'sranet[openvino]' (the openvino package from PyPI)."


def import_openvino():
    """``import openvino`` without its telemetry: the ``openvino_telemetry`` package is hidden during the import, so
    OpenVINO's model-conversion tools bind their no-op stub and neither ``~/intel`` nor a network event is created.
    The block is lifted afterwards (the host application's own imports are unaffected). If the host imported
    openvino before, that import already decided, and this returns the loaded module."""
    if "openvino" in sys.modules:
        return sys.modules["openvino"]
    blocked = TELEMETRY_MODULE not in sys.modules
    if blocked:
        sys.modules[TELEMETRY_MODULE] = None  # `import openvino_telemetry` now raises ImportError
    try:
        import openvino
    except ImportError as exc:
        raise DependencyMissingError("openvino is not installed; it runs .xml (OpenVINO IR) artifacts.",
                                     hint=INSTALL_HINT) from exc
    finally:
        if blocked and sys.modules.get(TELEMETRY_MODULE, 0) is None:
            del sys.modules[TELEMETRY_MODULE]
    return openvino


def read_info(path: str | os.PathLike) -> ArtifactInfo:
    """ArtifactInfo of an IR (its ``<rt_info><sranet>`` entries, read with the standard library) or of an ONNX
    model (its ``metadata_props``)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        from sranet.runtime.backends.onnxruntime import read_info as read_onnx_info

        return read_onnx_info(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise ArtifactError(f"is not a readable OpenVINO IR ({type(exc).__name__}: {exc}).", path=path,
                            hint="Export it again with `sranet export CHECKPOINT --target openvino-cpu`.") from exc
    section = root.find(f"rt_info/{RT_INFO_SECTION}")
    meta = {} if section is None else {child.tag: child.get("value", "") for child in section}
    return ArtifactInfo.from_metadata(meta, path=path)


def cpu_supports_bf16(core) -> bool:
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoBackend(Backend):
    """Runs an OpenVINO IR (``.xml`` with its ``.bin``) or an fp32 ``.onnx`` on the CPU with OpenVINO.

    device       "cpu" only (an NVIDIA GPU is TensorRT's or ONNX Runtime's).
    threads      INFERENCE_NUM_THREADS; None = OpenVINO's default (one per core).
    cuda_graphs  not available (refused when True).
    max_batch    largest batch accepted; None = any.
    """

    name = "openvino"

    def __init__(self, path: str | os.PathLike, *, device: str = "cpu", threads: int | None = None,
                 cuda_graphs: bool = False, max_batch: int | None = None):
        device = self.setup(path, device=device, threads=threads, cuda_graphs=cuda_graphs, max_batch=max_batch)
        if device.kind != "cpu":
            self.refuse("device", str(device), "the OpenVINO backend runs on the CPU only.",
                        "Use --device cpu, or run a .onnx with ONNX Runtime or a TensorRT plan on a GPU.")
        if self.path.suffix.lower() not in (".xml", ".onnx"):
            raise ArtifactError(f"has suffix {self.path.suffix!r}; the OpenVINO backend reads .xml (IR) and .onnx.",
                                path=self.path)
        self.info = read_info(self.path)
        if self.info.precision not in PRECISION_HINTS or (self.path.suffix.lower() == ".onnx"
                                                         and self.info.precision != "fp32"):
            raise ArtifactError(
                f"is a {self.info.precision} artifact; the OpenVINO backend runs fp32 ONNX and fp32/bf16 IRs, the "
                "precisions its parity gate checked on OpenVINO.", path=self.path,
                hint="Export for OpenVINO with `sranet export CHECKPOINT --target openvino-cpu [--bf16]`.")
        if self.path.suffix.lower() == ".xml" and not self.path.with_suffix(".bin").is_file():
            raise ArtifactError(f"has no weights file {self.path.with_suffix('.bin').name} beside it.", path=self.path,
                                hint="Copy the .xml together with its .bin.")
        ov = import_openvino()
        self._ov = ov
        self.core = ov.Core()
        if self.info.precision == "bf16" and not cpu_supports_bf16(self.core):
            raise BackendError(
                "this bf16 artifact needs a CPU with bf16 instructions (AVX512_BF16 or AMX); this CPU "
                f"({self.core.get_property('CPU', 'FULL_DEVICE_NAME')}) has none.", path=self.path,
                hint="Run the fp32 export on this machine (`sranet export ... --target openvino-cpu` without --bf16).")
        self.config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY",
                                       "INFERENCE_PRECISION_HINT": PRECISION_HINTS[self.info.precision]}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = threads
        try:
            self.model = self.core.read_model(str(self.path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with its own text
            raise BackendError(f"OpenVINO could not read the model ({type(exc).__name__}: {exc}).",
                               path=self.path) from exc
        names_in = [i.get_any_name() for i in self.model.inputs]
        names_out = [o.get_any_name() for o in self.model.outputs]
        if names_in != [INPUT_NAME] or set(OUTPUT_NAMES) - set(names_out):
            raise ArtifactError(f"has inputs {names_in} and outputs {names_out}; expected input {INPUT_NAME!r} and "
                                f"outputs {list(OUTPUT_NAMES)}.", path=self.path, hint="Export it with `sranet export`.")
        self._compiled: dict[int, Any] = {}
        self._request(1)  # compile now: a model OpenVINO cannot compile fails at load, not at the first case

    def _request(self, batch: int):
        """An infer request of the model compiled for a static ``batch`` (compiled on first use, a few kept)."""
        if batch in self._compiled:
            return self._compiled[batch][1]
        if len(self._compiled) >= MAX_COMPILED:
            self._compiled.pop(next(iter(self._compiled)))
        S = self.info.model.input_size
        model = self.model.clone()
        model.reshape({INPUT_NAME: [batch, 1, S, S, S]})
        try:
            compiled = self.core.compile_model(model, "CPU", self.config)
        except Exception as exc:
            raise BackendError(f"OpenVINO could not compile the model for batch {batch} ({type(exc).__name__}: "
                               f"{exc}).", path=self.path) from exc
        got = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        if got != self.config["INFERENCE_PRECISION_HINT"]:
            raise BackendError(f"OpenVINO compiled the model with inference precision {got}, not the "
                               f"{self.config['INFERENCE_PRECISION_HINT']} the {self.info.precision} artifact needs.",
                               path=self.path)
        self._compiled[batch] = (compiled, compiled.create_infer_request())
        return self._compiled[batch][1]

    def _infer(self, ct: np.ndarray) -> dict[str, np.ndarray]:
        request = self._request(ct.shape[0])
        try:
            request.infer({INPUT_NAME: ct})
        except Exception as exc:
            raise BackendError(f"OpenVINO failed on a batch of {ct.shape[0]} ({type(exc).__name__}: {exc}).",
                               path=self.path) from exc
        return {name: np.array(request.get_tensor(name).data, copy=True) for name in OUTPUT_NAMES}

    def close(self) -> None:
        self._compiled.clear()
        self.model = None

    def describe(self) -> dict[str, Any]:
        compiled = next(iter(self._compiled.values()), (None,))[0]
        applied = {}
        if compiled is not None:
            for key in ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "PERFORMANCE_HINT", "NUM_STREAMS"):
                value = compiled.get_property(key)
                applied[key] = value.to_string() if hasattr(value, "to_string") else str(value)
        return {"backend": self.name, "precision": self.info.precision, "openvino": self._ov.__version__,
                "device": "CPU", "format": "IR" if self.path.suffix.lower() == ".xml" else "ONNX",
                "config_requested": {k: str(v) for k, v in self.config.items()}, "config_applied": applied}
