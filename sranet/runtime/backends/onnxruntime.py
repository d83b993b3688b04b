"""ONNX Runtime backend for ``.onnx`` artifacts: CPU, CUDA and TensorRT execution providers.

The provider list is built from what the installed onnxruntime offers. A provider the user asks for and that is not
there is an error (never a silent fallback to CPU). For CUDA and TensorRT the options are set for latency
(ONNX Runtime's documented provider options): TensorRT engine and timing caches on disk, fp16 when the artifact is
fp16, an optimisation profile for the batch range, exhaustive cuDNN convolution search, and IO binding so inputs and
outputs are copied once per call.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from sranet.errors import ArtifactError, BackendError, DependencyMissingError, InputError, check_choice
from sranet.runtime.artifact import INPUT_NAME, OUTPUT_NAMES, ArtifactInfo
from sranet.runtime.backends.base import Backend

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
TRT_EP = "TensorrtExecutionProvider"

# user-facing names -> the EP chain in priority order (ORT assigns each node to the first EP that takes it)
PROVIDER_CHAINS: dict[str, tuple[str, ...]] = {
    "cpu": (CPU_EP,),
    "cuda": (CUDA_EP, CPU_EP),
    "tensorrt": (TRT_EP, CUDA_EP, CPU_EP),
}
GRAPH_LEVELS = ("disable", "basic", "extended", "all")
MAX_BOUND_BATCHES = 4  # IO-binding buffers are kept for this many batch sizes


def _import_ort():
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - onnxruntime is a core dependency
        raise DependencyMissingError(
            "onnxruntime is not installed; it runs .onnx artifacts.", hint="pip install onnxruntime (or onnxruntime-gpu)."
        ) from exc
    return ort


def default_cache_dir() -> Path:
    """Where TensorRT engine and timing caches go unless ``cache_dir`` is given ($SRANET_CACHE or ~/.cache/sranet)."""
    root = os.environ.get("SRANET_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sranet")
    return Path(root) / "ort_trt"


def resolve_providers(requested: str | None, available: list[str]) -> list[str]:
    """Map ``None`` (best available), 'cpu', 'cuda' or 'tensorrt' to the EP chain; refuse what is not installed."""
    if requested is None:
        for name in ("tensorrt", "cuda", "cpu"):
            if PROVIDER_CHAINS[name][0] in available:
                return [ep for ep in PROVIDER_CHAINS[name] if ep in available]
        raise BackendError(f"onnxruntime offers none of the CPU/CUDA/TensorRT providers (it has {available}).")
    check_choice("provider", requested, PROVIDER_CHAINS, error=InputError)
    wanted = PROVIDER_CHAINS[requested][0]
    if wanted not in available:
        raise BackendError(
            f"provider {requested!r} needs onnxruntime's {wanted}, which this installation lacks "
            f"(available: {', '.join(available)}).",
            hint="Install onnxruntime-gpu (pip install 'sranet[gpu]') with matching CUDA/TensorRT libraries, "
            "or choose --provider cpu.",
        )
    return [ep for ep in PROVIDER_CHAINS[requested] if ep in available]


def provider_options(
    providers: list[str],
    info: ArtifactInfo,
    *,
    device_id: int = 0,
    cache_dir: str | os.PathLike | None = None,
    max_batch: int = 8,
    workspace_gib: float = 4.0,
    cuda_graph: bool = False,
) -> list[dict[str, str]]:
    """Per-provider option dicts (strings, as ONNX Runtime's Python API takes them), configured for latency.

    TensorRT: engine cache + timing cache under ``cache_dir`` (engines are rebuilt only when the model, shapes or GPU
    change), fp16 when the artifact's precision is fp16, int8 for QDQ artifacts (scales come from the graph), an
    explicit profile ct:1..max_batch at (B,1,S,S,S) so one engine serves the batch range. CUDA: exhaustive cuDNN
    algorithm search (best kernels for the fixed 3D conv shapes), max cuDNN workspace, copies on the compute stream.
    """
    S = info.model.input_size
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    shape = f"{INPUT_NAME}:{{b}}x1x{S}x{S}x{S}"
    options: list[dict[str, str]] = []
    for ep in providers:
        if ep == TRT_EP:
            options.append({
                "device_id": str(device_id),
                "trt_max_workspace_size": str(int(workspace_gib * (1 << 30))),
                "trt_fp16_enable": "1" if info.precision == "fp16" else "0",
                "trt_int8_enable": "1" if info.precision == "int8" else "0",
                "trt_engine_cache_enable": "1",
                "trt_engine_cache_path": str(cache / "engines"),
                "trt_timing_cache_enable": "1",
                "trt_timing_cache_path": str(cache / "timing"),
                "trt_builder_optimization_level": "3",
                "trt_profile_min_shapes": shape.format(b=1),
                "trt_profile_opt_shapes": shape.format(b=1),
                "trt_profile_max_shapes": shape.format(b=max_batch),
                "trt_cuda_graph_enable": "1" if cuda_graph else "0",
            })
        elif ep == CUDA_EP:
            options.append({
                "device_id": str(device_id),
                "cudnn_conv_algo_search": "EXHAUSTIVE",
                "cudnn_conv_use_max_workspace": "1",
                "do_copy_in_default_stream": "1",
                "arena_extend_strategy": "kSameAsRequested",
                "enable_cuda_graph": "1" if cuda_graph else "0",
            })
        else:
            options.append({})
    return options


class OnnxRuntimeBackend(Backend):
    """Runs an exported ``.onnx`` with ONNX Runtime.

    providers       None (best available: TensorRT > CUDA > CPU), "cpu", "cuda" or "tensorrt".
    threads         intra-op threads (0 = ONNX Runtime's default, one per physical core).
    graph_level     graph optimisation level: "disable", "basic", "extended" or "all".
    spinning        let idle intra-op threads busy-wait for the next call (None = ONNX Runtime's default, on). Off
                    when several models take turns on the same cores: a spinning pool steals them from the next one.
    device_id       GPU index for CUDA/TensorRT.
    cache_dir       TensorRT engine/timing cache folder (default $SRANET_CACHE/ort_trt or ~/.cache/sranet/ort_trt).
    max_batch       largest batch of the TensorRT profile.
    io_binding      bind inputs/outputs once per call (default: on for CUDA/TensorRT, off for CPU).
    cuda_graph      capture a CUDA graph (fixed batch only; CUDA/TensorRT).
    """

    name = "onnxruntime"

    def __init__(
        self,
        path: str | os.PathLike,
        providers: str | None = None,
        threads: int = 0,
        *,
        graph_level: str = "all",
        spinning: bool | None = None,
        device_id: int = 0,
        cache_dir: str | os.PathLike | None = None,
        max_batch: int = 8,
        io_binding: bool | None = None,
        cuda_graph: bool = False,
    ):
        ort = _import_ort()
        self.path = Path(path)
        if not isinstance(threads, int) or threads < 0:
            raise InputError(f"threads={threads!r} must be an integer >= 0 (0 = library default).")
        check_choice("graph_level", graph_level, GRAPH_LEVELS, error=InputError)
        self.info = read_info(self.path)
        chain = resolve_providers(providers, ort.get_available_providers())
        options = provider_options(chain, self.info, device_id=device_id, cache_dir=cache_dir, max_batch=max_batch,
                                   cuda_graph=cuda_graph)
        for opts in options:
            for key in ("trt_engine_cache_path", "trt_timing_cache_path"):
                if key in opts:
                    Path(opts[key]).mkdir(parents=True, exist_ok=True)
        so = ort.SessionOptions()
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[graph_level]
        so.intra_op_num_threads = threads
        if spinning is not None:
            so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=so, providers=chain,
                                                provider_options=options)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
            raise BackendError(f"ONNX Runtime could not load the model ({type(exc).__name__}: {exc}).",
                               path=self.path) from exc
        names_in = [i.name for i in self.session.get_inputs()]
        names_out = [o.name for o in self.session.get_outputs()]
        if names_in != [INPUT_NAME] or set(OUTPUT_NAMES) - set(names_out):
            raise ArtifactError(
                f"has inputs {names_in} and outputs {names_out}; expected input {INPUT_NAME!r} and outputs "
                f"{list(OUTPUT_NAMES)}.", path=self.path, hint="Export it with `sranet export`.")
        batch_dim = self.session.get_inputs()[0].shape[0]
        if isinstance(batch_dim, int):  # a static batch dimension
            self.min_batch = self.max_batch = batch_dim
        self.providers = list(self.session.get_providers())
        gpu = self.providers[0] in (CUDA_EP, TRT_EP)
        self.io_binding = gpu if io_binding is None else bool(io_binding)
        self.device_id = device_id
        self._bindings: dict[int, tuple[Any, dict[str, Any]]] = {}
        self._settings = {"graph_level": graph_level, "intra_op_threads": threads, "cuda_graph": cuda_graph,
                          "intra_op_spinning": "default (on)" if spinning is None else "on" if spinning else "off"}
        self._options = dict(zip(chain, options, strict=True))

    def _infer(self, ct: np.ndarray) -> dict[str, np.ndarray]:
        try:
            if not self.io_binding:
                prob, att = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: ct})
                return {"prob": prob, "attention": att}
            binding, values = self._bound(ct.shape[0])
            values[INPUT_NAME].update_inplace(ct)  # one host->device copy into a buffer that stays put
            self.session.run_with_iobinding(binding)
            prob, att = binding.copy_outputs_to_cpu()[:2]
            return {"prob": np.array(prob, copy=True), "attention": np.array(att, copy=True)}  # buffers are reused
        except Exception as exc:
            raise BackendError(f"ONNX Runtime failed on a batch of {ct.shape[0]} ({type(exc).__name__}: {exc}).",
                               path=self.path) from exc

    def _bound(self, batch: int):
        """IO binding with input and output buffers allocated once per batch size on the EP's device.

        Fixed addresses are what CUDA-graph capture needs, and they spare an allocation per call.
        """
        if batch in self._bindings:
            return self._bindings[batch]
        import onnxruntime as ort

        if len(self._bindings) >= MAX_BOUND_BATCHES:
            self._bindings.pop(next(iter(self._bindings)))
        S, N = self.info.model.input_size, self.info.model.num_patches
        device = "cuda" if self.providers[0] in (CUDA_EP, TRT_EP) else "cpu"
        index = self.device_id if device == "cuda" else 0
        shapes = {INPUT_NAME: (batch, 1, S, S, S), "prob": (batch,), "attention": (batch, N)}
        values = {k: ort.OrtValue.ortvalue_from_shape_and_type(v, np.float32, device, index) for k, v in shapes.items()}
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(INPUT_NAME, values[INPUT_NAME])
        for name in OUTPUT_NAMES:
            binding.bind_ortvalue_output(name, values[name])
        self._bindings[batch] = (binding, values)
        return binding, values

    def close(self) -> None:
        self._bindings.clear()
        self.session = None

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            "backend": self.name,
            "precision": self.info.precision,
            "onnxruntime": ort.__version__,
            "providers": self.providers,
            "provider_options": {k: v for k, v in self._options.items() if v},
            "io_binding": self.io_binding,
            **self._settings,
        }


def read_info(path: str | os.PathLike) -> ArtifactInfo:
    """ArtifactInfo from the ONNX model's ``metadata_props`` (reads only the header, not the session)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ArtifactError(f"is not a readable ONNX model ({type(exc).__name__}: {exc}).", path=path,
                            hint="Export it again with `sranet export CHECKPOINT --out model.onnx`.") from exc
    return ArtifactInfo.from_metadata({p.key: p.value for p in model.metadata_props}, path=path)
