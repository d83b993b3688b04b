"""Every graph form on every CPU runtime, model only, interleaved in one run: which graph each runtime should get.

What runs (batch 1 by default, ``--threads`` for every runtime; weights are a seeded random initialisation of the
configuration, which does not change the arithmetic):
  torch_eager                  SRANet in eval mode under torch.no_grad() (the reference of every ratio)
  ort <graph> fp32             the ONNX `sranet export --conv-impl <graph>` writes, through the same exporter and
                               parity gate, run by sranet's ONNX Runtime backend (intra-op spinning off: the
                               runtimes take turns on the same cores)
  openvino <graph> fp32|bf16   the IR `sranet export --openvino --conv-impl <graph> [--bf16]` writes (exporter and
                               gate on OpenVINO), run by sranet's OpenVINO backend
Graphs (sranet/export/graphs.py): direct, spectral (conv2 as DFT MatMuls), s2d (conv1+ReLU+pool as one 8 -> 160
channel convolution), s2d-spectral. ONNX Runtime's s2d graphs are not an export option (they do not pay there); they
are built with the same graph code and compared with PyTorch here.

Floors (peak from results/peak_matmul.json): the direct floor = the model's direct-convolution FLOPs / the fp32
peak; the bf16 floor the same over the bf16 peak; each variant's own floor = the FLOPs its graph performs / the peak
of its precision. The same 2048^3 products peak_matmul.py times (ONNX Runtime, OpenVINO f32 and bf16) also run
interleaved with the variants: the floor from those rates shares the run's conditions (``in_run_gemm``,
``p50_over_direct_floor_in_run``), which matters on a shared machine. Targets checked: best fp32 p50 <= 1.0x the direct floor, best reduced-precision p50 <= 0.75x
it, >= 6x PyTorch eager (paired, same run). Per-operator profiles (ONNX Runtime's profiler, OpenVINO's performance
counters) of the best graph of each runtime and precision say where the time goes.

    .venv/bin/python benchmarks/cpu_graphs.py --note "preliminary: shared machine"   # ~5 minutes, paper config
    .venv/bin/python benchmarks/cpu_graphs.py --quick                                # tiny config: checks the script
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
SCHEMA = "sranet-cpu-graphs/1"
TARGET_FP32, TARGET_REDUCED, TARGET_EAGER = 1.0, 0.75, 6.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def build_artifacts(folder: Path, preset: str, seed: int, parity_cases: int, want_openvino: bool, bf16: bool):
    """name -> dict(runtime, precision, graph, path, parity) for every variant; failures as dict(error=...)."""
    import onnx
    import torch

    from sranet.config import ModelConfig, PreprocessConfig
    from sranet.export.graphs import GRAPHS, build_graph, plan_graph
    from sranet.export.onnx import export_onnx, to_onnx_proto
    from sranet.export.parity import compare, parity_inputs, torch_outputs
    from sranet.model.checkpoint import save_checkpoint
    from sranet.model.sranet import SRANet
    from sranet.runtime.artifact import ArtifactInfo

    cfg = ModelConfig.preset(preset)
    torch.manual_seed(seed)
    model = SRANet(cfg).eval()
    ckpt = save_checkpoint(folder / "model.pt", model=model, preprocess_config=PreprocessConfig.for_model(cfg),
                           threshold=0.5, epoch=0, metrics={}, train_config={})
    graphs = []
    for g in GRAPHS:
        try:
            graphs.append((g, plan_graph(cfg, g)))
        except Exception as exc:  # noqa: BLE001 - e.g. spectral on a small preset: recorded, not hidden
            log(f"graph {g} does not apply to {preset}: {exc}")
    out: dict[str, dict[str, Any]] = {}
    x, label = parity_inputs(cfg, PreprocessConfig.for_model(cfg), parity_cases, seed=seed)
    reference = None
    for g, plan in graphs:
        name = f"ort {g} fp32"
        t0 = time.perf_counter()
        try:
            if g in ("direct", "spectral"):  # what `sranet export --conv-impl g` writes, through its gate
                res = export_onnx(ckpt, folder / f"{g}.onnx", conv_impl=g, parity_cases=parity_cases, seed=seed)
                parity = res.parity.to_dict()
            else:  # not an export option for ONNX Runtime: same graph code, same gate numbers computed here
                from sranet.runtime.backends.onnxruntime import OnnxRuntimeBackend

                proto = to_onnx_proto(build_graph(model, plan))
                info = ArtifactInfo(cfg, PreprocessConfig.for_model(cfg), 0.5, extra=plan.metadata())
                onnx.helper.set_model_props(proto, info.to_metadata())
                onnx.save(proto, str(folder / f"{g}.onnx"))
                reference = reference or torch_outputs(model, x)
                with OnnxRuntimeBackend(folder / f"{g}.onnx") as b:
                    o = [b.infer(x[i:i + 1]) for i in range(len(x))]
                parity = compare(reference[0], reference[1], np.concatenate([r["prob"] for r in o]),
                                 np.concatenate([r["attention"] for r in o]), threshold=0.5, precision="fp32",
                                 inputs=label).to_dict()
            out[name] = {"runtime": "onnxruntime", "precision": "fp32", "graph": g, "path": folder / f"{g}.onnx",
                         "parity": _parity_summary(parity), "graph_matmul_flops": plan.matmul_flops(cfg)}
        except Exception as exc:  # noqa: BLE001
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
        log(f"{name}: built in {time.perf_counter() - t0:.1f} s")
        if not want_openvino:
            continue
        from sranet.export.openvino import export_openvino

        for precision in ("fp32", "bf16") if bf16 else ("fp32",):
            name = f"openvino {g} {precision}"
            t0 = time.perf_counter()
            try:
                res = export_openvino(ckpt, folder / f"{g}.{precision}.xml", precision=precision, conv_impl=g,
                                      parity_cases=parity_cases, seed=seed)
                out[name] = {"runtime": "openvino", "precision": precision, "graph": g, "path": res.path,
                             "parity": _parity_summary(res.parity.to_dict()),
                             "graph_matmul_flops": plan.matmul_flops(cfg)}
            except Exception as exc:  # noqa: BLE001
                out[name] = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"{name}: built in {time.perf_counter() - t0:.1f} s")
    return model, cfg, out


def _parity_summary(p: dict) -> dict:
    return {k: p[k] for k in ("passed", "cases", "max_abs_prob", "decision_flips", "max_abs_attention",
                              "top1_agreement_tie_aware", "failures")}


GEMM_N = 2048


def in_run_gemms(threads: int, want_ov: bool, bf16: bool, n: int) -> dict[str, tuple]:
    """name -> (call, precision, n): the square products benchmarks/peak_matmul.py times, built the same way."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("peak_matmul", Path(__file__).with_name("peak_matmul.py"))
    peak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peak)
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    builders = {"gemm onnxruntime fp32": (peak._ort_matmul(threads, spinning=False), "fp32")}
    if want_ov:
        builders["gemm openvino fp32"] = (peak._openvino_matmul(threads, "f32"), "fp32")
        if bf16:
            builders["gemm openvino bf16"] = (peak._openvino_matmul(threads, "bf16"), "bf16")
    out = {}
    for name, (build, precision) in builders.items():
        run = build(a, b)
        run()
        out[name] = (lambda run=run: (run(), None)[1], precision, n)
    return out


