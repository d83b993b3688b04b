"""ONNX Runtime backend for ``.onnx`` artifacts: CPU, CUDA and TensorRT execution providers.

``device="cpu"`` runs the CPU execution provider; ``device="cuda:N"`` runs GPU N with the TensorRT provider (CUDA
for what it does not take) or, where TensorRT is not installed or ``provider="cuda"`` asks for it, the CUDA provider.
A provider the user asks for and that is not there is an error (never a silent fallback to the CPU). For CUDA and
TensorRT the options are set for latency (ONNX Runtime's documented provider options): TensorRT engine and timing
caches on disk, fp16 when the artifact is fp16, an optimisation profile for the batch range, exhaustive cuDNN
convolution search, and IO binding so inputs and outputs are copied once per call.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from sranet.errors import ArtifactError, BackendError, DependencyMissingError, InputError, check_choice
from sranet.runtime.artifact import DEFAULT_MAX_BATCH, INPUT_NAME, OUTPUT_NAMES, ArtifactInfo
from sranet.runtime.backends.base import Backend
from sranet.runtime.devices import Device

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
TRT_EP = "TensorrtExecutionProvider"

# GPU provider names -> the EP chain in priority order (ORT assigns each node to the first EP that takes it)
GPU_PROVIDERS: dict[str, tuple[str, ...]] = {
    "tensorrt": (TRT_EP, CUDA_EP, CPU_EP),
    "cuda": (CUDA_EP, CPU_EP),
}
GRAPH_LEVELS = ("disable", "basic", "extended", "all")
MAX_BOUND_BATCHES = 4  # IO-binding buffers are kept for this many batch sizes (all of them while CUDA graphs are on)
GRAPH_ID_KEY = "gpu_graph_id"  # ONNX Runtime's run option naming the CUDA graph of a run (-1: none; 0: reserved)


def _import_ort():
    """``import onnxruntime`` with its telemetry off: ONNX Runtime's telemetry writes events (model file names,
    paths, errors) to a database under the user's home directory from the moment it is imported, unless
    ORT_DISABLE_TELEMETRY is set first (``import sranet`` sets it); ``disable_telemetry_events`` stops the events of
    an ONNX Runtime imported before sranet."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - onnxruntime is a core dependency
        raise DependencyMissingError(
            "onnxruntime is not installed; it runs .onnx artifacts.", hint="pip install onnxruntime (or onnxruntime-gpu)."
        ) from exc
    if hasattr(ort, "disable_telemetry_events"):
        ort.disable_telemetry_events()
    return ort


def default_cache_dir() -> Path:
    """Where TensorRT engine and timing caches go unless ``cache_dir`` is given ($SRANET_CACHE or ~/.cache/sranet)."""
    root = os.environ.get("SRANET_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sranet")
    return Path(root) / "ort_trt"


def make_session(model: str | os.PathLike | bytes, *, providers: list[str] | tuple[str, ...] = (CPU_EP,),
                 provider_options: list[dict[str, str]] | None = None, graph_level: str = "all",
                 threads: int | None = None, spinning: bool | None = None, optimized_model_path: str | None = None):
    """An ``onnxruntime.InferenceSession``: the one ONNX Runtime set-up of sranet (backend, parity gate, benchmarks).

    model                 a path or the serialised model.
    graph_level           "disable", "basic", "extended" or "all" (ONNX Runtime's default).
    threads               intra-op threads (None = ONNX Runtime's default, one per physical core).
    spinning              idle intra-op threads busy-wait for the next call (None = ONNX Runtime's default, on).
    optimized_model_path  where ONNX Runtime saves the graph it optimised (to count what it did), or None.
    A model ONNX Runtime cannot load is a BackendError.
    """
    ort = _import_ort()
    check_choice("graph_level", graph_level, GRAPH_LEVELS, error=InputError)
    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[graph_level]
    so.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default
    if spinning is not None:
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if optimized_model_path is not None:
        so.optimized_model_filepath = str(optimized_model_path)
    so.log_severity_level = 3
    where = None if isinstance(model, bytes) else model
    try:
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model), sess_options=so,
                                    providers=list(providers), provider_options=provider_options)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
        raise BackendError(f"ONNX Runtime could not load the model ({type(exc).__name__}: {exc}).",
                           path=where) from exc


