#!/usr/bin/env python
"""One prepared GPU check: parity and latency of the PyTorch CUDA backend, GPU preprocessing, fp16 TensorRT and
TensorRT-RTX engines (where importable) and ONNX Runtime's CUDA graphs, written to one JSON file.

Made for a machine with an NVIDIA GPU, PyTorch with CUDA, CuPy, numpy, onnx, onnxruntime (CPU), OpenCV and typer,
and without pydicom, nibabel or TensorRT: inputs are built in memory (synthetic phantoms, a random 512x512x300
volume) and the checkpoint has random weights (paper configuration), so nothing is read from disk.

    python benchmarks/gpu_check.py --out benchmarks/results/gpu_check_h100.json      # on the GPU, < 4 minutes
    python benchmarks/gpu_check.py --dry-run --out /tmp/gpu_check_dry.json           # here, CPU only, tiny sizes

What it measures:
- parity: PyTorch CUDA fp32/fp16/bf16 (eager and CUDA graph) vs the PyTorch CPU fp32 reference, max |d prob| and
  max |d attention| on preprocessed phantoms; GPU preprocessing vs CPU preprocessing (HU and network input).
- engines: fp16 TensorRT and TensorRT-RTX plans run B=3 -> 1 -> 3, with and without CUDA graphs, each batch against
  ONNX Runtime on the CPU (max |d|, decision flips, top-1 patch); ONNX Runtime's CUDA provider with CUDA graphs the
  same way. A plan that cannot run on the GPU here (TensorRT-RTX has no target for an H100/H200) records the refusal.
- latency: backend.infer end to end (numpy in, numpy out; host clock) and GPU compute only (CUDA events around the
  forward pass on a device-resident input), batch 1 and 16, with and without CUDA graphs: p50/p90/p99 (ms).
- preprocessing a 512x512x300 int16 volume to 128^3 (whole volume and a femoral-head ROI), CPU vs GPU.
Every loop is ``sranet.bench.runner.run_interleaved`` bounded by time (--loop-s) and iterations, with GPU time from
CUDA events (``DeviceTimer``), summarised by ``sranet.bench.stats.summarize``; sections that fail record their error
and the rest go on. The JSON is rewritten (atomically) after every section, so a run cut short still leaves its
results.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

RESULTS: dict = {}


def save(out: Path) -> None:
    from sranet.runtime.files import atomic_write

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, json.dumps(RESULTS, indent=2, sort_keys=False, default=str) + "\n")


def section(name: str, out: Path):
    """Decorator: run a section, store its dict (or its error) under RESULTS[name], save the JSON."""
    def wrap(fn):
        def run(*args, **kwargs):
            t = time.perf_counter()
            print(f"[gpu_check] {name} ...", flush=True)
            try:
                RESULTS[name] = fn(*args, **kwargs)
            except Exception as exc:  # record and go on: one broken section must not lose the others
                RESULTS[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=6)}
                print(f"[gpu_check] {name} FAILED: {exc}", flush=True)
            RESULTS.setdefault("section_seconds", {})[name] = round(time.perf_counter() - t, 2)
            save(out)
            return RESULTS[name]
        return run
    return wrap


def timed(fn, *, loop_s: float, max_iters: int, device: bool = False, warmup: int = 3) -> dict:
    """Latency of ``fn`` with the package's harness: host wall time (``fn`` returns when its result is on the host),
    or with ``device`` the GPU time between two CUDA events around ``fn`` (which only enqueues work)."""
    from sranet.bench.runner import DeviceTimer, Settings, run_interleaved, summarize_rounds

    settings = Settings(warmup_s=0.0, warmup_iters=warmup, min_iters=5, duration_s=loop_s,
                        max_iters=max(5, max_iters))
    def call() -> None:  # the harness records what a call returns; fn's result is not a measurement
        fn()

    if device:
        call = DeviceTimer().wrap(fn)
    rounds = run_interleaved([call], settings)[0]
    return summarize_rounds(rounds, "device_ms" if device else "wall_ms", 1)


# -- inputs -------------------------------------------------------------------------------------------------------
def make_checkpoint(tmp: Path, preset: str) -> Path:
    """A checkpoint of random weights (torch seed 0), written by the library's own writer."""
    import torch

    from sranet.config import ModelConfig, PreprocessConfig
    from sranet.model.checkpoint import save_checkpoint
    from sranet.model.sranet import SRANet

    torch.manual_seed(0)
    cfg = ModelConfig.preset(preset)
    return save_checkpoint(tmp / f"random_{preset}.pt", model=SRANet(cfg).eval(),
                           preprocess_config=PreprocessConfig.for_model(cfg), threshold=0.5, epoch=0, metrics={},
                           train_config={"note": "random weights for gpu_check"})