def open_variant(v: dict, threads: int):
    if v["runtime"] == "onnxruntime":
        from sranet.runtime.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(v["path"], threads=threads, spinning=False)
    from sranet.runtime.backends.openvino import OpenVinoBackend

    return OpenVinoBackend(v["path"], threads=threads)


# -- per-operator profiles ------------------------------------------------------------------------------------------
def ort_profile(path: Path, x: np.ndarray, threads: int, runs: int, top: int = 12) -> dict:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp, "ort"))
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        sess.run(None, {"ct": x})
        for _ in range(runs):
            sess.run(None, {"ct": x})
        events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: dict[str, float] = collections.defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[f"{e['args'].get('op_name')} {e['name'][:-len('_kernel_time')]}"] += e["dur"] / 1e3
    return _top(per_op, runs + 1, top)


def ov_profile(path: Path, precision: str, x: np.ndarray, threads: int, runs: int, top: int = 12) -> dict:
    from sranet.runtime.backends.openvino import PRECISION_HINTS, import_openvino

    ov = import_openvino()
    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape({"ct": list(x.shape)})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                                 "INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision],
                                                 "PERF_COUNT": True})
    request = compiled.create_infer_request()
    request.infer({"ct": x})
    per_op: dict[str, float] = collections.defaultdict(float)
    for _ in range(runs):
        request.infer({"ct": x})
        for p in request.profiling_info:
            if p.status == p.Status.EXECUTED:
                per_op[f"{p.node_type} ({p.exec_type}) {p.node_name}"] += p.real_time.total_seconds() * 1e3
    return _top(per_op, runs, top)


def _top(per_op: dict[str, float], runs: int, top: int) -> dict:
    total = sum(per_op.values())
    rows = sorted(per_op.items(), key=lambda kv: -kv[1])
    return {"runs": runs, "total_ms_per_run": total / runs,
            "top": [{"op": k, "ms_per_run": v / runs, "share": v / total} for k, v in rows[:top]],
            "rest_share": sum(v for _, v in rows[top:]) / total if total else 0.0}


