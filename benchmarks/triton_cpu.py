#!/usr/bin/env python
"""Requests per second and latency (p50/p99) through a real Triton server on this CPU, against the runtime called
directly, for the same ONNX model and inputs.

    make triton-server                                   # the server environment, once
    .venv/bin/python benchmarks/triton_cpu.py            # small and paper presets, a few minutes

For each preset an SRANet with seeded random weights (latency does not depend on them) is exported with the
exporter of `sranet export` (no parity gate), served by `sranet export --triton-backend python --triton-device cpu`'s
repository (the Python-backend model runs the ONNX through sranet.runtime with ONNX Runtime's CPU provider), and
timed in these modes, one after another, for --duration-s each:

  direct_1         the runtime's backend.infer, batch 1, one caller (no server)
  direct_4threads  the same backend called by 4 threads at once (ONNX Runtime sessions are thread-safe)
  triton_http_1    one HTTP client, batch-1 requests, one at a time
  triton_grpc_1    one gRPC client, the same
  triton_http_4    4 HTTP clients at once (Triton's dynamic batcher may join their requests)

Latency is per request, wall clock, client side. The machine is shared by other work (2 cores; the server and the
clients run on the same cores): the numbers are noisy and say what this box did, not what a server would.
Writes benchmarks/results/triton_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"


def timed_loop(call, *, duration_s: float, clients: int, min_requests: int = 5) -> dict:
    """Run ``call()`` from ``clients`` threads until ``duration_s`` has passed (each client at least
    ``min_requests`` times); latency summary and requests per second over the whole run."""
    from sranet.bench.stats import summarize

    samples: list[float] = []
    lock = threading.Lock()
    errors: list[str] = []
    start = time.perf_counter()
    deadline = start + duration_s

    def client() -> None:
        done = 0
        while time.perf_counter() < deadline or done < min_requests:
            t0 = time.perf_counter()
            try:
                call()
            except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            with lock:
                samples.append((time.perf_counter() - t0) * 1e3)
            done += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    out = {"clients": clients, "requests": len(samples), "wall_s": round(wall, 2),
           "requests_per_s": round(len(samples) / wall, 3), "latency": summarize(samples)}
    if errors:
        out["errors"] = errors[:5]
    return out


def run_preset(preset: str, tmp: Path, duration_s: float) -> dict:
    import onnx
    import torch
    import tritonclient.grpc as tg
    import tritonclient.http as th

    from sranet.bench.tritonserver import start_tritonserver
    from sranet.config import ModelConfig, PreprocessConfig
    from sranet.export.onnx import DEFAULT_OPSET, EXPORTER, quiet, to_onnx_proto
    from sranet.export.triton import write_triton_repo
    from sranet.model.sranet import SRANet
    from sranet.runtime.artifact import ArtifactInfo
    from sranet.runtime.backends.base import open_backend

    cfg = ModelConfig.preset(preset)
    torch.manual_seed(0)
    with quiet():
        proto = to_onnx_proto(SRANet(cfg).eval())
    info = ArtifactInfo(cfg, PreprocessConfig.for_model(cfg), 0.5,
                        extra={"sranet.exporter": EXPORTER, "sranet.opset": str(DEFAULT_OPSET)})
    onnx.helper.set_model_props(proto, info.to_metadata())
    path = tmp / f"{preset}.onnx"
    onnx.save(proto, str(path))
    S = cfg.input_size
    x = np.random.default_rng(0).standard_normal((1, 1, S, S, S)).astype(np.float32)
    result: dict = {"preset": preset, "input": [1, 1, S, S, S], "onnx_bytes": path.stat().st_size}

    backend = open_backend(path)
    backend.infer(x)  # warm-up
    result["direct_1"] = timed_loop(lambda: backend.infer(x), duration_s=duration_s, clients=1)
    result["direct_4threads"] = timed_loop(lambda: backend.infer(x), duration_s=duration_s, clients=4)
    expected = backend.infer(x)["prob"]
    backend.close()

    repo = tmp / f"repo_{preset}"
    write_triton_repo(path, repo, max_batch=8, device="cpu", backend="python")
    t0 = time.perf_counter()
    with start_tritonserver(repo) as server:
        result["server_ready_s"] = round(time.perf_counter() - t0, 2)
        local = threading.local()

        def http_call() -> None:
            if not hasattr(local, "http"):
                local.http = th.InferenceServerClient(server.http_url)
            inp = th.InferInput("ct", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            prob = local.http.infer("sranet", [inp]).as_numpy("prob").reshape(-1)
            if abs(float(prob[0]) - float(expected[0])) > 1e-5:
                raise AssertionError(f"Triton answered {prob[0]}, the runtime {expected[0]}")

        def grpc_call() -> None:
            if not hasattr(local, "grpc"):
                local.grpc = tg.InferenceServerClient(server.grpc_url)
            inp = tg.InferInput("ct", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            local.grpc.infer("sranet", [inp])

        http_call()  # warm-up (the model's own warm-up request ran at load)
        result["triton_http_1"] = timed_loop(http_call, duration_s=duration_s, clients=1)
        result["triton_grpc_1"] = timed_loop(grpc_call, duration_s=duration_s, clients=1)
        before = th.InferenceServerClient(server.http_url).get_inference_statistics("sranet")["model_stats"][0]
        result["triton_http_4"] = timed_loop(http_call, duration_s=duration_s, clients=4)
        after = th.InferenceServerClient(server.http_url).get_inference_statistics("sranet")["model_stats"][0]
        inferences = after["inference_count"] - before["inference_count"]
        executions = after["execution_count"] - before["execution_count"]
        result["triton_http_4"]["server_batches"] = {"inferences": inferences, "executions": executions,
                                                     "mean_batch": round(inferences / max(executions, 1), 2)}
    for mode in ("triton_http_1", "triton_grpc_1"):
        d, t = result["direct_1"]["latency"]["p50_ms"], result[mode]["latency"]["p50_ms"]
        result[mode]["p50_overhead_ms_vs_direct_1"] = round(t - d, 3)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=["small", "paper"])
    ap.add_argument("--duration-s", type=float, default=15.0, help="seconds per mode (default 15)")
    ap.add_argument("--out", type=Path, default=RESULTS / "triton_cpu.json")
    args = ap.parse_args(argv)

    from sranet.bench.env import collect_environment
    from sranet.bench.tritonserver import find_server_env
    from sranet.runtime.files import atomic_write

    server_env = find_server_env()
    doc = {"what": "requests/s and latency through Triton's Python backend vs sranet.runtime called directly, CPU",
           "environment": collect_environment(argv=["benchmarks/triton_cpu.py", *(argv or sys.argv[1:])]),
           "server": {"tritonserver": "nvidia-pytriton 0.7.0 (Triton 2.51, Python backend)",
                      "server_python": server_env.python_version,
                      "model": "sranet export --triton-backend python --triton-device cpu (KIND_CPU, 1 instance, "
                               "dynamic batching up to 8, max queue delay 100 us)"},
           "noisy": "shared 2-core machine; server and clients on the same cores; read ratios within one run",
           "presets": []}
    with tempfile.TemporaryDirectory(prefix="sranet_triton_bench_") as tmp:
        for preset in args.presets:
            print(f"[triton_cpu] {preset} ...", flush=True)
            doc["presets"].append(run_preset(preset, Path(tmp), args.duration_s))
            for mode, row in doc["presets"][-1].items():
                if isinstance(row, dict) and "latency" in row:
                    print(f"[triton_cpu]   {mode:16s} {row['requests_per_s']:8.2f} req/s  p50 "
                          f"{row['latency']['p50_ms']:9.2f} ms  p99 {row['latency']['p99_ms']:9.2f} ms", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, json.dumps(doc, indent=1) + "\n")
    print(f"[triton_cpu] wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