def phantom_inputs(cfg, n: int, dry: bool) -> np.ndarray:
    """(n, 1, S, S, S) float32 network inputs from synthetic hip phantoms through the CPU preprocessing."""
    from sranet.data.synthetic import generate_case
    from sranet.runtime.preprocess import preprocess
    from sranet.runtime.roi import parse_roi

    shape = (48, 64, 64) if dry else (96, 128, 128)
    out = []
    for i in range(n):
        case = generate_case(seed=100 + i, stage=i % 5, shape=shape)
        out.append(preprocess(case.to_volume(), cfg, parse_roi(case.roi)).input)
    return np.stack(out)[:, None].astype(np.float32)


def big_volume(dry: bool):
    """A CT-sized int16 volume (D, H, W) = (300, 512, 512) (dry run: (60, 96, 96)) of smooth random HU."""
    import cv2

    from sranet.runtime.volume import Volume

    D, H, W = (60, 96, 96) if dry else (300, 512, 512)
    rng = np.random.default_rng(7)
    base = rng.normal(0, 350, size=(D, H // 8, W // 8)).astype(np.float32)
    hu = np.stack([cv2.resize(s, (W, H), interpolation=cv2.INTER_CUBIC) for s in base])
    hu = np.clip(hu + rng.normal(0, 30, size=hu.shape), -1024, 3071).astype(np.int16)
    direction = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    return Volume(hu=hu, spacing_mm=(1.0, 0.78, 0.78), direction=direction, source="synthetic:gpu_check")


# -- sections -----------------------------------------------------------------------------------------------------
def environment(args, cuda: bool) -> dict:
    """``sranet.bench.env.collect_environment`` plus what PyTorch says about CUDA, and this check's settings."""
    import torch

    from sranet.bench.env import collect_environment

    env = collect_environment(argv=[sys.executable.rsplit("/", 1)[-1], *sys.argv])
    env["command"] = shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv])
    env.update(dry_run=args.dry_run, preset=args.preset, torch_cuda=torch.version.cuda, cuda_available=cuda,
               cudnn=torch.backends.cudnn.version() if cuda else None)
    if cuda:
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, compute_capability=f"{props.major}.{props.minor}",
                   gpu_memory_gib=round(props.total_memory / 2**30, 1))
    return env


def torch_parity(ckpt: Path, x: np.ndarray, cuda: bool) -> dict:
    from sranet.model.backend import DTYPES, TorchBackend

    ref = TorchBackend(ckpt, device="cpu").infer(x)
    out = {"reference": "PyTorch CPU fp32", "batch": int(x.shape[0]), "prob_reference": ref["prob"].round(6).tolist()}
    runs = [("cpu", "bf16", False)]
    if cuda:
        runs = [("cuda:0", d, g) for d in DTYPES for g in (False, True)]
    for device, dtype, graphs in runs:
        backend = TorchBackend(ckpt, device=device, dtype=dtype, cuda_graphs=graphs)
        got = backend.infer(x)
        backend.infer(x)  # a graph replay on the second call
        got2 = backend.infer(x)
        out[f"{device.split(':')[0]}_{dtype}{'_graph' if graphs else ''}"] = {
            "max_abs_d_prob": float(np.abs(got["prob"] - ref["prob"]).max()),
            "max_abs_d_attention": float(np.abs(got["attention"] - ref["attention"]).max()),
            "repeat_identical": bool(np.array_equal(got["prob"], got2["prob"])),
        }
    return out


