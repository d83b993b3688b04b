"""This machine's peak matrix-multiply rate, fp32 and bf16: the denominator of every compute floor.

The floor must use the fastest GEMM any runtime the project ships reaches here, or a runtime would "beat" it. So the
peak is the best rate among: ONNX Runtime's MatMul in a one-node graph, OpenVINO's MatMul (f32, and bf16 through
INFERENCE_PRECISION_HINT where the CPU has AVX512_BF16 or AMX), PyTorch (fp32, and bf16 on those CPUs) and numpy's
BLAS, all measured with the same thread count, in blocks that take turns so a slow spell of a shared machine hits
every library alike. Each block runs in a fresh process: OpenBLAS and OpenMP threads keep spinning after a call and
would otherwise take the cores from the next library. As in the model, one operand (B, the "weights") is a constant: ONNX Runtime and OpenVINO may pre-pack
it once, as they do for the model's weights.

Square products (n^3, FLOPs = 2 n^3) give the peak: best median over sizes and libraries, per precision. The
model's own GEMM shapes (paper configuration: the im2col products of conv1 and conv2 for one patch, the spectral
conv2's DFT products, the patch embedding) are measured beside them and reported, not counted in the peak.
Environment variables that change BLAS speed (OPENBLAS_CORETYPE, *_NUM_THREADS) are recorded, never changed.

    .venv/bin/python benchmarks/peak_matmul.py                 # ~2 minutes; writes benchmarks/results/peak_matmul.json
    .venv/bin/python benchmarks/peak_matmul.py --quick         # seconds, small sizes: checks the script only
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
SCHEMA = "sranet-peak-matmul/2"
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
BLOCKS = 3  # each library's repeats come in this many blocks, libraries taking turns


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cpu_has_bf16(flags: list[str]) -> list[str]:
    """The bf16 matrix instructions this CPU has (AVX512_BF16 dot products, AMX tiles); empty when none."""
    return [f for f in BF16_FLAGS if f in flags]


def model_shapes(preset: str = "paper") -> dict[str, tuple[int, int, int]]:
    """(M, K, N) of the model's main products for one volume at batch 1, as the runtimes compute them."""
    from sranet.config import ModelConfig
    from sranet.model.flops import conv_layers

    cfg = ModelConfig.preset(preset)
    shapes = {}
    for L in conv_layers(cfg):  # im2col per patch: (out_ch x in_ch k^3) @ (in_ch k^3 x out^3)
        shapes[f"conv{L.index} im2col, one patch"] = (L.out_ch, L.in_ch * L.kernel**3, L.out**3)
    L2 = conv_layers(cfg)[-1]
    n, m, f = L2.size, L2.out, L2.size // 2 + 1
    rows = cfg.num_patches * L2.in_ch * n
    shapes[f"spectral conv{L2.index} 2-D DFT"] = (rows, n * n, 2 * n * f)
    shapes[f"spectral conv{L2.index} inverse 2-D DFT"] = (cfg.num_patches * L2.out_ch * m, 2 * n * f, m * m)
    flat = L2.out_ch * (m // cfg.pool_size) ** 3
    shapes["patch embedding"] = (cfg.num_patches, flat, cfg.feature_dim)
    return shapes


# -- one callable per (library, precision): build(M, K, N, a, b) -> run() ---------------------------------------------
def _ort_matmul(threads: int, spinning: bool = True):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    def build(a: np.ndarray, b: np.ndarray) -> Callable[[], object]:
        M, K = a.shape
        N = b.shape[1]
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
            [helper.make_tensor_value_info("a", TensorProto.FLOAT, [M, K])],
            [helper.make_tensor_value_info("c", TensorProto.FLOAT, [M, N])],
            [numpy_helper.from_array(b, "b")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        onnx.checker.check_model(model)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        if not spinning:  # taking turns with other runtimes (benchmarks/cpu_graphs.py): no busy-waiting pool
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        return lambda: sess.run(None, {"a": a})

    return build


def _openvino_matmul(threads: int, precision: str):
    from sranet.runtime.backends.openvino import import_openvino

    ov = import_openvino()
    import openvino.opset13 as ops

    core = ov.Core()

    def build(a: np.ndarray, b: np.ndarray) -> Callable[[], object]:
        param = ops.parameter(list(a.shape), np.float32, name="a")
        model = ov.Model([ops.matmul(param, ops.constant(b), False, False)], [param], "matmul")
        compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                                     "INFERENCE_PRECISION_HINT": precision})
        got = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        if got != precision:
            raise RuntimeError(f"OpenVINO compiled with INFERENCE_PRECISION_HINT {got}, not {precision}")
        request = compiled.create_infer_request()
        return lambda: request.infer({0: a})

    return build


