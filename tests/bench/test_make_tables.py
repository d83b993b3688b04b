"""README benchmark summary: benchmarks/make_tables.py rewrites only the text between the README markers, from the
committed JSON results, and refuses a README without markers."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from sranet.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
BEGIN = "<!-- benchmarks:begin (generated; do not edit) -->"
END = "<!-- benchmarks:end -->"


@pytest.fixture(scope="module")
def make_tables():
    spec = importlib.util.spec_from_file_location("bench_make_tables", ROOT / "benchmarks" / "make_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _readme(tmp_path: Path, inner: str = "| old | hand-typed | table |\n") -> tuple[Path, str, str]:
    head = "# Title\n\n## Benchmarks\n\nIntro stays.\n\n"
    tail = "\nWhy ONNX Runtime stays at 1.6x the floor: text after the table stays.\n"
    path = tmp_path / "README.md"
    path.write_text(f"{head}{BEGIN}\n{inner}{END}{tail}")
    return path, head, tail


def test_readme_section_is_replaced_from_committed_results(make_tables, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    readme, head, tail = _readme(tmp_path)
    assert make_tables.update_readme(readme, results) is True
    text = readme.read_text()
    assert text.startswith(head + BEGIN + "\n") and text.endswith(END + tail)
    inner = text[len(head + BEGIN + "\n"):-len(END + tail)]
    assert "hand-typed" not in inner
    assert inner.startswith("| what | result | measured | source |\n")
    # numbers are read from the JSON files, not typed: check two against the files themselves
    cpu = json.loads((results / "cpu_backends.json").read_text())
    graphs = json.loads((results / "cpu_graphs.json").read_text())
    peak = json.loads((results / "peak_matmul.json").read_text())
    floor = graphs["matmul_flops_per_volume"] / peak["peak_gflops"] / 1e6  # the floor is recomputed, not stored
    t = graphs["targets"]["best_fp32"]
    assert f"p50 {t['p50_ms']:.0f} ms = **{t['p50_ms'] / floor:.2f}x the direct floor**" in inner
    assert f"fp32 {peak['peak_gflops']:.0f} GFLOP/s" in inner
    assert f"| {cpu['environment']['date_utc'][:10]}, {cpu['environment']['cpu']['model']}," in inner
    assert f"- `cpu_backends.json`: `{cpu['environment']['command']}`" in inner
    # a second run changes nothing
    assert make_tables.update_readme(readme, results) is False
    assert readme.read_text() == text


def test_missing_result_file_leaves_its_rows_out_with_a_note(make_tables, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    (results / "load_series.json").unlink()
    section = make_tables.readme_section(results)
    assert "whole vs ROI only: not measured (`load_series.json` missing)." in section
    assert "| loading that series" not in section
    assert "`load_series.json`:" not in section
    assert "| ONNX Runtime fp16 / int8 variants on this CPU |" in section


@pytest.mark.parametrize("drop", [BEGIN, END])
def test_missing_marker_is_a_clear_error_and_writes_nothing(make_tables, tmp_path, drop):
    readme, _, _ = _readme(tmp_path)
    before = readme.read_text().replace(drop, "")
    readme.write_text(before)
    with pytest.raises(InputError, match=r"README\.md: no benchmark markers.*benchmarks:end"):
        make_tables.update_readme(readme, RESULTS)
    assert readme.read_text() == before


def test_every_floor_ratio_follows_the_current_peak(make_tables, tmp_path):
    """Doubling the measured peak halves every floor ratio shown, whatever ratio a result file stored."""
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    before = make_tables.render(results)
    peak = json.loads((results / "peak_matmul.json").read_text())
    peak["peak_gflops"] *= 2
    (results / "peak_matmul.json").write_text(json.dumps(peak))
    after = make_tables.render(results)
    graphs = json.loads((results / "cpu_graphs.json").read_text())
    floor = graphs["matmul_flops_per_volume"] / (peak["peak_gflops"] / 2) / 1e6
    t = graphs["targets"]["best_fp32"]
    assert f"{t['p50_ms'] / floor:.2f}x the direct floor" in before
    assert f"{t['p50_ms'] / floor * 2:.2f}x the direct floor" in after
    cpu = json.loads((results / "cpu_backends.json").read_text())
    row = next(r for b in cpu["blocks"] if b["batch"] == 1 for r in b["rows"] if r["config"] == "ort_fp32")
    ratio = row["host"]["p50_ms"] / (cpu["flops_per_volume"]["matmul_flops"] / peak["peak_gflops"] / 1e6)
    assert f"| {ratio:.2f} |" in after and "not the 203.0 GFLOP/s this run was compared with" in after
    e2e = make_tables.rebase_benchmark(json.loads((results / "benchmark_cpu_e2e.json").read_text()),
                                       peak["peak_gflops"])
    assert e2e["compute"]["peak_gflops"] == peak["peak_gflops"]
    r = e2e["model_only"][0]["results"][0]
    assert r["p50_over_floor"] == pytest.approx(r["host"]["p50_ms"] / r["floor_ms"])