def torch_latency(ckpt: Path, cfg, args, cuda: bool) -> dict:
    import torch

    from sranet.model.backend import DTYPES, TorchBackend

    S = cfg.input_size
    out = {}
    dtypes = DTYPES if cuda else ("fp32",)
    batches = (1, 16) if cuda else (1, 2)
    for dtype in dtypes:
        for graphs in ((False, True) if cuda else (False,)):
            backend = TorchBackend(ckpt, device="cuda:0" if cuda else "cpu", dtype=dtype, cuda_graphs=graphs)
            for b in batches:
                x = np.random.default_rng(b).standard_normal((b, 1, S, S, S)).astype(np.float32)
                key = f"{dtype}_b{b}_{'graph' if graphs else 'eager'}"
                row = {"end_to_end": timed(lambda x=x, backend=backend: backend.infer(x), loop_s=args.loop_s,
                                          max_iters=args.max_iters)}
                if cuda:
                    if graphs:
                        graph, static_in, _, _ = backend._graphs.get(b) or backend._capture(b)
                        row["gpu_only"] = timed(graph.replay, loop_s=args.loop_s, max_iters=args.max_iters, device=True)
                    else:
                        xd = torch.from_numpy(x).to(backend.torch_device)

                        def fwd(xd=xd, backend=backend):
                            with torch.inference_mode():
                                backend._forward(xd)
                        row["gpu_only"] = timed(fwd, loop_s=args.loop_s, max_iters=args.max_iters, device=True)
                row["per_volume_p50_ms"] = round(row["end_to_end"]["p50_ms"] / b, 4)
                out[key] = row
                print(f"[gpu_check]   torch {key}: e2e p50 {row['end_to_end']['p50_ms']:.3f} ms", flush=True)
            backend.close()
            if cuda:
                torch.cuda.empty_cache()
    return out


def preprocessing(cfg, args, cuda: bool) -> dict:
    from sranet.runtime import preprocess as cpu
    from sranet.runtime.preprocess_gpu import normalize_xp, preprocess_gpu, resample_xp
    from sranet.runtime.roi import parse_roi

    volume = big_volume(args.dry_run)
    D, H, W = volume.hu.shape
    rois = {"whole_volume": None,
            "femoral_head_roi": parse_roi(f"{D // 3}:{D // 3 + D // 3},{H // 4}:{H // 4 + H // 4},{W // 2}:{W // 2 + W // 4}")}
    out = {"volume_shape": [D, H, W], "dtype": str(volume.hu.dtype), "output_size": cfg.output_size,
           "gpu_path": "cupy" if cuda else "numpy run of the same array-API code (dry run / no GPU)"}
    for name, roi in rois.items():
        ref = cpu.preprocess(volume, cfg, roi)
        if cuda:
            got = preprocess_gpu(volume, cfg, roi)
            run_gpu = lambda roi=roi: preprocess_gpu(volume, cfg, roi)  # noqa: E731
        else:
            hu = resample_xp(volume.hu, ref.plan, cfg, np)
            got = cpu.Prepared(normalize_xp(hu, cfg, np), hu, ref.plan)
            run_gpu = lambda ref=ref: normalize_xp(resample_xp(volume.hu, ref.plan, cfg, np), cfg, np)  # noqa: E731
        out[name] = {
            "max_abs_d_hu": float(np.abs(got.hu - ref.hu).max()),
            "max_abs_d_input": float(np.abs(got.input - ref.input).max()),
            "cpu": timed(lambda roi=roi: cpu.preprocess(volume, cfg, roi), loop_s=args.loop_s, max_iters=50, warmup=1),
            "gpu": timed(run_gpu, loop_s=args.loop_s, max_iters=200, warmup=2),
            "gpu_stage_ms_first_call": {k: round(v, 3) for k, v in got.timings_ms.items()},  # cold: includes CuPy kernel compilation
        }
    return out


