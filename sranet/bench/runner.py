"""Run benchmarks: cold start, interleaved model-only latency per batch size, and end-to-end latency by stage.

Several artifacts are measured round-robin in one run (round r starts at artifact r mod A), so a slow spell of a
shared machine hits every artifact alike and the ratios against the first artifact stay meaningful. Host wall time
(``time.perf_counter``) is always recorded; device time comes from CUDA events where torch with CUDA is loaded, or
from a backend's own ``last_device_ms`` when it reports one. No sample is ever dropped.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sranet.bench.stats import paired_ratios, summarize
from sranet.errors import InputError
from sranet.runtime.backends.base import backend_class, open_backend

Call = Callable[[], "dict[str, float] | None"]


SYNTHETIC_SHAPE = (160, 256, 256)  # (D, H, W) of the synthetic end-to-end phantom: a hip CT's field of view


@dataclass(frozen=True)
class Settings:
    """How to open the artifacts, and how long and how often to measure them.

    Warm-up ends when both ``warmup_s`` and ``warmup_iters`` are reached; measurement ends when both ``duration_s``
    and ``min_iters`` rounds are reached (``max_iters`` caps rounds). ``device``, ``threads`` and ``provider`` go to
    every backend as the backend contract says (``sranet.runtime.backends.base``); ``provider`` is ONNX Runtime's.
    """

    batches: tuple[int, ...] = (1,)
    warmup_s: float = 1.0
    warmup_iters: int = 2
    min_iters: int = 10
    duration_s: float = 10.0
    max_iters: int = 100_000
    threads: int | None = None
    device: str = "cpu"
    provider: str | None = None

    def __post_init__(self) -> None:
        if not self.batches or any(not isinstance(b, int) or b < 1 for b in self.batches):
            raise InputError(f"--batch must list positive integers, got {self.batches!r}. Example: --batch 1,4,16")
        for name in ("warmup_s", "duration_s"):
            if getattr(self, name) < 0:
                raise InputError(f"--{name.replace('_', '-')} must be >= 0 seconds, got {getattr(self, name)}.")
        if self.min_iters < 1 or self.warmup_iters < 0 or self.max_iters < self.min_iters:
            raise InputError(
                f"need min_iters >= 1, warmup_iters >= 0 and max_iters >= min_iters; got {self.min_iters}, "
                f"{self.warmup_iters}, {self.max_iters}."
            )
        if self.threads is not None and self.threads < 1:
            raise InputError(f"--threads must be >= 1 (or left out for the library's default), got {self.threads}.")

    def to_dict(self) -> dict[str, Any]:
        return {"batches": list(self.batches), "warmup_s": self.warmup_s, "warmup_iters": self.warmup_iters,
                "min_iters": self.min_iters, "duration_s": self.duration_s, "max_iters": self.max_iters,
                "threads": self.threads, "device": self.device, "provider": self.provider}


@dataclass(frozen=True)
class EndToEnd:
    """The one case of the end-to-end run: ``path`` (DICOM folder, NIfTI, .npy) or, with ``synthetic``, a whole-pelvis
    phantom of ``synthetic_shape`` written to a temporary folder. ``spacing_mm`` for an .npy case; ``roi`` as
    ``--roi``: None times the whole study (``locate``, then every hip found), "whole" the volume as the crop."""

    path: str | os.PathLike | None = None
    synthetic: bool = False
    synthetic_shape: tuple[int, int, int] = SYNTHETIC_SHAPE
    spacing_mm: tuple[float, float, float] | None = None
    roi: str | None = None

    def __post_init__(self) -> None:
        if self.path is not None and self.synthetic:
            raise InputError("--input and --synthetic are exclusive; pass one of them.")
        if self.path is None and not self.synthetic:
            raise InputError("an end-to-end case needs --input PATH or --synthetic.")


def run_interleaved(
    calls: Sequence[Call], settings: Settings, *, clock: Callable[[], float] = time.perf_counter
) -> list[list[dict[str, float]]]:
    """Warm up, then time ``calls`` round-robin. Returns, per call, one dict per round with ``wall_ms`` plus
    whatever the call returned (e.g. ``device_ms`` or per-stage ms). Round r runs the calls starting at r mod A."""
    A = len(calls)
    if A == 0:
        return []
    start, done = clock(), 0
    while done < settings.warmup_iters or clock() - start < settings.warmup_s:
        for call in calls:
            call()
        done += 1
        if done >= settings.max_iters:
            break
    samples: list[list[dict[str, float]]] = [[] for _ in calls]
    start, rounds = clock(), 0
    while rounds < settings.min_iters or (clock() - start < settings.duration_s and rounds < settings.max_iters):
        for j in range(A):
            a = (rounds + j) % A
            t0 = clock()
            extra = calls[a]()
            wall_ms = (clock() - t0) * 1e3
            samples[a].append({"wall_ms": wall_ms, **(extra or {})})
        rounds += 1
    return samples


def summarize_rounds(rounds: list[dict[str, float]], key: str, batch: int) -> dict[str, Any] | None:
    values = [r[key] for r in rounds if key in r]
    return summarize(values, batch=batch) if values else None


# -- timing helpers ---------------------------------------------------------------------------------------------
class DeviceTimer:
    """CUDA-event timing around a call when torch with CUDA is already loaded; otherwise a no-op (host time only)."""

    def __init__(self) -> None:
        torch = sys.modules.get("torch")
        self.torch = torch if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized() else None

    @property
    def method(self) -> str | None:
        return ("cuda_events on torch's current stream around the whole call (device span incl. copies)"
                if self.torch is not None else None)

    def wrap(self, fn: Callable[[], Any], backend: Any = None) -> Call:
        def call() -> dict[str, float] | None:
            if self.torch is None:
                fn()
                own = getattr(backend, "last_device_ms", None)
                return {"device_ms": float(own)} if own is not None else None
            start, end = self.torch.cuda.Event(enable_timing=True), self.torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return {"device_ms": float(start.elapsed_time(end))}

        return call


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux ru_maxrss is in KiB)."""
    import resource

    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def rss_mib() -> float | None:
    """Current resident set size, MiB (None where psutil is not installed)."""
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process(os.getpid()).memory_info().rss / 2**20