def _torch_matmul(threads: int, dtype: str):
    import torch

    torch.set_num_threads(threads)
    tdtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]

    def build(a: np.ndarray, b: np.ndarray) -> Callable[[], object]:
        ta, tb = torch.from_numpy(a).to(tdtype), torch.from_numpy(b).to(tdtype)

        def run():
            with torch.inference_mode():
                return torch.mm(ta, tb)

        return run

    return build


def _numpy_matmul(a: np.ndarray, b: np.ndarray) -> Callable[[], object]:
    return lambda: a @ b


def libraries(bf16: bool) -> dict[tuple[str, str], str | None]:
    """(library, precision) -> None when it is measured here, or the reason it is not (nothing imported)."""
    import importlib.util

    no_bf16 = None if bf16 else "this CPU has neither AVX512_BF16 nor AMX"
    out: dict[tuple[str, str], str | None] = {("onnxruntime", "fp32"): None}
    if importlib.util.find_spec("openvino") is not None:
        out[("openvino", "fp32")], out[("openvino", "bf16")] = None, no_bf16
    else:
        out[("openvino", "fp32")] = out[("openvino", "bf16")] = "openvino is not installed (pip install 'sranet[openvino]')"
    if importlib.util.find_spec("torch") is not None:
        out[("torch", "fp32")], out[("torch", "bf16")] = None, no_bf16
    out[("numpy", "fp32")] = None
    return out


def make_builder(lib: str, precision: str, threads: int) -> Callable:
    """build(a, b) -> run() for one library, importing only that library."""
    if lib == "onnxruntime":
        return _ort_matmul(threads)
    if lib == "openvino":
        return _openvino_matmul(threads, {"fp32": "f32", "bf16": "bf16"}[precision])
    if lib == "torch":
        return _torch_matmul(threads, precision)
    return _numpy_matmul


def worker(lib: str, precision: str, threads: int, shapes: dict[str, list[int]],
           repeats: int) -> dict[str, list[float] | str]:
    """In a fresh process: time ``repeats`` products per shape for one library (after one untimed call)."""
    build = make_builder(lib, precision, threads)
    rng = np.random.default_rng(0)
    out: dict[str, list[float] | str] = {}
    for label, (M, K, N) in shapes.items():
        a = rng.standard_normal((M, K), dtype=np.float32)
        b = rng.standard_normal((K, N), dtype=np.float32)
        try:
            run = build(a, b)
            run()  # warm-up: thread pools, page faults, weight packing
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                run()
                times.append(time.perf_counter() - t0)
            out[label] = times
        except Exception as exc:  # recorded, never hidden
            out[label] = f"{type(exc).__name__}: {exc}"
    return out


def measure(shapes: dict[str, tuple[int, int, int]], keys: list[tuple[str, str]], threads: int, repeats: int, *,
            square: bool, blocks: int = BLOCKS) -> list[dict]:
    """``repeats`` timed products per shape and library, in BLOCKS blocks that take turns; each block runs in its own
    process, so no other library's thread pool (OpenBLAS and OpenMP threads keep spinning after a call) shares the
    cores. One row per (shape, library, precision)."""
    import subprocess

    per_block = max(1, repeats // blocks)
    times: dict[tuple[str, str], dict[str, list[float]]] = {k: {label: [] for label in shapes} for k in keys}
    errors: dict[tuple[str, str, str], str] = {}
    for r in range(blocks):
        for j in range(len(keys)):
            key = keys[(r + j) % len(keys)]
            job = {"lib": key[0], "precision": key[1], "threads": threads, "repeats": per_block,
                   "shapes": {k: list(v) for k, v in shapes.items()}}
            run = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True,
                                 text=True)
            if run.returncode != 0:
                for label in shapes:
                    errors[(*key, label)] = f"worker exited {run.returncode}: {run.stderr.strip()[-300:]}"
                continue
            for label, got in json.loads(run.stdout.strip().splitlines()[-1]).items():
                if isinstance(got, str):
                    errors[(*key, label)] = got
                else:
                    times[key][label] += got
    rows = []
    for label, (M, K, N) in shapes.items():
        flops = 2 * M * K * N
        for key in keys:
            base = {"shape": label, "square": square, "m": M, "k": K, "n": N, "library": key[0], "precision": key[1]}
            ts = times[key][label]
            if (*key, label) in errors or not ts:
                rows.append({**base, "error": errors.get((*key, label), "no sample")})
                continue
            med = float(np.median(ts))
            rows.append({**base, "repeats": len(ts), "median_s": med, "min_s": float(min(ts)),
                         "gflops_median": flops / med / 1e9, "gflops_best": flops / min(ts) / 1e9})
            log(f"{label:34s} {key[0]:11s} {key[1]:4s} median {med * 1e3:8.2f} ms  {rows[-1]['gflops_median']:7.1f} GFLOP/s")
    return rows