def resolve_providers(device: Device, provider: str | None, available: list[str]) -> list[str]:
    """The EP chain for ``device``: the CPU EP for "cpu"; for "cuda:N" the ``provider`` chain ("tensorrt" or
    "cuda"), or with None the best one installed (TensorRT > CUDA). What is not installed is refused."""
    if device.kind == "cpu":
        if provider is not None:
            raise InputError(f"provider={provider!r} chooses ONNX Runtime's GPU execution provider, but the device "
                             "is the CPU.", hint=f"Add --device cuda:N to run on a GPU, or drop --provider {provider}.")
        return [CPU_EP]
    if provider is None:
        for chain in GPU_PROVIDERS.values():
            if chain[0] in available:
                return [ep for ep in chain if ep in available]
        raise BackendError(
            f"device {device} needs onnxruntime's {TRT_EP} or {CUDA_EP}, which this installation lacks "
            f"(available: {', '.join(available)}).",
            hint="Install onnxruntime-gpu (pip install 'sranet[gpu]') with matching CUDA/TensorRT libraries, "
            "or use --device cpu.")
    check_choice("provider", provider, GPU_PROVIDERS, error=InputError)
    wanted = GPU_PROVIDERS[provider][0]
    if wanted not in available:
        raise BackendError(
            f"provider {provider!r} needs onnxruntime's {wanted}, which this installation lacks "
            f"(available: {', '.join(available)}).",
            hint="Install onnxruntime-gpu (pip install 'sranet[gpu]') with matching CUDA/TensorRT libraries, "
            "or use --device cpu.",
        )
    return [ep for ep in GPU_PROVIDERS[provider] if ep in available]


def effective_max_batch(providers: list[str], max_batch: int | None) -> int | None:
    """The largest batch the session takes: with the TensorRT provider, the end of the explicit optimisation profile
    (``max_batch`` or DEFAULT_MAX_BATCH), so a bigger batch is refused by ``check_input`` instead of failing inside
    ONNX Runtime; otherwise ``max_batch`` (None: any)."""
    return (max_batch or DEFAULT_MAX_BATCH) if TRT_EP in providers else max_batch


def graph_run_config(providers: list[str], batch: int, *, cuda_graphs: bool, captured_batch: int | None) -> dict[str, str]:
    """Run-option config entries for one run. CUDA provider with CUDA graphs: ``gpu_graph_id`` = the batch size, so
    each batch size captures and replays its own graph (one graph for all would replay against another batch's
    buffers). The TensorRT provider keeps one graph per session: a batch other than the one it captured is refused
    (InputError), never replayed."""
    if not cuda_graphs:
        return {}
    if providers and providers[0] == TRT_EP:
        if captured_batch is not None and batch != captured_batch:
            raise InputError(f"onnxruntime backend: batch {batch} after a CUDA graph was captured for batch "
                             f"{captured_batch}; ONNX Runtime's TensorRT provider keeps one CUDA graph per session.",
                             hint="Keep one batch size per backend with cuda_graphs, or use provider='cuda' (one graph "
                                  "per batch size), or a TensorRT plan (.engine).")
        return {}
    return {GRAPH_ID_KEY: str(batch)}  # batch >= 1: never the reserved 0 nor the "no graph" -1


def provider_options(
    providers: list[str],
    info: ArtifactInfo,
    *,
    device_id: int = 0,
    cache_dir: str | os.PathLike | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    workspace_gib: float = 4.0,
    cuda_graphs: bool = False,
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
                "trt_cuda_graph_enable": "1" if cuda_graphs else "0",
            })
        elif ep == CUDA_EP:
            options.append({
                "device_id": str(device_id),
                "cudnn_conv_algo_search": "EXHAUSTIVE",
                "cudnn_conv_use_max_workspace": "1",
                "do_copy_in_default_stream": "1",
                "arena_extend_strategy": "kSameAsRequested",
                "enable_cuda_graph": "1" if cuda_graphs else "0",
            })
        else:
            options.append({})
    return options