def cuda_buffers_check() -> dict:
    """Pinned upload -> in-place kernel captured in a CUDA graph -> download, with sranet's CudaBuffers (CuPy)."""
    from sranet.runtime.cuda_buffers import CudaBuffers

    buf = CudaBuffers({"x": (8, 4096), "y": (8, 4096)}, {"x": np.float32, "y": np.float32})
    cp = buf.cp
    results = []
    for batch in (8, 3, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 4096)).astype(np.float32)
        buf.upload("x", x)

        def enqueue(_ptr, buf=buf):
            with buf.stream:
                cp.multiply(buf["x"].device, 2.0, out=buf["y"].device)
        buf.run_graph("double", enqueue)
        y = buf.download("y", batch)
        buf.synchronize()
        results.append(bool(np.allclose(y, 2 * x)))
    buf.close()
    return {"graph_replay_correct": results, "ok": all(results)}


def compare(got: dict, ref: dict, threshold: float) -> dict:
    """Parity of one batch against the reference: max |d prob|, max |d attention|, decision flips, top-1 patch."""
    return {"max_abs_d_prob": float(np.abs(got["prob"] - ref["prob"]).max()),
            "max_abs_d_attention": float(np.abs(got["attention"] - ref["attention"]).max()),
            "decision_flips": int(((got["prob"] >= threshold) != (ref["prob"] >= threshold)).sum()),
            "top1_agree": int((got["attention"].argmax(1) == ref["attention"].argmax(1)).sum()),
            "batch": int(got["prob"].shape[0])}


BATCHES = (3, 1, 3)  # a batch change and back: each replay must use the graph (and context) of its own batch size


def tensorrt_check(ckpt: Path, tmp: Path, x: np.ndarray, cfg, args, flavour: str = "tensorrt") -> dict:
    """Build an fp16 plan with ``flavour`` (TensorRT, or TensorRT-RTX for its default targets), run it B=3 -> 1 -> 3
    with and without CUDA graphs and compare every batch with ONNX Runtime on the CPU running the same fp16 ONNX.
    Where the plan cannot run here (no GPU, or a GPU TensorRT-RTX has no target for, e.g. an H200), the refusal is
    the result."""
    from sranet.runtime.sidecar import FLAVOUR_MODULES

    if importlib.util.find_spec(FLAVOUR_MODULES[flavour]) is None:
        return {"skipped": f"`import {FLAVOUR_MODULES[flavour]}` is not available on this machine"}
    from sranet.errors import SranetError
    from sranet.export.onnx import export_onnx
    from sranet.export.tensorrt import EngineOptions, build_engine
    from sranet.runtime.backends.base import open_backend

    onnx_path = tmp / f"model.fp16.{flavour}.onnx"
    export_onnx(ckpt, onnx_path, precision="fp16", parity_cases=2)
    engine = tmp / f"model.{flavour}.engine"
    t = time.perf_counter()
    sidecar = build_engine(onnx_path, engine, EngineOptions.from_cli("fp16", profile="1:4:16", workspace_gib=4,
                                                                     verbose=True, flavour=flavour), source=str(ckpt))
    out = {"flavour": flavour, "build_s": round(time.perf_counter() - t, 1), "build": sidecar["build"],
           "tensorrt": sidecar["tensorrt"], "targets": sidecar.get("targets"), "batches": list(BATCHES)}
    with open_backend(onnx_path) as ort_cpu:
        threshold = ort_cpu.info.threshold
        refs = {b: ort_cpu.infer(x[:b]) for b in set(BATCHES)}
    out["reference"] = "ONNX Runtime CPU on the same fp16 ONNX"
    S = cfg.input_size
    for graphs in (False, True):
        tag = "graph" if graphs else "plain"
        try:
            backend = open_backend(engine, device="cuda:0", cuda_graphs=graphs)
        except SranetError as exc:  # e.g. no GPU (dry run), or a GPU outside the plan's targets
            out[f"refused_{tag}"] = f"{type(exc).__name__}: {exc}"
            continue
        with backend:
            out[f"parity_{tag}"] = [compare(backend.infer(x[:b]), refs[b], threshold) for b in BATCHES]
            out[f"describe_{tag}"] = backend.describe()
            for b in (1, 16):
                xb = np.random.default_rng(b).standard_normal((b, 1, S, S, S)).astype(np.float32)
                out[f"fp16_b{b}_{tag}"] = timed(lambda xb=xb, backend=backend: backend.infer(xb), loop_s=args.loop_s,
                                                max_iters=args.max_iters)
    return out