def best(rows: list[dict], precision: str) -> dict | None:
    timed = [r for r in rows if r["square"] and r["precision"] == precision and "gflops_median" in r]
    return max(timed, key=lambda r: r["gflops_median"]) if timed else None


def main(argv: list[str] | None = None) -> dict:
    from sranet.bench.env import collect_environment, cpu_flags

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1024,2048,3072", help="square sizes n (n x n @ n x n)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for every library (default: the cores this process may use); numpy uses its "
                         "BLAS default, recorded in the environment")
    ap.add_argument("--no-model-shapes", action="store_true", help="square sizes only")
    ap.add_argument("--quick", action="store_true", help="sizes 128,256, 3 repeats in one block, no model shapes "
                    "(checks the script)")
    ap.add_argument("--out", type=Path, default=RESULTS / "peak_matmul.json")
    ap.add_argument("--note", default=None, help="free text stored with the result (e.g. 'preliminary: shared machine')")
    ap.add_argument("--libraries", default=None, help="comma-separated subset of onnxruntime,openvino,torch,numpy "
                    "(default: all installed)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: one library in a fresh process
    args = ap.parse_args(argv)
    if args.worker is not None:
        job = json.loads(args.worker)
        print(json.dumps(worker(job["lib"], job["precision"], job["threads"], job["shapes"], job["repeats"])))
        return {}
    threads = args.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    sizes = [128, 256] if args.quick else [int(s) for s in args.sizes.split(",")]
    repeats = 3 if args.quick else args.repeats
    flags = cpu_flags()
    bf16 = cpu_has_bf16(flags)
    libs = libraries(bool(bf16))
    if args.libraries:
        wanted = set(args.libraries.split(","))
        unknown = wanted - {k[0] for k in libs}
        if unknown:
            ap.error(f"--libraries: unknown {sorted(unknown)}; choose from onnxruntime, openvino, torch, numpy")
        libs = {k: (v if k[0] in wanted else "not asked for (--libraries)") for k, v in libs.items()}
    keys = [k for k, v in libs.items() if v is None]
    rows = measure({f"{n}^3": (n, n, n) for n in sizes}, keys, threads, repeats, square=True,
                   blocks=1 if args.quick else BLOCKS)
    if not (args.quick or args.no_model_shapes):
        rows += measure(model_shapes(), keys, threads, max(BLOCKS, repeats // 2), square=False)
    fp32, b16 = best(rows, "fp32"), best(rows, "bf16")
    if fp32 is None:
        raise SystemExit("no fp32 product could be timed; see the errors above")
    doc = {
        "schema": SCHEMA,
        "environment": collect_environment(threads=threads, argv=["benchmarks/peak_matmul.py",
                                                                  *(argv if argv is not None else sys.argv[1:])]),
        "note": args.note,
        "method": "a @ b with b constant, FLOPs = 2 m k n; peak = best over (library, square size) of the median "
                  f"over repeats, per precision; each library's repeats in {BLOCKS} blocks taking turns, one fresh "
                  "process per block",
        "threads": threads,
        "cpu_bf16": bf16,
        "not_measured": {f"{k[0]} {k[1]}": v for k, v in libs.items() if v is not None},
        "rows": rows,
        "peak_gflops": fp32["gflops_median"],
        "peak_from": {"library": fp32["library"], "shape": fp32["shape"]},
        "peak_bf16_gflops": b16["gflops_median"] if b16 else None,
        "peak_bf16_from": {"library": b16["library"], "shape": b16["shape"]} if b16 else None,
        "quick": args.quick,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    log(f"peak fp32 matmul: {doc['peak_gflops']:.1f} GFLOP/s ({fp32['library']}, {fp32['shape']})"
        + (f"; bf16 {doc['peak_bf16_gflops']:.1f} GFLOP/s ({b16['library']}, {b16['shape']})" if b16 else "")
        + f" -> {args.out}")
    return doc


if __name__ == "__main__":
    main()
