"""The benchmark scripts run and the table generator renders what they write (very short settings)."""

import ctypes.util
import importlib.util
import json
from pathlib import Path

import pytest

from sranet.bench.runner import Settings, run_benchmark

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_script_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_peak_matmul_and_tables(tmp_path, tiny_onnx):
    results = tmp_path / "results"
    peak = load_script("peak_matmul").main(["--quick", "--out", str(results / "peak_matmul.json")])
    assert peak["peak_gflops"] == max(r["gflops_median"] for r in peak["rows"])
    assert {r["library"] for r in peak["rows"]} == {"numpy", "torch"}
    doc = run_benchmark([tiny_onnx], Settings(warmup_s=0, warmup_iters=0, min_iters=2, duration_s=0),
                        peak_gflops=peak["peak_gflops"], argv=["sranet", "benchmark", "tiny.onnx"])
    (results / "sranet_tiny.json").write_text(json.dumps(doc))
    (results / "gpu_check_x.json").write_text(json.dumps({
        "environment": {"date_utc": "2026-01-01", "command": "python benchmarks/gpu_check.py", "gpu": "Test GPU"},
        "torch_latency": {"fp16_b1": {"compute": {"n": 5, "p50_ms": 1.5, "p90_ms": 2.0, "p99_ms": 2.5}}},
        "tensorrt": {"skipped": "tensorrt not importable"}}))
    out = load_script("make_tables").main(["--results", str(results), "--out", str(tmp_path / "benchmarks.md")])
    md = out.read_text()
    assert md.index("Peak matrix-multiply") < md.index("`sranet benchmark`") < md.index("GPU check")
    assert f"**{peak['peak_gflops']:.1f} GFLOP/s**" in md
    assert "| torch_latency/fp16_b1/compute | 1.50 | 2.00 | 2.50 | 5 |" in md
    assert "`tensorrt`: tensorrt not importable" in md
    assert "command: `sranet benchmark tiny.onnx`" in md


@pytest.mark.slow
def test_cpu_backends_quick(tmp_path):
    doc = load_script("cpu_backends").main(["--quick", "--batches", "1", "--out", str(tmp_path / "c.json")])
    assert doc["parity_vs_torch"]["ort_fp32_conv2d"]["max_abs_prob"] < 1e-5
    assert doc["parity_vs_torch"]["ort_fp32_spectral"]["max_abs_attention"] < 1e-5
    assert doc["spectral"]["layers"] == [1, 2]  # tiny: forced, no layer gets cheaper
    assert [r["config"] for r in doc["blocks"][0]["rows"]][0] == "torch_eager"


def test_gpu_check_dry_run_on_the_package_harness(tmp_path):
    """The GPU check's CPU dry run: every section runs through sranet.bench (timing loop and statistics)."""
    out = tmp_path / "gpu_check_dry.json"
    assert load_script("gpu_check").main(["--dry-run", "--out", str(out), "--loop-s", "0"]) == 0
    doc = json.loads(out.read_text())
    assert doc["environment"]["dry_run"] is True and "cpu" in doc["environment"]
    row = doc["torch_latency"]["fp32_b1_eager"]["end_to_end"]
    assert row["n"] >= 5 and row["p50_ms"] > 0 and set(row) >= {"p90_ms", "p99_ms", "mean_ms", "throughput_vol_s"}
    roi = doc["preprocessing"]["femoral_head_roi"]
    assert roi["max_abs_d_input"] == 0 and roi["cpu"]["n"] >= 5
    assert doc["torch_parity"]["cpu_bf16"]["repeat_identical"] is True
    rtx = doc["tensorrt_rtx"]  # built for real without a GPU; opening it is refused before deserialising
    if "skipped" not in rtx and ctypes.util.find_library("cuda") is None:
        assert rtx["batches"] == [3, 1, 3] and rtx["refused_plain"].startswith("BackendError: no NVIDIA GPU driver")


def test_preprocess_stages_quick(tmp_path):
    doc = load_script("preprocess_stages").main(["--quick", "--slices", "8", "--out", str(tmp_path / "p.json")])
    assert doc["series"]["shape"] == [8, 512, 512]
    for stage in ("scan", "read", "decode", "hu", "stack", "plan", "resample", "normalize", "load_volume_roi"):
        assert doc["stages"][stage]["n"] == 1 and doc["stages"][stage]["p50_ms"] >= 0