def ort_cuda_graphs_check(tmp: Path, ckpt: Path, x: np.ndarray) -> dict:
    """ONNX Runtime's CUDA provider with CUDA graphs, B=3 -> 1 -> 3 (one graph per batch size via gpu_graph_id),
    against its CPU provider."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return {"skipped": "onnxruntime-gpu's CUDAExecutionProvider is not available"}
    from sranet.export.onnx import export_onnx
    from sranet.runtime.backends.base import open_backend

    onnx_path = tmp / "model.fp32.onnx"
    export_onnx(ckpt, onnx_path, parity_cases=2)
    with open_backend(onnx_path) as cpu:
        threshold = cpu.info.threshold
        refs = {b: cpu.infer(x[:b]) for b in set(BATCHES)}
    with open_backend(onnx_path, device="cuda:0", provider="cuda", cuda_graphs=True) as gpu:
        runs = [compare(gpu.infer(x[:b]), refs[b], threshold) for b in BATCHES]
        again = [compare(gpu.infer(x[:b]), refs[b], threshold) for b in BATCHES]  # replays
    return {"batches": list(BATCHES), "first_pass": runs, "replays": again}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write (e.g. benchmarks/results/gpu_check_h100.json)")
    ap.add_argument("--dry-run", action="store_true", help="CPU only, tiny sizes: checks the script, measures nothing useful")
    ap.add_argument("--preset", default=None, help="model preset (default: paper; dry run: tiny)")
    ap.add_argument("--loop-s", type=float, default=None, help="seconds per timing loop (default 2.5; dry run 0.2)")
    ap.add_argument("--max-iters", type=int, default=300, help="iterations per timing loop at most")
    args = ap.parse_args(argv)
    args.preset = args.preset or ("tiny" if args.dry_run else "paper")
    args.loop_s = args.loop_s if args.loop_s is not None else (0.2 if args.dry_run else 2.5)

    import torch

    from sranet.config import ModelConfig, PreprocessConfig

    cuda = torch.cuda.is_available() and not args.dry_run
    if not cuda and not args.dry_run:
        print("[gpu_check] no CUDA GPU visible to PyTorch; use --dry-run on a CPU machine.", file=sys.stderr)
        return 2
    if cuda:
        torch.backends.cudnn.benchmark = True
    t0 = time.perf_counter()
    out = args.out
    RESULTS["environment"] = environment(args, cuda)
    save(out)
    cfg_model = ModelConfig.preset(args.preset)
    cfg_pre = PreprocessConfig.for_model(cfg_model)
    with tempfile.TemporaryDirectory(prefix="sranet_gpu_check_") as tmpdir:
        tmp = Path(tmpdir)
        ckpt = make_checkpoint(tmp, args.preset)
        x = phantom_inputs(cfg_pre, 3, args.dry_run)
        section("torch_parity", out)(torch_parity)(ckpt, x, cuda)
        section("torch_latency", out)(torch_latency)(ckpt, cfg_model, args, cuda)
        section("preprocessing", out)(preprocessing)(cfg_pre, args, cuda)
        if cuda:
            section("cuda_buffers", out)(cuda_buffers_check)()
            section("tensorrt", out)(tensorrt_check)(ckpt, tmp, x, cfg_model, args)
            section("ort_cuda_graphs", out)(ort_cuda_graphs_check)(tmp, ckpt, x)
        else:
            RESULTS["cuda_buffers"] = RESULTS["tensorrt"] = RESULTS["ort_cuda_graphs"] = {"skipped": "no CUDA (dry run)"}
        # TensorRT-RTX builds without a GPU: in a dry run the build is real and opening the plan is refused
        section("tensorrt_rtx", out)(tensorrt_check)(ckpt, tmp, x, cfg_model, args, "tensorrt-rtx")
    RESULTS["total_seconds"] = round(time.perf_counter() - t0, 1)
    save(out)
    failed = [k for k, v in RESULTS.items() if isinstance(v, dict) and "error" in v]
    print(f"[gpu_check] wrote {out} in {RESULTS['total_seconds']} s; failed sections: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