class OnnxRuntimeBackend(Backend):
    """Runs an exported ``.onnx`` with ONNX Runtime (the contract's arguments: ``sranet.runtime.backends.base``).

    device       "cpu" (CPU execution provider) or "cuda:N" (TensorRT or CUDA execution provider on GPU N).
    threads      intra-op threads (None = ONNX Runtime's default, one per physical core).
    cuda_graphs  capture CUDA graphs (GPU providers only): the CUDA provider one per batch size (``gpu_graph_id``),
                 the TensorRT provider one per session (a later batch of another size is refused).
    max_batch    largest batch; with the TensorRT provider also its profile max (default DEFAULT_MAX_BATCH), which
                 the backend then enforces.

    Options (``OPTIONS``):
    provider     for "cuda:N": "tensorrt" or "cuda"; None picks the best installed (TensorRT > CUDA).
    graph_level  graph optimisation level: "disable", "basic", "extended" or "all".
    spinning     let idle intra-op threads busy-wait for the next call (None = ONNX Runtime's default, on). Off
                 when several models take turns on the same cores: a spinning pool steals them from the next one.
    cache_dir    TensorRT engine/timing cache folder (default $SRANET_CACHE/ort_trt or ~/.cache/sranet/ort_trt).
    io_binding   bind inputs/outputs once per call (default: on for GPU providers, off for the CPU).
    """

    name = "onnxruntime"
    OPTIONS = ("provider", "graph_level", "spinning", "cache_dir", "io_binding")

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        device: str = "cpu",
        threads: int | None = None,
        cuda_graphs: bool = False,
        max_batch: int | None = None,
        provider: str | None = None,
        graph_level: str = "all",
        spinning: bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        io_binding: bool | None = None,
    ):
        device_ = self.setup(path, device=device, threads=threads, cuda_graphs=cuda_graphs, max_batch=max_batch)
        check_choice("graph_level", graph_level, GRAPH_LEVELS, error=InputError)
        self.info = read_info(self.path)
        chain = resolve_providers(device_, provider, _import_ort().get_available_providers())
        options = provider_options(chain, self.info, device_id=device_.index, cache_dir=cache_dir,
                                   max_batch=max_batch or DEFAULT_MAX_BATCH, cuda_graphs=cuda_graphs)
        for opts in options:
            for key in ("trt_engine_cache_path", "trt_timing_cache_path"):
                if key in opts:
                    Path(opts[key]).mkdir(parents=True, exist_ok=True)
        self.session = make_session(self.path, providers=chain, provider_options=options, graph_level=graph_level,
                                    threads=threads, spinning=spinning)
        self.max_batch = effective_max_batch(chain, max_batch)  # the TensorRT provider's profile ends there
        self._check_interface()
        self.providers = list(self.session.get_providers())
        self.cuda_graphs = cuda_graphs
        self._graph_batch: int | None = None
        self.io_binding = device_.kind == "cuda" if io_binding is None else bool(io_binding)
        if cuda_graphs and not self.io_binding:
            self.refuse("io_binding", io_binding, "CUDA graphs replay on fixed device buffers, which IO binding gives.",
                        "Leave io_binding on (the GPU default) with cuda_graphs.")
        self._bindings: dict[int, tuple[Any, dict[str, Any]]] = {}
        self._settings = {"graph_level": graph_level, "intra_op_threads": threads or "default",
                          "cuda_graphs": cuda_graphs,
                          "intra_op_spinning": "default (on)" if spinning is None else "on" if spinning else "off"}
        self._options = dict(zip(chain, options, strict=True))

    def _check_interface(self) -> None:
        """Input ``ct`` and outputs ``prob``, ``attention``; a static batch dimension bounds the batch range."""
        names_in = [i.name for i in self.session.get_inputs()]
        names_out = [o.name for o in self.session.get_outputs()]
        if names_in != [INPUT_NAME] or set(OUTPUT_NAMES) - set(names_out):
            raise ArtifactError(
                f"has inputs {names_in} and outputs {names_out}; expected input {INPUT_NAME!r} and outputs "
                f"{list(OUTPUT_NAMES)}.", path=self.path, hint="Export it with `sranet export`.")
        batch_dim = self.session.get_inputs()[0].shape[0]
        if isinstance(batch_dim, int):  # a static batch dimension
            if self.max_batch is not None and self.max_batch != batch_dim:
                self.refuse("max_batch", self.max_batch, f"this graph takes batches of exactly {batch_dim}.",
                            f"Leave max_batch out, or pass {batch_dim}.")
            self.min_batch = self.max_batch = batch_dim

    def _infer(self, ct: np.ndarray) -> dict[str, np.ndarray]:
        try:
            if not self.io_binding:
                prob, att = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: ct})
                return {"prob": prob, "attention": att}
            batch = ct.shape[0]
            config = graph_run_config(self.providers, batch, cuda_graphs=self.cuda_graphs,
                                      captured_batch=self._graph_batch)
            binding, values = self._bound(batch)
            values[INPUT_NAME].update_inplace(ct)  # one host->device copy into a buffer that stays put
            run_options = None
            if config:
                import onnxruntime as ort

                run_options = ort.RunOptions()
                for key, value in config.items():
                    run_options.add_run_config_entry(key, value)
            self.session.run_with_iobinding(binding, run_options)
            if self.cuda_graphs and self._graph_batch is None:
                self._graph_batch = batch
            prob, att = binding.copy_outputs_to_cpu()[:2]
            return {"prob": np.array(prob, copy=True), "attention": np.array(att, copy=True)}  # buffers are reused
        except InputError:
            raise
        except Exception as exc:
            raise BackendError(f"ONNX Runtime failed on a batch of {ct.shape[0]} ({type(exc).__name__}: {exc}).",
                               path=self.path) from exc

    def _bound(self, batch: int):
        """IO binding with input and output buffers allocated once per batch size on the EP's device.

        Fixed addresses are what CUDA-graph capture needs, and they spare an allocation per call. Without CUDA graphs
        the oldest of more than MAX_BOUND_BATCHES is dropped; with them none is (a captured graph keeps using its
        buffers), and ``max_batch`` bounds how many there can be.
        """
        if batch in self._bindings:
            return self._bindings[batch]
        import onnxruntime as ort

        if not self.cuda_graphs and len(self._bindings) >= MAX_BOUND_BATCHES:
            self._bindings.pop(next(iter(self._bindings)))
        S, N = self.info.model.input_size, self.info.model.num_patches
        device = "cuda" if self.providers[0] in (CUDA_EP, TRT_EP) else "cpu"
        index = self.device.index if device == "cuda" else 0
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
            "device": str(self.device),
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
