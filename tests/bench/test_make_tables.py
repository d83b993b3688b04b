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
    t = cpu["target"]["ort_fp32"]
    assert f"p50 {t['p50_ms']:.0f} ms = **{t['p50_over_floor']:.2f}x the floor**" in inner
    peak = json.loads((results / "peak_matmul.json").read_text())
    assert f"{peak['peak_gflops']:.0f} GFLOP/s" in inner
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
    assert "| ONNX Runtime fp32, default (direct Conv3d) graph, same run |" in section


@pytest.mark.parametrize("drop", [BEGIN, END])
def test_missing_marker_is_a_clear_error_and_writes_nothing(make_tables, tmp_path, drop):
    readme, _, _ = _readme(tmp_path)
    before = readme.read_text().replace(drop, "")
    readme.write_text(before)
    with pytest.raises(InputError, match=r"README\.md: no benchmark markers.*benchmarks:end"):
        make_tables.update_readme(readme, RESULTS)
    assert readme.read_text() == before