def device_peak_mib() -> float | None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    return None


# -- opening artifacts ------------------------------------------------------------------------------------------
def open_artifact(path: str | os.PathLike, settings: Settings, *, interleaved: bool = False):
    """Open an artifact with the settings' device, threads and (ONNX Runtime only) provider, as the backend contract
    says: an option the artifact's backend cannot honour is its InputError, never silently dropped.

    ``interleaved``: several artifacts take turns on the same cores, so a backend that can busy-wait between calls
    (ONNX Runtime's intra-op pool, option ``spinning``) is told not to; otherwise its spinning threads would slow
    whichever artifact runs next. Returns (backend, load_ms, what was applied)."""
    options: dict[str, Any] = {}
    applied = [f"device={settings.device}"]
    if settings.threads is not None:
        applied.append(f"threads={settings.threads}")
    if settings.provider is not None:
        options["provider"] = settings.provider
        applied.append(f"provider={settings.provider}")
    if interleaved and "spinning" in backend_class(path).OPTIONS:
        options["spinning"] = False
        applied.append("spinning=off (interleaved with other artifacts)")
    t0 = time.perf_counter()
    backend = open_backend(path, device=settings.device, threads=settings.threads, **options)
    return backend, (time.perf_counter() - t0) * 1e3, ", ".join(applied)


def random_input(batch: int, size: int, seed: int = 0) -> np.ndarray:
    """(batch, 1, size, size, size) float32 z-scored noise: a model-only input with the network's statistics."""
    return np.random.default_rng(seed).standard_normal((batch, 1, size, size, size), dtype=np.float32)


def model_only(backends: Sequence[Any], batch: int, settings: Settings, inputs: np.ndarray | None = None):
    """Interleaved model-only latency at one batch size. ``inputs`` (1, 1, S, S, S) is tiled to the batch.

    Returns (per-backend list of rounds or None when the batch is outside the backend's range, skip reasons)."""
    timer = DeviceTimer()
    calls, idx, skipped = [], [], []
    for i, b in enumerate(backends):
        if batch < b.min_batch or (b.max_batch is not None and batch > b.max_batch):
            skipped.append({"artifact": i, "reason": f"batch {batch} outside [{b.min_batch}, {b.max_batch}]"})
            continue
        S = b.info.model.input_size
        x = np.repeat(inputs, batch, axis=0) if inputs is not None and inputs.shape[-1] == S else random_input(batch, S)
        x = np.ascontiguousarray(x, dtype=np.float32)
        calls.append(timer.wrap(lambda b=b, x=x: b.infer(x), backend=b))
        idx.append(i)
    rounds = run_interleaved(calls, settings)
    out: list[list[dict[str, float]] | None] = [None] * len(backends)
    for i, r in zip(idx, rounds, strict=False):
        out[i] = r
    return out, skipped, timer.method


