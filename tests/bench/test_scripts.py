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


@pytest.mark.integration
def test_peak_matmul_and_tables(tmp_path, tiny_onnx):
    results = tmp_path / "results"
    libs = "onnxruntime,numpy" + (",openvino" if importlib.util.find_spec("openvino") else "")  # torch: slow import
    peak = load_script("peak_matmul").main(["--quick", "--threads", "1", "--libraries", libs,
                                            "--out", str(results / "peak_matmul.json")])
    fp32 = [r for r in peak["rows"] if r["precision"] == "fp32" and "gflops_median" in r]
    assert peak["peak_gflops"] == max(r["gflops_median"] for r in fp32)
    assert {r["library"] for r in fp32} == set(libs.split(","))  # each in its own process, all recorded
    assert peak["not_measured"]["torch fp32"] == "not asked for (--libraries)"
    bf16 = [r for r in peak["rows"] if r["precision"] == "bf16" and "gflops_median" in r]
    if peak["cpu_bf16"] and "openvino" in libs:
        assert peak["peak_bf16_gflops"] == max(r["gflops_median"] for r in bf16)
    else:
        assert peak["peak_bf16_gflops"] is None and not bf16
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
    assert f"fp32: **{peak['peak_gflops']:.1f} GFLOP/s**" in md
    assert "| torch_latency/fp16_b1/compute | 1.50 | 2.00 | 2.50 | 5 |" in md
    assert "`tensorrt`: tensorrt not importable" in md
    assert "command: `sranet benchmark tiny.onnx`" in md


@pytest.mark.slow
def test_cpu_graphs_quick_and_its_table(tmp_path):
    results = tmp_path / "results"
    peak = load_script("peak_matmul").main(["--quick", "--threads", "1", "--out", str(results / "peak_matmul.json")])
    doc = load_script("cpu_graphs").main(["--quick", "--threads", "1", "--peak-json", str(results / "peak_matmul.json"),
                                          "--out", str(results / "cpu_graphs.json")])
    names = [r["name"] for r in doc["results"]]
    assert names[0] == "torch_eager" and "ort direct fp32" in names and "ort s2d fp32" in names
    assert all(v["parity"]["passed"] for v in doc["variants"].values() if "parity" in v)
    floor = doc["matmul_flops_per_volume"] / peak["peak_gflops"] / 1e6
    best = doc["targets"]["best_fp32"]
    md = load_script("make_tables").main(["--results", str(results), "--out", str(tmp_path / "b.md")]).read_text()
    assert f"p50 {best['p50_ms']:.1f} ms = {best['p50_ms'] / floor:.2f}x the direct floor" in md


@pytest.mark.slow
def test_cpu_backends_quick(tmp_path):
    doc = load_script("cpu_backends").main(["--quick", "--batches", "1", "--out", str(tmp_path / "c.json")])
    assert doc["parity_vs_torch"]["ort_fp32_conv2d"]["max_abs_prob"] < 1e-5
    assert doc["parity_vs_torch"]["ort_fp32_spectral"]["max_abs_attention"] < 1e-5
    assert doc["spectral"]["layers"] == [1, 2]  # tiny: forced, no layer gets cheaper
    assert [r["config"] for r in doc["blocks"][0]["rows"]][0] == "torch_eager"


@pytest.mark.integration
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


def test_train_throughput_variants_carry_their_ratio(tmp_path):
    out = tmp_path / "t.json"
    load_script("train_throughput").main(["--model", "tiny", "--steps", "1", "--warmup", "0", "--batch", "1",
                                          "--variants", "fp32", "bf16-cl", "--out", str(out)])
    doc = json.loads(out.read_text())
    rows = {r["variant"]: r for r in doc["results"]}
    assert rows["fp32"]["speedup_vs_fp32"] == 1.0
    assert rows["bf16-cl"]["amp"] == "bf16" and rows["bf16-cl"]["channels_last"] is True
    ratio = rows["fp32"]["step_ms"]["median"] / rows["bf16-cl"]["step_ms"]["median"]
    assert rows["bf16-cl"]["speedup_vs_fp32"] == pytest.approx(ratio)


def _seed_doc(seed: int, auc: float, visible: float, hit: float) -> dict:
    record = {"seed": seed, "data_seed": 0, "test_auc": auc, "test_auc_visible": visible, "test_auc_ceiling": 0.929,
              "test_sensitivity": 0.9, "test_specificity": 0.9, "top_patch_hit_rate": hit, "lesion_cases": 12,
              "epochs_to_val_auc_0.9": 5, "epochs_to_val_auc_visible_0.9": 4, "best_epoch": 9, "wall_s": 10.0,
              "train_volumes_per_s": 2.0, "load_average_1min": {"start": 1.0, "end": 1.0}}
    return {"config": "small", "train_config": {"model": "small", "epochs": 10, "lr": 1e-3, "batch_size": 8,
                                                "augment": False},
            "data": {"kind": "pelvis", "phantoms": 100, "data_seed": 0, "vary_data": False},
            "environment": {"command": f"train_seeds.py --seeds {seed}", "date_utc": "d", "libraries": {}},
            "machine": "m", "results": [record], "summary": {}}


def test_train_seeds_merges_per_seed_files_and_renders_them(tmp_path):
    ts = load_script("train_seeds")
    parts = []
    for seed, auc, visible, hit in ((1, 0.96, 1.0, 0.5), (0, 0.90, 0.97, 1.0)):
        parts.append(tmp_path / f"s{seed}.json")
        parts[-1].write_text(json.dumps(_seed_doc(seed, auc, visible, hit)))
    ts.main(["--merge", *map(str, parts), "--out", str(tmp_path / "m.json")])
    doc = json.loads((tmp_path / "m.json").read_text())
    assert [r["seed"] for r in doc["results"]] == [0, 1]
    s = doc["summary"]
    assert (s["seeds"], s["seeds_test_auc_ge_0.95"], s["seeds_test_auc_visible_ge_0.95"], s["seeds_hit_ge_0.8"]) == \
        (2, 1, 2, 1)
    assert s["seeds_test_auc_at_ceiling"] == 1  # 0.96 >= 0.929; 0.90 is not
    text = "\n".join(ts.sweep_md(doc))
    assert "| 0 | 0.900 (0.929) | 0.970 |" in text and "for 2 of 2 seeds" in text
    assert "instance term off" in text
    doc["train_config"]["instance_weight"] = 0.5
    assert "instance term 0.5;" in "\n".join(ts.sweep_md(doc))
    longer = _seed_doc(3, 0.9, 0.9, 0.9)
    longer["train_config"]["epochs"] = 40  # seeds may run for different numbers of epochs
    (tmp_path / "l.json").write_text(json.dumps(longer))
    ts.main(["--merge", str(parts[0]), str(tmp_path / "l.json"), "--out", str(tmp_path / "l2.json")])
    merged = json.loads((tmp_path / "l2.json").read_text())
    assert merged["train_config"]["epochs"] == [10, 40] and "10/40 (per seed) epochs" in "\n".join(ts.sweep_md(merged))
    other = _seed_doc(2, 0.9, 0.9, 0.9)
    other["train_config"]["lr"] = 1e-4
    (tmp_path / "o.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="cannot merge"):
        ts.main(["--merge", str(parts[0]), str(tmp_path / "o.json"), "--out", str(tmp_path / "x.json")])
