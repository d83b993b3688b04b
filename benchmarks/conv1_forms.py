"""The first convolution alone (Conv3d 1 -> 20, 5^3, then ReLU and MaxPool3d(2), on the 64 patches of one volume)
in every form considered, on ONNX Runtime and OpenVINO, interleaved in one run: why conv1 stays where it is.

Forms (same weights, same outputs, checked against PyTorch here):
  direct        Conv -> Relu -> MaxPool (what the model exports)
  s2d           sranet/model/s2d.py: space-to-depth over D, H, W; one 8 -> 160 channel 3^3 convolution, maximum over
                channel groups (1.73x the multiply-adds)
  s2d_hw        the same over H and W only (4 -> 80 channels, 5 x 3 x 3 kernel, 1.44x), MaxPool over D after
  s2d_w         over W only (2 -> 40 channels, 5 x 5 x 3, 1.2x)
  conv2d        Conv3d as one Conv2d over depth windows stacked as 5 channels (ONNX Runtime's NCHWc kernels)
  slabs4        each patch cut into depth slabs of 4 output slices, so the im2col buffer of one slab fits in cache
  fft_forward   (not a conv: the first step of a real-FFT convolution) 3-D real DFT of the 64 input patches, with
                the ONNX DFT operator (ONNX Runtime) or OpenVINO's RDFT
  fft_conv      OpenVINO only: RDFT -> complex product with the 20 kernel spectra -> IRDFT, the whole FFT convolution
Then, in a second interleaved run, ONNX Runtime's MatMul on the GEMM shapes these forms lower to (one patch), beside
a 2048^3 product: the rate each shape reaches, and that rate divided by the form's extra arithmetic ("net").

    .venv/bin/python benchmarks/conv1_forms.py --note "..."    # ~3 minutes
    .venv/bin/python benchmarks/conv1_forms.py --quick         # small patches: checks the script only
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
SCHEMA = "sranet-conv1-forms/1"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def torch_forms(n: int, k: int, out_ch: int, seed: int):
    """name -> (module, multiply-add factor against direct)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from sranet.model.s2d import S2dConvPool3d

    torch.manual_seed(seed)
    conv, pool = nn.Conv3d(1, out_ch, k).eval(), nn.MaxPool3d(2)
    m = n - k + 1

    class Direct(nn.Module):
        def forward(self, x):
            return pool(torch.relu(conv(x)))

    class Conv2dDepth(nn.Module):  # W2d[o, kd, kh, kw] = W3d[o, 0, kd, kh, kw]
        def forward(self, x):
            P = x.shape[0]
            s = torch.stack([x[:, 0, kd:kd + m] for kd in range(k)], dim=2)  # (P, m, k, n, n)
            y = F.max_pool2d(F.conv2d(s.reshape(P * m, k, n, n), conv.weight[:, 0], conv.bias), 2)
            y = y.reshape(P, m // 2, 2, out_ch, m // 2, m // 2).amax(dim=2)  # (P, m/2, O, m/2, m/2)
            return torch.relu(y).permute(0, 2, 1, 3, 4)

    class Slabs(nn.Module):
        def __init__(self, depth: int):
            super().__init__()
            self.s = depth

        def forward(self, x):
            P, s = x.shape[0], self.s
            slabs = torch.stack([x[:, 0, i * s:i * s + s + k - 1] for i in range(m // s)], dim=1)
            y = pool(torch.relu(conv(slabs.reshape(P * (m // s), 1, s + k - 1, n, n))))  # (P*ns, O, s/2, m/2, m/2)
            y = y.reshape(P, m // s, out_ch, s // 2, m // 2, m // 2).permute(0, 2, 1, 3, 4, 5)
            return y.reshape(P, out_ch, m // 2, m // 2, m // 2)

    taps = ((k + 2) // 2) / k
    forms = {"direct": (Direct(), 1.0), "s2d": (S2dConvPool3d(conv, pool, n), taps**3),
             "s2d_hw": (S2dConvPool3d(conv, pool, n, (1, 2)), taps**2),
             "s2d_w": (S2dConvPool3d(conv, pool, n, (2,)), taps), "conv2d": (Conv2dDepth(), 1.0)}
    if m % 4 == 0:
        forms["slabs4"] = (Slabs(4), 1.0)
    return conv, forms


def to_onnx(module, x, path: Path) -> None:
    import torch

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.from_numpy(x),), str(path), dynamo=True, opset_version=18,
                          input_names=["x"], output_names=["y"], external_data=False)


def ort_dft_forward(P: int, n: int) -> bytes:
    """ONNX graph: x (P, 1, n, n, n) -> 3-D real DFT (onesided along W), with the DFT operator (opset 20)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Unsqueeze", ["x", "last"], ["xc"]),
             helper.make_node("DFT", ["xc", "", "a4"], ["f4"], onesided=1),
             helper.make_node("DFT", ["f4", "", "a3"], ["f3"]),
             helper.make_node("DFT", ["f3", "", "a2"], ["y"])]
    inits = [numpy_helper.from_array(np.array([-1], np.int64), "last")]
    inits += [numpy_helper.from_array(np.array(a, np.int64), f"a{a}") for a in (2, 3, 4)]
    graph = helper.make_graph(nodes, "dft", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [P, 1, n, n, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]).SerializeToString()


def ov_fft(ov, P: int, n: int, weight: np.ndarray, whole: bool):
    """OpenVINO model: RDFT of the input, and for ``whole`` the complex product with the kernel spectra and IRDFT."""
    import openvino.opset15 as ops

    x = ops.parameter([P, 1, n, n, n], np.float32, name="x")
    axes = ops.constant(np.array([2, 3, 4]))
    X = ops.rdft(x, axes)  # (P, 1, n, n, n/2+1, 2)
    if not whole:
        return ov.Model([X], [x], "rdft")
    padded = np.zeros((1, weight.shape[0], n, n, n), np.float32)
    k = weight.shape[-1]
    padded[0, :, :k, :k, :k] = weight[:, 0]
    spec = np.conj(np.fft.rfftn(padded, axes=(2, 3, 4)))  # correlation = product with the conjugate spectrum
    Xr, Xi = ops.split(X, ops.constant(-1), 2).outputs()
    Wr, Wi = ops.constant(spec.real[..., None].astype(np.float32)), ops.constant(spec.imag[..., None].astype(np.float32))
    Yr = ops.subtract(ops.multiply(Xr, Wr), ops.multiply(Xi, Wi))
    Yi = ops.add(ops.multiply(Xr, Wi), ops.multiply(Xi, Wr))
    y = ops.irdft(ops.concat([Yr, Yi], -1), axes, ops.constant(np.array([n, n, n])))
    return ov.Model([y], [x], "fft_conv")


def gemm_shapes(n: int, k: int, out_ch: int) -> dict[str, tuple[tuple[int, int, int], float]]:
    """form -> ((M, K, N) of its product for one patch, multiply-add factor), as (positions x taps) @ (taps x ch)."""
    m = n - k + 1
    t = (k + 2) // 2
    return {"direct, taps x channels": ((out_ch, k**3, m**3), 1.0),
            "direct, positions x taps": ((m**3, k**3, out_ch), 1.0),
            "s2d_w": ((m**3 // 2, k * k * t * 2, 2 * out_ch), t * 2 / k),
            "s2d_hw": ((m**3 // 4, k * (t * 2) ** 2, 4 * out_ch), (t * 2 / k) ** 2),
            "s2d": ((m**3 // 8, (t * 2) ** 3, 8 * out_ch), (t * 2 / k) ** 3)}


def main(argv: list[str] | None = None) -> dict:
    import importlib.util

    import onnxruntime as ort
    import torch

    from sranet.bench.env import collect_environment, cpu_flags
    from sranet.bench.runner import Settings, run_interleaved
    from sranet.bench.stats import paired_ratios, summarize

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--duration-s", type=float, default=40.0)
    ap.add_argument("--min-iters", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--note", default=None)
    ap.add_argument("--quick", action="store_true", help="16^3 patches, 4 of them, 2 rounds")
    ap.add_argument("--out", type=Path, default=RESULTS / "conv1_forms.json")
    args = ap.parse_args(argv)
    threads = args.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2)
    P, n, k, out_ch = (4, 16, 5, 20) if args.quick else (64, 32, 5, 20)
    if args.quick:
        args.duration_s, args.min_iters = 0.0, 2
    torch.set_num_threads(threads)
    want_ov = importlib.util.find_spec("openvino") is not None
    bf16 = want_ov and any(f in cpu_flags() for f in ("avx512_bf16", "amx_bf16"))
    x = np.random.default_rng(args.seed).standard_normal((P, 1, n, n, n), dtype=np.float32)
    conv, forms = torch_forms(n, k, out_ch, args.seed)
    with torch.no_grad():
        ref = forms["direct"][0](torch.from_numpy(x)).numpy()

    def ort_session(model):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])

    calls, meta, ov = {}, {}, None
    if want_ov:
        from sranet.runtime.backends.openvino import import_openvino

        ov = import_openvino()
        core = ov.Core()

    def ov_call(model, hint):
        compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                                     "INFERENCE_PRECISION_HINT": hint})
        request = compiled.create_infer_request()
        return lambda: request.infer({0: x})

    with tempfile.TemporaryDirectory() as tmp:
        for name, (module, factor) in forms.items():
            path = Path(tmp, f"{name}.onnx")
            to_onnx(module.eval(), x, path)
            sess = ort_session(str(path))
            err = float(np.abs(sess.run(None, {"x": x})[0] - ref).max())
            calls[f"ort {name}"] = lambda s=sess: s.run(None, {"x": x})
            meta[f"ort {name}"] = {"form": name, "runtime": "onnxruntime", "precision": "fp32",
                                   "macs_vs_direct": factor, "max_abs_vs_pytorch": err}
            if want_ov:
                for precision, hint in (("fp32", "f32"), ("bf16", "bf16")) if bf16 else (("fp32", "f32"),):
                    call = ov_call(core.read_model(str(path)), hint)
                    calls[f"openvino {name} {precision}"] = call
                    meta[f"openvino {name} {precision}"] = {"form": name, "runtime": "openvino",
                                                            "precision": precision, "macs_vs_direct": factor}
        sess = ort_session(ort_dft_forward(P, n))
        calls["ort fft_forward"] = lambda s=sess: s.run(None, {"x": x})
        meta["ort fft_forward"] = {"form": "fft_forward", "runtime": "onnxruntime", "precision": "fp32"}
        if want_ov:
            calls["openvino fft_forward fp32"] = ov_call(ov_fft(ov, P, n, conv.weight.detach().numpy(), False), "f32")
            meta["openvino fft_forward fp32"] = {"form": "fft_forward", "runtime": "openvino", "precision": "fp32"}
            model = ov_fft(ov, P, n, conv.weight.detach().numpy(), True)
            calls["openvino fft_conv fp32"] = ov_call(model, "f32")
            meta["openvino fft_conv fp32"] = {"form": "fft_conv", "runtime": "openvino", "precision": "fp32"}
        settings = Settings(warmup_s=1.0, warmup_iters=1, min_iters=args.min_iters, duration_s=args.duration_s)
        names = list(calls)
        log(f"timing {len(names)} conv1 forms interleaved, {threads} threads ...")
        rounds = run_interleaved([lambda c=calls[nm]: (c(), None)[1] for nm in names], settings)
    ratios = paired_ratios([[r["wall_ms"] for r in s] for s in rounds])
    forms_out = []
    for name, s, ratio in zip(names, rounds, ratios, strict=True):
        host = summarize([r["wall_ms"] for r in s])
        forms_out.append({"name": name, **meta[name], "host": host, "vs_ort_direct": ratio["paired_median_ratio"]})
        log(f"  {name:28s} p50 {host['p50_ms']:8.1f} ms  x{ratio['paired_median_ratio']:.2f} vs ort direct")

    # the GEMM shapes, ONNX Runtime MatMul with a constant operand, interleaved with a 2048^3 product
    spec = importlib.util.spec_from_file_location("peak_matmul", Path(__file__).with_name("peak_matmul.py"))
    peak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peak)
    build = peak._ort_matmul(threads, spinning=False)
    rng = np.random.default_rng(1)
    shapes = {"square 2048^3" if not args.quick else "square 256^3": ((2048, 2048, 2048) if not args.quick else
                                                                      (256, 256, 256), 1.0), **gemm_shapes(n, k, out_ch)}
    gcalls = {}
    for label, ((M, K, N), _) in shapes.items():
        run = build(rng.standard_normal((M, K), dtype=np.float32), rng.standard_normal((K, N), dtype=np.float32))
        run()
        gcalls[label] = run
    grounds = run_interleaved([lambda c=gcalls[g]: (c(), None)[1] for g in gcalls],
                              Settings(warmup_s=0.5, warmup_iters=1, min_iters=max(3, args.min_iters),
                                       duration_s=args.duration_s / 4))
    gemms = []
    for (label, ((M, K, N), factor)), s in zip(shapes.items(), grounds, strict=True):
        med = float(np.median([r["wall_ms"] for r in s]))
        rate = 2 * M * K * N / (med * 1e-3) / 1e9
        gemms.append({"shape": label, "m": M, "k": K, "n": N, "macs_vs_direct": factor, "p50_ms": med,
                      "gflops_p50": rate, "net_gflops": rate / factor})
        log(f"  gemm {label:28s} {M} x {K} x {N}: {rate:7.1f} GFLOP/s, net {rate / factor:7.1f}")
    square = gemms[0]["gflops_p50"]
    for g in gemms:
        g["net_fraction_of_square"] = g["net_gflops"] / square
    doc = {"schema": SCHEMA,
           "environment": collect_environment(threads=threads, argv=["benchmarks/conv1_forms.py",
                                                                     *(argv if argv is not None else sys.argv[1:])]),
           "note": args.note,
           "layer": {"patches": P, "edge": n, "kernel": k, "out_channels": out_ch,
                     "direct_flops": 2 * P * (n - k + 1) ** 3 * out_ch * k**3},
           "settings": {"threads": threads, "duration_s": args.duration_s, "min_iters": args.min_iters,
                        "interleaved": True, "ort_spinning": "off", "quick": args.quick},
           "forms": forms_out, "gemm_shapes": gemms}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    log(f"wrote {args.out}")
    return doc


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
