"""Run benchmarks: cold start, interleaved model-only latency per batch size, and end-to-end latency by stage.

Several artifacts are measured round-robin in one run (round r starts at artifact r mod A), so a slow spell of a
shared machine hits every artifact alike and the ratios against the first artifact stay meaningful. Host wall time
(``time.perf_counter``) is always recorded; device time comes from CUDA events where torch with CUDA is loaded, or
from a backend's own ``last_device_ms`` when it reports one. No sample is ever dropped.
"""

from __future__ import annotations

import inspect
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sranet.bench.stats import paired_ratios, summarize
from sranet.errors import InputError

Call = Callable[[], "dict[str, float] | None"]


@dataclass(frozen=True)
class Settings:
    """How long and how often to measure. Warm-up ends when both ``warmup_s`` and ``warmup_iters`` are reached;
    measurement ends when both ``duration_s`` and ``min_iters`` rounds are reached (``max_iters`` caps rounds)."""

    batches: tuple[int, ...] = (1,)
    warmup_s: float = 1.0
    warmup_iters: int = 2
    min_iters: int = 10
    duration_s: float = 10.0
    max_iters: int = 100_000
    threads: int = 0

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
        if self.threads < 0:
            raise InputError(f"--threads must be >= 0 (0 = library default), got {self.threads}.")


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
def open_with_threads(path: str | os.PathLike, threads: int, opener: Callable[..., Any] | None = None, *,
                      device: str | None = None, provider: str | None = None, interleaved: bool = False):
    """Open an artifact, passing ``threads``, ``device`` (.pt) and ``provider`` (.onnx) to backends that take them.

    An option the artifact's backend does not take is an error, never silently dropped. ``interleaved``: several
    artifacts take turns on the same cores, so a backend that can busy-wait between calls (ONNX Runtime's intra-op
    pool) is told not to; otherwise its spinning threads would slow whichever artifact runs next. That is written
    into what was applied. Returns (backend, load_ms, what was applied)."""
    from sranet.runtime.backends.base import backend_class, open_backend

    opener = opener or open_backend
    params = inspect.signature(backend_class(path).__init__).parameters
    options: dict[str, Any] = {}
    applied = []
    for flag, key, value in (("--threads", "threads", threads or None), ("--device", "device", device),
                             ("--provider", "providers", provider)):
        if value is None:
            continue
        if key not in params:
            raise InputError(f"{flag} {value}: the {Path(path).suffix} backend takes no such setting.", path=path,
                             hint=f"Leave {flag} out for this artifact.")
        options[key] = value
        applied.append(f"{key}={value}")
    if interleaved and "spinning" in params:
        options["spinning"] = False
        applied.append("spinning=off (interleaved with other artifacts)")
    t0 = time.perf_counter()
    backend = opener(path, **options)
    return backend, (time.perf_counter() - t0) * 1e3, ", ".join(applied) or "library defaults"


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