def with_ratios(per_artifact: list[list[dict[str, float]] | None]) -> list[dict[str, float] | None]:
    """Ratios of each artifact's wall time against the first measured artifact, paired by round."""
    present = [i for i, r in enumerate(per_artifact) if r]
    series = [[s["wall_ms"] for s in per_artifact[i]] for i in present]  # type: ignore[index]
    ratios = paired_ratios(series)
    out: list[dict[str, float] | None] = [None] * len(per_artifact)
    for i, r in zip(present, ratios, strict=False):
        out[i] = r
    return out


# -- the whole run ----------------------------------------------------------------------------------------------
SCHEMA_VERSION = "sranet-benchmark/1"


def run_benchmark(paths: Sequence[str | os.PathLike], settings: Settings, *, case: EndToEnd | None = None,
                  peak_gflops: float | None = None, argv: list[str] | None = None,
                  log: Callable[[str], None] = lambda _msg: None) -> dict[str, Any]:
    """Benchmark ``paths`` (the first is the reference for ratios) and return a ``sranet-benchmark/1`` document.

    Steps: cold start of each artifact, one at a time; model-only latency per batch size, all artifacts interleaved;
    with ``case``, end-to-end latency by stage. Every backend is closed and a synthetic case's temporary folder is
    removed however the run ends. (``sranet.bench.throughput`` adds the batch-throughput block.)
    """
    if not paths:
        raise InputError("no artifact given; pass one or more .onnx/.pt/.engine files.")
    if peak_gflops is not None and not peak_gflops > 0:
        raise InputError(f"--peak-gflops must be > 0 GFLOP/s, got {peak_gflops}.")
    with contextlib.ExitStack() as stack:
        backends: list[Any] = []
        stack.callback(lambda: [b.close() for b in backends])
        rss0 = rss_mib()
        artifacts = []
        for path in paths:  # cold start: load + first inference, one artifact at a time, before any warm-up
            log(f"loading {path}")
            artifacts.append(cold_start(path, settings, backends, interleaved=len(paths) > 1, rss0=rss0))
        doc = _document(settings, artifacts, peak_gflops, argv)
        source = stack.enter_context(_case_file(case)) if case is not None else None
        inputs = None
        if source is not None:
            inputs, case_desc = preprocess_case(source, backends[0].info.preprocess, case)
        for batch in settings.batches:
            log(f"model-only, batch {batch}")
            doc["model_only"].append(model_only_block(backends, artifacts, batch, settings, inputs, peak_gflops))
        if source is not None:
            log("end-to-end")
            doc["end_to_end"] = end_to_end_block(backends, source, case, case_desc, settings)
        doc["memory"] = {"peak_rss_mib": peak_rss_mib(), "device_peak_mib": device_peak_mib()}
        return doc


def cold_start(path: str | os.PathLike, settings: Settings, backends: list[Any], *, interleaved: bool,
               rss0: float | None) -> dict[str, Any]:
    """Open ``path`` (appended to ``backends`` at once, so it is closed whatever happens next), run one inference,
    and describe the artifact: what ran, its FLOPs and its cold start."""
    from sranet.model.flops import count_flops, graph_matmul_flops
    from sranet.runtime.artifact import sha256_file

    backend, load_ms, applied = open_artifact(path, settings, interleaved=interleaved)
    backends.append(backend)
    t0 = time.perf_counter()
    backend.infer(random_input(max(1, backend.min_batch), backend.info.model.input_size))
    first_ms = (time.perf_counter() - t0) * 1e3
    spectral = backend.info.spectral_layers
    return {
        "label": Path(path).name,
        "path": str(path),
        "sha256": sha256_file(path),
        "backend": {k: str(v) for k, v in backend.describe().items()},
        "precision": backend.info.precision,
        "model_config": backend.info.model.to_dict(),
        "flops_per_volume": count_flops(backend.info.model).to_dict(),
        "conv_impl": "spectral" if spectral else "direct",
        "spectral_layers": list(spectral),
        "graph_matmul_flops": graph_matmul_flops(backend.info.model, spectral),
        "options_applied": applied,
        "cold_start": {"load_ms": load_ms, "first_infer_ms": first_ms, "total_ms": load_ms + first_ms},
        "rss_after_load_mib": None if rss0 is None else rss_mib() - rss0,
    }


