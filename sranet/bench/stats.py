"""Latency statistics. No outlier removal: every measured sample enters every statistic.

Percentiles use numpy's default ``method="linear"`` (Hyndman-Fan type 7): for sorted samples x_0..x_{n-1} the
q-th percentile is x_f + (x_c - x_f) * (r - f) with r = q/100 * (n - 1), f = floor(r), c = ceil(r).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sranet.errors import InputError

PERCENTILES = (50, 90, 95, 99)
PERCENTILE_METHOD = "linear"


def summarize(samples_ms: Sequence[float], *, batch: int = 1) -> dict[str, float | int]:
    """Summarise latencies in milliseconds (one sample per call, ``batch`` volumes per call).

    Returns n, min/mean/std/p50/p90/p95/p99/max in ms, and throughput in volumes per second computed from the mean
    latency (batch * 1000 / mean_ms), i.e. sustained sequential throughput, not an optimistic min-based figure.
    """
    x = np.asarray(samples_ms, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise InputError("no latency samples to summarise; run at least one iteration (--min-iters >= 1).")
    if not np.isfinite(x).all() or (x < 0).any():
        raise InputError(f"latency samples must be finite and >= 0 ms, got min={x.min()!r} max={x.max()!r}.")
    if batch < 1:
        raise InputError(f"batch must be >= 1, got {batch}.")
    q = np.percentile(x, PERCENTILES, method=PERCENTILE_METHOD)
    mean = float(x.mean())
    out: dict[str, float | int] = {
        "n": int(x.size),
        "min_ms": float(x.min()),
        "mean_ms": mean,
        "std_ms": float(x.std(ddof=1)) if x.size > 1 else 0.0,
    }
    out.update({f"p{p}_ms": float(v) for p, v in zip(PERCENTILES, q, strict=False)})
    out["max_ms"] = float(x.max())
    out["throughput_vol_s"] = float(batch * 1000.0 / mean) if mean > 0 else float("inf")
    return out


def paired_ratios(samples_ms: Sequence[Sequence[float]]) -> list[dict[str, float]]:
    """Ratios of each series against the first, from interleaved rounds.

    ``samples_ms[a][r]`` is series a's latency in round r (rounds interleave all series, so a slow period of a
    noisy machine hits every series alike). For each series: ``p50_ratio`` = p50(a) / p50(first) and
    ``paired_median_ratio`` = median over rounds of a[r] / first[r]; values > 1 mean slower than the first.
    """
    if not samples_ms:
        return []
    ref = np.asarray(samples_ms[0], dtype=np.float64)
    ref_p50 = float(np.median(ref))
    out = []
    for series in samples_ms:
        s = np.asarray(series, dtype=np.float64)
        n = min(s.size, ref.size)
        paired = s[:n] / ref[:n] if n else np.array([np.nan])
        out.append(
            {
                "p50_ratio": float(np.median(s) / ref_p50) if ref_p50 > 0 else float("nan"),
                "paired_median_ratio": float(np.median(paired)),
            }
        )
    return out


def compute_floor_ms(matmul_flops: float, peak_gflops: float, batch: int = 1) -> float:
    """Lower bound on latency in ms: batch * FLOPs / peak rate. ``peak_gflops`` in GFLOP/s."""
    return float(batch * matmul_flops / (peak_gflops * 1e9) * 1e3)