def run_benchmark(
    paths: Sequence[str | os.PathLike],
    settings: Settings,
    *,
    case: str | os.PathLike | None = None,
    synthetic: bool = False,
    synthetic_shape: tuple[int, int, int] = (160, 256, 256),
    spacing_mm: tuple[float, float, float] | None = None,
    roi: str | None = None,
    peak_gflops: float | None = None,
    device: str | None = None,
    provider: str | None = None,
    argv: list[str] | None = None,
    opener: Callable[..., Any] | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """Benchmark ``paths`` (the first is the reference for ratios) and return a ``sranet-benchmark/1`` document."""
    from sranet.bench import e2e
    from sranet.bench.env import collect_environment
    from sranet.bench.flops import compute_floor_ms, count_flops, graph_matmul_flops
    from sranet.runtime.artifact import sha256_file

    if not paths:
        raise InputError("no artifact given; pass one or more .onnx/.pt/.engine files.")
    if case is not None and synthetic:
        raise InputError("--input and --synthetic are exclusive; pass one of them.")
    if peak_gflops is not None and not peak_gflops > 0:
        raise InputError(f"--peak-gflops must be > 0 GFLOP/s, got {peak_gflops}.")
    rss0 = rss_mib()
    artifacts, backends = [], []
    try:  # from the first open on, so backends opened before a later artifact fails are closed too
        for path in paths:  # cold start: load + first inference, one artifact at a time, before any warm-up
            log(f"loading {path}")
            backend, load_ms, applied = open_with_threads(path, settings.threads, opener, device=device,
                                                          provider=provider, interleaved=len(paths) > 1)
            backends.append(backend)
            S = backend.info.model.input_size
            t0 = time.perf_counter()
            backend.infer(random_input(max(1, backend.min_batch), S))
            first_ms = (time.perf_counter() - t0) * 1e3
            flops = count_flops(backend.info.model).to_dict()
            spectral = backend.info.spectral_layers
            artifacts.append({
                "label": Path(path).name,
                "path": str(path),
                "sha256": sha256_file(path),
                "backend": {k: str(v) for k, v in backend.describe().items()},
                "precision": backend.info.precision,
                "model_config": backend.info.model.to_dict(),
                "flops_per_volume": flops,
                "conv_impl": "spectral" if spectral else "direct",
                "spectral_layers": list(spectral),
                "graph_matmul_flops": graph_matmul_flops(backend.info.model, spectral),
                "options_applied": applied,
                "cold_start": {"load_ms": load_ms, "first_infer_ms": first_ms, "total_ms": load_ms + first_ms},
                "rss_after_load_mib": None if rss0 is None else rss_mib() - rss0,
            })
        doc: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "environment": collect_environment(threads=settings.threads or None, argv=argv),
            "settings": {
                "batches": list(settings.batches), "warmup_s": settings.warmup_s,
                "warmup_iters": settings.warmup_iters, "min_iters": settings.min_iters,
                "duration_s": settings.duration_s, "max_iters": settings.max_iters, "threads": settings.threads,
                "interleaved": True, "percentile_method": "numpy linear (type 7)", "outliers_removed": False,
                "throughput": "batch * 1000 / mean_ms",
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
        tmp, case_path, case_spacing, inputs, case_desc = None, None, spacing_mm, None, None
        if synthetic:
            tmp = e2e.temporary_folder()
            case_path, case_spacing = e2e.synthetic_case(tmp.name, synthetic_shape)
        elif case is not None:
            case_path = Path(case)
        roi_obj = None
        if roi is not None:
            from sranet.runtime.roi import parse_roi

            roi_obj = parse_roi(roi)
        if case_path is not None:
            inputs, case_desc = e2e.preprocess_once(case_path, backends[0].info.preprocess,
                                                    spacing_mm=case_spacing, roi=roi_obj)
        for batch in settings.batches:
            log(f"model-only, batch {batch}")
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
            doc["model_only"].append({"batch": batch, "device_timing": device_method, "results": results,
                                      "skipped": skipped})
        if case_path is not None:
            log("end-to-end")
            calls = [e2e.make_case_call(b, case_path, spacing_mm=case_spacing, roi=roi_obj) for b in backends]
            rounds = run_interleaved(calls, settings)
            results = []
            order: list[str] = []
            for i, r in enumerate(rounds):
                keys = list(dict.fromkeys(k for s in r for k in s if k.endswith("_ms") and k != "wall_ms"))
                order = order or [k[:-3] for k in keys]
                results.append({"artifact": i, "total": summarize_rounds(r, "wall_ms", 1),
                                "stages": {k[:-3]: summarize_rounds(r, k, 1) for k in keys}})
            doc["end_to_end"] = {"case": {"kind": "synthetic" if synthetic else "input", **(case_desc or {})},
                                 "stage_order": order, "results": results}
        if tmp is not None:
            tmp.cleanup()
        doc["memory"] = {"peak_rss_mib": peak_rss_mib(), "device_peak_mib": device_peak_mib()}
        return doc
    finally:
        for b in backends:
            b.close()