def _document(settings: Settings, artifacts: list[dict[str, Any]], peak_gflops: float | None,
              argv: list[str] | None) -> dict[str, Any]:
    """The document before any latency is measured: environment, settings, compute floor, artifacts."""
    from sranet.bench.env import collect_environment

    return {
        "schema": SCHEMA_VERSION,
        "environment": collect_environment(threads=settings.threads, argv=argv),
        "settings": {
            **settings.to_dict(), "interleaved": True, "percentile_method": "numpy linear (type 7)",
            "outliers_removed": False, "throughput": "batch * 1000 / mean_ms",
            "cold_start_note": "in-process: load + first inference; libraries imported by an earlier artifact "
                               "of the same kind are already in memory",
        },
        "compute": {"peak_gflops": peak_gflops,
                    "floor": "batch * matmul_flops / peak rate" if peak_gflops else None,
                    "graph_floor": "batch * graph_matmul_flops / peak rate, for spectral graphs (their DFT "
                                   "form does fewer FLOPs than the model's direct count)" if peak_gflops else None},
        "artifacts": artifacts,
        "model_only": [],
        "end_to_end": None,
    }


@contextlib.contextmanager
def _case_file(case: EndToEnd) -> Iterator[tuple[Path, tuple[float, float, float] | None]]:
    """(path, spacing_mm) of the end-to-end case; a synthetic phantom lives in a temporary folder for the block."""
    from sranet.bench import e2e

    if not case.synthetic:
        yield Path(case.path), case.spacing_mm
        return
    with tempfile.TemporaryDirectory(prefix="sranet-bench-") as tmp:
        yield e2e.synthetic_case(tmp, case.synthetic_shape)


def preprocess_case(source: tuple[Path, Any], cfg: Any, case: EndToEnd) -> tuple[np.ndarray, dict[str, Any]]:
    """The case preprocessed once with the first artifact's config: the model-only input and its description."""
    from sranet.bench import e2e

    path, spacing = source
    inputs, desc = e2e.preprocess_once(path, cfg, spacing_mm=spacing, roi=_roi(case))
    return inputs, {"kind": "synthetic" if case.synthetic else "input", **desc}


def _roi(case: EndToEnd):
    """None (whole study: locate), ``e2e.WHOLE``, or the parsed ROI."""
    from sranet.bench.e2e import WHOLE
    from sranet.runtime.roi import parse_roi

    if case.roi is None:
        return None
    return WHOLE if case.roi.strip().lower() == WHOLE else parse_roi(case.roi)


def model_only_block(backends: Sequence[Any], artifacts: list[dict[str, Any]], batch: int, settings: Settings,
                     inputs: np.ndarray | None, peak_gflops: float | None) -> dict[str, Any]:
    """One ``model_only`` entry: every artifact at ``batch``, interleaved, with ratios and compute floors."""
    from sranet.bench.stats import compute_floor_ms

    rounds, skipped, device_method = model_only(backends, batch, settings, inputs)
    ratios = with_ratios(rounds)
    results = []
    for i, r in enumerate(rounds):
        if r is None:
            continue
        host = summarize_rounds(r, "wall_ms", batch)
        entry = {"artifact": i, "host": host, "device": summarize_rounds(r, "device_ms", batch),
                 "ratio_vs_first": ratios[i]}
        if peak_gflops:
            floor = compute_floor_ms(artifacts[i]["flops_per_volume"]["matmul_flops"], peak_gflops, batch)
            entry["floor_ms"] = floor
            entry["p50_over_floor"] = host["p50_ms"] / floor
            if artifacts[i]["spectral_layers"]:  # the graph does less arithmetic than the model's count
                graph_floor = compute_floor_ms(artifacts[i]["graph_matmul_flops"], peak_gflops, batch)
                entry["graph_floor_ms"] = graph_floor
                entry["p50_over_graph_floor"] = host["p50_ms"] / graph_floor
        results.append(entry)
    return {"batch": batch, "device_timing": device_method, "results": results, "skipped": skipped}


def end_to_end_block(backends: Sequence[Any], source: tuple[Path, Any], case: EndToEnd, desc: dict[str, Any],
                     settings: Settings) -> dict[str, Any]:
    """The ``end_to_end`` entry: the whole path for the case, by stage, every artifact interleaved."""
    from sranet.bench import e2e

    path, spacing = source
    roi = _roi(case)
    calls = [e2e.make_case_call(b, path, spacing_mm=spacing, roi=roi) for b in backends]
    results, order = [], []
    for i, r in enumerate(run_interleaved(calls, settings)):
        keys = list(dict.fromkeys(k for s in r for k in s if k.endswith("_ms") and k != "wall_ms"))
        order = order or [k[:-3] for k in keys]
        results.append({"artifact": i, "total": summarize_rounds(r, "wall_ms", 1),
                        "stages": {k[:-3]: summarize_rounds(r, k, 1) for k in keys}})
    return {"case": desc, "stage_order": order, "results": results}