def main(argv: list[str] | None = None) -> dict:
    import importlib.util

    import torch

    from sranet.bench.env import collect_environment, cpu_flags
    from sranet.bench.runner import Settings, run_interleaved
    from sranet.bench.stats import paired_ratios, summarize
    from sranet.model.flops import count_flops

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="threads for every runtime (default: usable cores)")
    ap.add_argument("--warmup-s", type=float, default=3.0)
    ap.add_argument("--min-iters", type=int, default=10)
    ap.add_argument("--duration-s", type=float, default=60.0)
    ap.add_argument("--parity-cases", type=int, default=4)
    ap.add_argument("--profile-runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-openvino", action="store_true")
    ap.add_argument("--peak-json", type=Path, default=RESULTS / "peak_matmul.json")
    ap.add_argument("--note", default=None, help="free text stored with the result (e.g. 'preliminary: ...')")
    ap.add_argument("--quick", action="store_true", help="tiny preset, 2 rounds, 2 parity cases (checks the script)")
    ap.add_argument("--out", type=Path, default=RESULTS / "cpu_graphs.json")
    args = ap.parse_args(argv)
    threads = args.threads or usable_cores()
    if args.quick:
        args.preset, args.min_iters, args.duration_s, args.warmup_s = "tiny", 2, 0.0, 0.0
        args.parity_cases, args.profile_runs = 2, 1
    torch.set_num_threads(threads)
    want_ov = not args.no_openvino and importlib.util.find_spec("openvino") is not None
    bf16_cpu = any(f in cpu_flags() for f in ("avx512_bf16", "amx_bf16"))
    peak = json.loads(args.peak_json.read_text()) if args.peak_json.is_file() else {}
    peaks = {"fp32": peak.get("peak_gflops"), "bf16": peak.get("peak_bf16_gflops")}

    with tempfile.TemporaryDirectory() as tmp:
        model, cfg, variants = build_artifacts(Path(tmp), args.preset, args.seed, args.parity_cases, want_ov,
                                               bf16_cpu)
        S, B = cfg.input_size, args.batch
        x = np.random.default_rng(args.seed).standard_normal((B, 1, S, S, S), dtype=np.float32)
        backends, calls = {}, {}

        def torch_eager():
            with torch.no_grad():
                model(torch.from_numpy(x))

        calls["torch_eager"] = torch_eager
        for name, v in variants.items():
            if "error" in v:
                continue
            try:
                backends[name] = open_variant(v, threads)
                backends[name].infer(x)
                calls[name] = lambda b=backends[name]: b.infer(x)
            except Exception as exc:  # noqa: BLE001
                v["error"] = f"{type(exc).__name__}: {exc}"
        gemm = in_run_gemms(threads, want_ov, bf16_cpu, 256 if args.quick else GEMM_N)
        calls.update({k: v[0] for k, v in gemm.items()})
        settings = Settings(warmup_s=args.warmup_s, warmup_iters=1, min_iters=args.min_iters,
                            duration_s=args.duration_s)
        names = list(calls)
        log(f"timing {len(names)} variants interleaved, batch {B}, {threads} threads ...")
        rounds = run_interleaved([lambda f=calls[n]: (f(), None)[1] for n in names], settings)
        ratios = paired_ratios([[r["wall_ms"] for r in s] for s in rounds])
        flops = count_flops(cfg).matmul_flops
        direct_floor = B * flops / (peaks["fp32"] * 1e9) * 1e3 if peaks["fp32"] else None
        results, in_run = [], {}
        for name, s, ratio in zip(names, rounds, ratios, strict=True):
            if name in gemm:  # the GEMM rate in this same run, for floors that share the run's conditions
                med = float(np.median([r["wall_ms"] for r in s]))
                in_run[name] = {"precision": gemm[name][1], "n": gemm[name][2], "p50_ms": med,
                                "gflops_p50": 2 * gemm[name][2] ** 3 / (med * 1e-3) / 1e9}
                continue
            host = summarize([r["wall_ms"] for r in s], batch=B)
            v = variants.get(name, {"runtime": "torch", "precision": "fp32", "graph": "eager",
                                    "graph_matmul_flops": flops})
            pk = peaks.get(v["precision"])
            row = {"name": name, "runtime": v["runtime"], "precision": v["precision"], "graph": v["graph"],
                   "host": host, "ratio_vs_torch_eager": ratio, "speedup_vs_torch_eager": 1.0 / ratio["paired_median_ratio"],
                   "p50_over_direct_floor": host["p50_ms"] / direct_floor if direct_floor else None,
                   "own_floor_ms": B * v["graph_matmul_flops"] / (pk * 1e9) * 1e3 if pk else None}
            row["p50_over_own_floor"] = host["p50_ms"] / row["own_floor_ms"] if row["own_floor_ms"] else None
            results.append(row)
            log(f"  {name:28s} p50 {host['p50_ms']:8.1f} ms  p90 {host['p90_ms']:8.1f}  p99 {host['p99_ms']:8.1f}  "
                f"x{row['speedup_vs_torch_eager']:.2f} vs eager" + (f"  {row['p50_over_direct_floor']:.2f}x direct floor"
                                                                 if direct_floor else ""))
        run_peak = {p: max((g["gflops_p50"] for g in in_run.values() if g["precision"] == p), default=None)
                    for p in ("fp32", "bf16")}
        run_floor = B * flops / (run_peak["fp32"] * 1e9) * 1e3 if run_peak["fp32"] else None
        for row in results:
            row["p50_over_direct_floor_in_run"] = row["host"]["p50_ms"] / run_floor if run_floor else None
        profiles = {}
        for runtime, precision in (("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "bf16")):
            rows = [r for r in results if r["runtime"] == runtime and r["precision"] == precision]
            if not rows:
                continue
            best = min(rows, key=lambda r: r["host"]["p50_ms"])
            path = variants[best["name"]]["path"]
            log(f"profiling {best['name']} ...")
            try:
                profiles[best["name"]] = (ort_profile(path, x, threads, args.profile_runs) if runtime == "onnxruntime"
                                          else ov_profile(path, precision, x, threads, args.profile_runs))
            except Exception as exc:  # noqa: BLE001
                profiles[best["name"]] = {"error": f"{type(exc).__name__}: {exc}"}
        for b in backends.values():
            b.close()

    def best_of(pred):
        rows = [r for r in results if pred(r)]
        return min(rows, key=lambda r: r["host"]["p50_ms"]) if rows else None

    fp32_best = best_of(lambda r: r["runtime"] != "torch" and r["precision"] == "fp32")
    reduced_best = best_of(lambda r: r["precision"] not in ("fp32",))
    fastest = best_of(lambda r: r["runtime"] != "torch")
    targets = {
        "best_fp32": None if fp32_best is None else {
            "name": fp32_best["name"], "p50_ms": fp32_best["host"]["p50_ms"],
            "p50_over_direct_floor": fp32_best["p50_over_direct_floor"], "target": TARGET_FP32,
            "met": None if direct_floor is None else fp32_best["p50_over_direct_floor"] <= TARGET_FP32},
        "best_reduced_precision": None if reduced_best is None else {
            "name": reduced_best["name"], "p50_ms": reduced_best["host"]["p50_ms"],
            "p50_over_direct_floor": reduced_best["p50_over_direct_floor"], "target": TARGET_REDUCED,
            "met": None if direct_floor is None else reduced_best["p50_over_direct_floor"] <= TARGET_REDUCED},
        "speedup_vs_torch_eager": None if fastest is None else {
            "name": fastest["name"], "speedup": fastest["speedup_vs_torch_eager"], "target": TARGET_EAGER,
            "met": fastest["speedup_vs_torch_eager"] >= TARGET_EAGER},
    }
    doc = {
        "schema": SCHEMA,
        "environment": collect_environment(threads=threads, argv=["benchmarks/cpu_graphs.py",
                                                                  *(argv if argv is not None else sys.argv[1:])]),
        "note": args.note,
        "model": {"preset": args.preset, "config": cfg.to_dict(), "weights": f"random init, torch seed {args.seed}"},
        "matmul_flops_per_volume": flops,
        "peak": {"fp32_gflops": peaks["fp32"], "bf16_gflops": peaks["bf16"],
                 "source": str(args.peak_json) if peak else None,
                 "date_utc": (peak.get("environment") or {}).get("date_utc"), "note": peak.get("note")},
        "in_run_gemm": {"note": "n^3 fp32/bf16 products with a constant operand, interleaved with the variants; "
                                "the floor computed from them shares the run's conditions", "calls": in_run,
                        "peak_gflops": run_peak, "direct_floor_fp32_ms": run_floor},
        "floors_ms": {"direct_fp32": direct_floor,
                      "direct_bf16": B * flops / (peaks["bf16"] * 1e9) * 1e3 if peaks["bf16"] else None},
        "settings": {"batch": B, "threads": threads, "warmup_s": args.warmup_s, "min_iters": args.min_iters,
                     "duration_s": args.duration_s, "interleaved": True, "outliers_removed": False,
                     "percentile_method": "numpy linear", "ort_spinning": "off", "quick": args.quick},
        "variants": {k: {kk: (str(vv) if kk == "path" else vv) for kk, vv in v.items() if kk != "path"}
                     for k, v in variants.items()},
        "results": results,
        "targets": targets,
        "profiles": profiles,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    log(f"wrote {args.out}")
    return doc


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
