"""PyTorch eager vs ONNX Runtime on this CPU at the paper's configuration, interleaved in one run.

What runs (all fp32 unless named; weights are a seeded random initialisation, which does not change the arithmetic):
  torch_eager       SRANet in eval mode under torch.no_grad(), the reference implementation's way (reference = 1.0x)
  ort_fp32          the graph `sranet export` writes (sranet.export.onnx.to_onnx_proto), graph level "all"
  ort_fp32_spectral the graph `sranet export --conv-impl spectral` writes: the Conv3d layers whose DFT form at least
                    halves the arithmetic (paper config: conv2) as matrix products (sranet/model/spectral.py)
  ort_fp32_conv2d   a prototype graph variant: each valid Conv3d(k) rewritten as one Conv2d over (k depth slices x
                    channels), so ORT's blocked NCHWc Conv2d kernels run instead of its im2col Conv3d (same weights,
                    same outputs; checked below)
  ort_fp16          sranet.export.precision.convert_fp16 of ort_fp32
  ort_int8          sranet.export.precision.quantize_int8 (QDQ, calibrated on 4 phantom volumes)
Then at batch 1 a sweep of ORT intra-op threads x graph-optimisation levels, interleaved with torch_eager.
The compute floor = batch x FLOPs per volume (sranet.model.flops) / peak fp32 matmul rate (results/peak_matmul.json).
It counts the model's direct-convolution FLOPs for every variant; the spectral graph does fewer, so its rows also
carry p50 over its own graph's floor (graph_matmul_flops).

    .venv/bin/python benchmarks/cpu_backends.py            # a few minutes on a quiet 2-core machine
    .venv/bin/python benchmarks/cpu_backends.py --quick    # tiny model, seconds: checks the script only
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask), not the machine's total."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def conv3d_as_conv2d(conv):
    """nn.Conv3d (valid, stride 1, cubic kernel) -> an nn.Module computing the same with one nn.Conv2d."""
    import torch
    from torch import nn

    class Conv3dAsConv2d(nn.Module):
        def __init__(self, c3):
            super().__init__()
            o, c, k = c3.out_channels, c3.in_channels, c3.kernel_size[0]
            self.k, self.o = k, o
            self.conv2d = nn.Conv2d(k * c, o, k)
            with torch.no_grad():  # W2d[o, kd*C + c, kh, kw] = W3d[o, c, kd, kh, kw]
                self.conv2d.weight.copy_(c3.weight.permute(0, 2, 1, 3, 4).reshape(o, k * c, k, k))
                self.conv2d.bias.copy_(c3.bias)

        def forward(self, x):  # (N, C, D, H, W)
            N, C, D, H, W = x.shape
            Do = D - self.k + 1
            s = torch.cat([x[:, :, kd:kd + Do] for kd in range(self.k)], dim=1)  # (N, k*C, Do, H, W)
            s = s.permute(0, 2, 1, 3, 4).reshape(N * Do, self.k * C, H, W)  # (N*Do, k*C, H, W)
            y = self.conv2d(s)  # (N*Do, O, Ho, Wo)
            return y.reshape(N, Do, self.o, y.shape[-2], y.shape[-1]).permute(0, 2, 1, 3, 4)  # (N, O, Do, Ho, Wo)

    return Conv3dAsConv2d(conv)


def build_models(cfg, seed: int):
    import torch

    from sranet.model.sranet import SRANet

    torch.manual_seed(seed)
    model = SRANet(cfg).eval()
    variant = copy.deepcopy(model)
    feats = variant.patch_cnn.features
    for i, layer in enumerate(feats):
        if isinstance(layer, torch.nn.Conv3d):
            feats[i] = conv3d_as_conv2d(layer)
    return model, variant.eval()


def ort_session(proto, threads: int, level: str):
    """The package's ONNX Runtime set-up (CPU provider) for one graph variant. Several sessions and PyTorch take
    turns on the same cores here: ORT's default busy-wait of its idle pool threads would steal the cores from
    whichever runs next (and inflate the others' latencies), so no spinning."""
    from sranet.runtime.backends.onnxruntime import make_session

    return make_session(proto.SerializeToString(), threads=threads or None, graph_level=level, spinning=False)


def make_variants(cfg, preprocess, args):
    """name -> (description, callable(x) -> (prob, attention)) or name -> error string."""
    import torch

    from sranet.export.onnx import to_onnx_proto
    from sranet.export.parity import parity_inputs
    from sranet.export.precision import convert_fp16, quantize_int8
    from sranet.model.flops import choose_spectral_layers, conv_layers
    from sranet.model.spectral import spectral_copy

    model, variant = build_models(cfg, args.seed)
    layers = choose_spectral_layers(cfg)
    forced = not layers  # e.g. --quick's tiny model: no layer gets cheaper, so force all to exercise the path
    layers = layers or tuple(L.index for L in conv_layers(cfg))
    t0 = time.perf_counter()
    proto = to_onnx_proto(model)
    proto2d = to_onnx_proto(variant)
    proto_spectral = to_onnx_proto(spectral_copy(model, layers))
    log(f"exported in {time.perf_counter() - t0:.1f} s")
    protos = {"ort_fp32": proto, "ort_fp32_spectral": proto_spectral, "ort_fp32_conv2d": proto2d}
    out: dict = {}

    def torch_eager(x):
        with torch.no_grad():
            o = model(torch.from_numpy(x))
            return torch.sigmoid(o.logit).numpy(), o.attention.numpy()

    out["torch_eager"] = ("PyTorch eager fp32, eval, no_grad, torch threads default", torch_eager)
    if "fp16" in args.precisions:
        try:
            protos["ort_fp16"] = convert_fp16(proto)
        except Exception as exc:  # reported, not hidden
            out["ort_fp16"] = f"fp16 conversion failed: {type(exc).__name__}: {exc}"
    if "int8" in args.precisions:
        try:
            calib = parity_inputs(cfg, preprocess, 4, seed=1)
            calib = calib[0] if isinstance(calib, tuple) else calib  # (4, 1, S, S, S) phantom network inputs
            protos["ort_int8"], _ = quantize_int8(proto, list(calib))
        except Exception as exc:
            out["ort_int8"] = f"int8 quantisation failed: {type(exc).__name__}: {exc}"
    graphs = {"ort_fp32": "the graph `sranet export` writes (Conv3d)",
              "ort_fp32_spectral": f"the graph `sranet export --conv-impl spectral` writes: Conv3d layers "
                                   f"{list(layers)} as DFT matrix products" + (" (forced: no layer of this config "
                                                                              "gets cheaper)" if forced else ""),
              "ort_fp32_conv2d": "prototype graph, each Conv3d as one Conv2d over (depth window x channels)",
              "ort_fp16": "fp16 variant (sranet.export.precision.convert_fp16)",
              "ort_int8": "int8 QDQ variant (sranet.export.precision.quantize_int8, 4 phantom volumes)"}
    for name, p in protos.items():
        try:
            sess = ort_session(p, args.threads, "all")
            out[name] = (f"{graphs[name]}; ONNX Runtime CPU EP, graph level all, intra-op threads "
                         f"{args.threads or 'default'}",
                         lambda x, s=sess: tuple(s.run(["prob", "attention"], {"ct": x})))
        except Exception as exc:
            out[name] = f"ONNX Runtime could not load it: {type(exc).__name__}: {exc}"
    return out, protos, layers


def parity(variants: dict, x: np.ndarray) -> dict:
    """Max |difference| of prob and attention against torch_eager, per variant (the variant graph must agree)."""
    ref_p, ref_a = variants["torch_eager"][1](x)
    res = {}
    for name, v in variants.items():
        if isinstance(v, str) or name == "torch_eager":
            continue
        try:
            p, a = v[1](x)
            res[name] = {"max_abs_prob": float(np.abs(p - ref_p).max()), "max_abs_attention": float(np.abs(a - ref_a).max())}
        except Exception as exc:
            res[name] = {"error": f"{type(exc).__name__}: {exc}"}
            variants[name] = f"failed to run: {type(exc).__name__}: {exc}"
    return res


def measure(calls: dict, batch: int, settings, floor_ms: float | None, graph_floor_ms: dict | None = None) -> list[dict]:
    """``graph_floor_ms``: name -> the floor of that graph's own arithmetic, where it differs from ``floor_ms``."""
    from sranet.bench.runner import run_interleaved
    from sranet.bench.stats import paired_ratios, summarize

    names = list(calls)
    rounds = run_interleaved([calls[n] for n in names], settings)
    ratios = paired_ratios([[r["wall_ms"] for r in s] for s in rounds])
    rows = []
    for name, s, ratio in zip(names, rounds, ratios, strict=False):
        summary = summarize([r["wall_ms"] for r in s], batch=batch)
        row = {"config": name, "batch": batch, "host": summary, "ratio_vs_first": ratio,
               "speedup_vs_first_paired": 1.0 / ratio["paired_median_ratio"]}
        if floor_ms:
            row["floor_ms"] = floor_ms
            row["p50_over_floor"] = summary["p50_ms"] / floor_ms
        own = next((v for k, v in (graph_floor_ms or {}).items() if name.startswith(k)), None)
        if own:
            row["graph_floor_ms"] = own
            row["p50_over_graph_floor"] = summary["p50_ms"] / own
        rows.append(row)
        log(f"  b={batch} {name:28s} p50 {summary['p50_ms']:8.1f} ms  p90 {summary['p90_ms']:8.1f}  "
            f"vs first x{ratio['paired_median_ratio']:.2f}" + (f"  /floor {row['p50_over_floor']:.2f}" if floor_ms else ""))
    return rows


def sweep_calls(torch_eager, protos: dict, x1: np.ndarray, args) -> dict:
    """torch eager, then the direct and spectral fp32 graphs at each intra-op thread count x graph level."""
    calls = {"torch_eager": (lambda: (torch_eager(x1), None)[1])}
    for t in [int(v) for v in args.sweep_threads.split(",")]:
        for level in args.sweep_levels.split(","):
            for graph in ("ort_fp32", "ort_fp32_spectral"):
                s = ort_session(protos[graph], t, level)
                calls[f"{graph} t={t} {level}"] = lambda s=s: (s.run(None, {"ct": x1}), None)[1]
    return calls


def target_check(blocks: list[dict]) -> dict:
    """Batch 1, per ONNX Runtime graph: p50 against the floor (target <= 1.3x) and against torch eager (>= 2x)."""
    b1 = {r["config"]: r for r in blocks[0]["rows"]} if blocks and blocks[0]["batch"] == 1 else {}
    target = {}
    for graph in ("ort_fp32", "ort_fp32_spectral", "ort_fp32_conv2d"):
        if graph in b1:
            r = b1[graph]
            target[graph] = {"p50_ms": r["host"]["p50_ms"], "p50_over_floor": r.get("p50_over_floor"),
                             "p50_over_graph_floor": r.get("p50_over_graph_floor"),
                             "speedup_vs_torch_eager": r["speedup_vs_first_paired"],
                             "meets_floor_1_3x": (r.get("p50_over_floor") or 99) <= 1.3,
                             "meets_2x_vs_torch": r["speedup_vs_first_paired"] >= 2.0}
    return target


def main(argv: list[str] | None = None) -> dict:
    from sranet.bench.env import collect_environment
    from sranet.bench.runner import Settings, peak_rss_mib
    from sranet.bench.stats import compute_floor_ms
    from sranet.config import ModelConfig, PreprocessConfig
    from sranet.model.flops import count_flops, graph_matmul_flops
    from sranet.runtime.files import atomic_write

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--batches", default="1,2,4")
    ap.add_argument("--precisions", default="fp32,fp16,int8")
    ap.add_argument("--threads", type=int, default=None,
                    help="ORT intra-op threads for the main table (default: the cores this process may use; 0 = ORT's "
                         "own default, which counts the machine's cores and ignores a taskset/cgroup CPU mask)")
    ap.add_argument("--sweep-threads", default="1,2")
    ap.add_argument("--sweep-levels", default="basic,extended,all")
    ap.add_argument("--warmup-s", type=float, default=2.0)
    ap.add_argument("--min-iters", type=int, default=5)
    ap.add_argument("--duration-s", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--peak-json", type=Path, default=RESULTS / "peak_matmul.json")
    ap.add_argument("--no-sweep", action="store_true", help="skip the threads x graph-level sweep")
    ap.add_argument("--quick", action="store_true", help="tiny preset, 1 round, no sweep (checks the script only)")
    ap.add_argument("--out", type=Path, default=RESULTS / "cpu_backends.json")
    args = ap.parse_args(argv)
    if args.threads is None:
        args.threads = usable_cores()
    if args.quick:
        args.preset, args.min_iters, args.duration_s, args.warmup_s = "tiny", 2, 0.0, 0.0
    cfg = ModelConfig.preset(args.preset)
    preprocess = PreprocessConfig.for_model(cfg)
    flops = count_flops(cfg)
    peak = json.loads(args.peak_json.read_text()) if args.peak_json.is_file() else None
    peak_gflops = peak["peak_gflops"] if peak else None
    settings = Settings(warmup_s=args.warmup_s, warmup_iters=1, min_iters=args.min_iters, duration_s=args.duration_s)
    variants, protos, spectral_layers = make_variants(cfg, preprocess, args)
    spectral_flops = graph_matmul_flops(cfg, spectral_layers)
    S = cfg.input_size
    x1 = np.random.default_rng(args.seed).standard_normal((1, 1, S, S, S), dtype=np.float32)
    par = parity(variants, np.concatenate([x1, x1 * 0.5]))
    runnable = {k: v for k, v in variants.items() if not isinstance(v, str)}
    blocks = []
    for batch in [int(b) for b in args.batches.split(",")]:
        x = np.ascontiguousarray(np.repeat(x1, batch, axis=0))
        floor = compute_floor_ms(flops.matmul_flops, peak_gflops, batch) if peak_gflops else None
        own = {"ort_fp32_spectral": compute_floor_ms(spectral_flops, peak_gflops, batch)} if peak_gflops else None
        calls = {n: (lambda f=f, x=x: (f(x), None)[1]) for n, (_, f) in runnable.items()}
        blocks.append({"batch": batch, "rows": measure(calls, batch, settings, floor, own)})
    sweep = []
    if not (args.quick or args.no_sweep):
        floor = compute_floor_ms(flops.matmul_flops, peak_gflops, 1) if peak_gflops else None
        own = {"ort_fp32_spectral": compute_floor_ms(spectral_flops, peak_gflops, 1)} if peak_gflops else None
        sweep = measure(sweep_calls(runnable["torch_eager"][1], protos, x1, args), 1, settings, floor, own)
    import torch

    torch_threads = torch.get_num_threads()
    doc = {
        "schema": "sranet-cpu-backends/1",
        "environment": collect_environment(threads=args.threads,
                                           argv=["benchmarks/cpu_backends.py", *(argv if argv is not None else sys.argv[1:])]),
        "model": {"preset": args.preset, "config": cfg.to_dict(), "weights": f"random init, torch seed {args.seed}"},
        "flops_per_volume": flops.to_dict(),
        "spectral": {"layers": list(spectral_layers), "graph_matmul_flops": spectral_flops},
        "flops_convention": "FLOPs = 2 x MACs; matmul_flops (conv + linear + attention + head, no biases) is what "
                            "the floor uses; cross-checked against torch.utils.flop_counter in tests/model",
        "peak": {"peak_gflops": peak_gflops, "source": str(args.peak_json) if peak else None,
                 "date_utc": peak["environment"]["date_utc"] if peak else None},
        "settings": {**{k: getattr(settings, k) for k in ("warmup_s", "warmup_iters", "min_iters", "duration_s")},
                     "interleaved": True, "outliers_removed": False, "percentile_method": "numpy linear",
                     "ort_threads": args.threads, "torch_threads": torch_threads, "quick": args.quick},
        "variants": {k: (v if isinstance(v, str) else v[0]) for k, v in variants.items()},
        "failed": {k: v for k, v in variants.items() if isinstance(v, str)},
        "parity_vs_torch": par,
        "blocks": blocks,
        "sweep_batch1": sweep,
        "target": target_check(blocks),
        "peak_rss_mib": peak_rss_mib(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, json.dumps(doc, indent=1) + "\n")
    log(f"wrote {args.out}")
    return doc


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
