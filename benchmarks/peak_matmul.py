"""This machine's peak fp32 matrix-multiply rate (the denominator of the compute floor).

Times numpy (its BLAS) and torch sgemm on square n x n fp32 products at a few sizes; each size reports the median
of its repeats, and the peak is the best median over sizes and libraries (2 n^3 FLOPs per product). Environment
variables that change BLAS speed (OPENBLAS_CORETYPE, *_NUM_THREADS) are recorded, never changed.

    .venv/bin/python benchmarks/peak_matmul.py                 # ~1 minute; writes benchmarks/results/peak_matmul.json
    .venv/bin/python benchmarks/peak_matmul.py --quick         # a few seconds, for checking the script
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def time_matmul(mm, a, b, repeats: int) -> list[float]:
    mm(a, b)  # warm-up (thread pool start, page faults)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        mm(a, b)
        out.append(time.perf_counter() - t0)
    return out


def measure(sizes: list[int], repeats: int, threads: int) -> list[dict]:
    rows = []
    rng = np.random.default_rng(0)
    libs = [("numpy", lambda a, b: a @ b, lambda x: x)]
    try:
        import torch

        if threads:
            torch.set_num_threads(threads)
        libs.append(("torch", torch.mm, torch.from_numpy))
    except ImportError:
        pass
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        for name, mm, conv in libs:
            times = time_matmul(mm, conv(a), conv(b), repeats)
            med = float(np.median(times))
            rows.append({"library": name, "n": n, "repeats": repeats, "median_s": med, "min_s": float(min(times)),
                         "gflops_median": 2 * n**3 / med / 1e9, "gflops_best": 2 * n**3 / min(times) / 1e9})
            print(f"{name:6s} n={n:5d}  median {med * 1e3:8.2f} ms  {rows[-1]['gflops_median']:7.1f} GFLOP/s",
                  file=sys.stderr)
    return rows


def _torch_threads() -> int | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.get_num_threads()


def main(argv: list[str] | None = None) -> dict:
    from sranet.bench.env import collect_environment

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="512,1024,2048,3072")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default); numpy uses its BLAS default")
    ap.add_argument("--quick", action="store_true", help="sizes 256,512 and 3 repeats (checks the script only)")
    ap.add_argument("--out", type=Path, default=RESULTS / "peak_matmul.json")
    args = ap.parse_args(argv)
    sizes = [256, 512] if args.quick else [int(s) for s in args.sizes.split(",")]
    repeats = 3 if args.quick else args.repeats
    rows = measure(sizes, repeats, args.threads)
    best = max(rows, key=lambda r: r["gflops_median"])
    doc = {
        "schema": "sranet-peak-matmul/1",
        "environment": collect_environment(threads=args.threads or None, argv=["benchmarks/peak_matmul.py", *(argv or sys.argv[1:])]),
        "method": "square fp32 a @ b; FLOPs = 2 n^3; peak = best over (library, n) of the median over repeats",
        "quick": args.quick,
        "rows": rows,
        "peak_gflops": best["gflops_median"],
        "torch_threads": _torch_threads(),
        "peak_from": {"library": best["library"], "n": best["n"]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"peak fp32 matmul: {doc['peak_gflops']:.1f} GFLOP/s ({best['library']}, n={best['n']}) -> {args.out}",
          file=sys.stderr)
    return doc


if __name__ == "__main__":
    main()
