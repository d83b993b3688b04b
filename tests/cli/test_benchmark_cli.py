"""`sranet benchmark` end to end through the CLI: a tiny ONNX model, a fraction of a second of measurement."""

import json

import pytest
from typer.testing import CliRunner

from sranet.cli.main import app
from tests.helpers import unpack_ge_series

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny(tiny_artifacts):
    """tiny.onnx: SRANet(tiny) with sranet metadata (tests/conftest.py)."""
    return tiny_artifacts[0]


def test_benchmark_two_artifacts_json_and_markdown(tiny, tmp_path):
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    result = runner.invoke(app, ["benchmark", str(tiny), str(tiny), "--batch", "1,2", "--duration-s", "0.2",
                                 "--warmup-s", "0", "--min-iters", "3", "--threads", "1", "--peak-gflops", "100",
                                 "--json", str(out), "--markdown", str(md)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["schema"] == "sranet-benchmark/1"
    assert doc["environment"]["command"].startswith("sranet benchmark ")
    assert "--threads 1" in doc["environment"]["command"]
    assert doc["artifacts"][0]["options_applied"] == ("device=cpu, threads=1, spinning=off (interleaved with other "
                                                      "artifacts)")
    assert [b["batch"] for b in doc["model_only"]] == [1, 2]
    assert all(r["host"]["n"] >= 3 for b in doc["model_only"] for r in b["results"])
    assert "| tiny.onnx | 2 |" in md.read_text()
    assert "p50 ms" in result.output


@pytest.mark.integration
def test_benchmark_synthetic_end_to_end(tiny, tmp_path):
    out = tmp_path / "e2e.json"
    result = runner.invoke(app, ["benchmark", str(tiny), "--synthetic", "--duration-s", "0.2", "--warmup-s", "0",
                                 "--min-iters", "2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    stages = json.loads(out.read_text())["end_to_end"]["results"][0]["stages"]
    assert {"load", "locate", "crop", "resample", "normalize", "infer", "postprocess"} <= set(stages)
    assert "| artifact | load | locate | crop |" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch", "1,x"], "--batch '1,x' is not a comma-separated list"),
        (["--batch", "0"], "not a comma-separated list of integers >= 1"),
        (["--study", "a.npy", "--prefetch", "0,-1"], "--prefetch '0,-1' is not a comma-separated list of integers >= 0"),
        (["--min-iters", "0"], "min_iters >= 1"),
        (["--synthetic", "--input", "case.npy"], "exclusive"),
        (["--spacing-mm", "1,2"], "three positive numbers"),
        (["--device", "cuda:0"], "device cuda:0 needs onnxruntime's TensorrtExecutionProvider"),
        (["--device", "gpu"], "device='gpu' is not 'cpu' or 'cuda:N'"),
        (["--provider", "cuda"], "provider='cuda' chooses ONNX Runtime's GPU execution provider, but the device is"),
    ],
)
def test_benchmark_bad_options(tiny, args, message):
    result = runner.invoke(app, ["benchmark", str(tiny), *args])
    assert result.exit_code == 1
    assert message in result.output


def test_benchmark_missing_artifact(tmp_path):
    result = runner.invoke(app, ["benchmark", str(tmp_path / "nope.onnx"), "--duration-s", "0"])
    assert result.exit_code == 1
    assert "nope.onnx" in result.output and "does not exist" in result.output


@pytest.mark.integration
def test_benchmark_real_dicom_series_by_stage(tiny, tmp_path):
    """A real GE CT series (tests/data/realct/dcm_qa_ct, see its LICENSE): each loader step timed on its own."""
    folder = unpack_ge_series(tmp_path / "series")
    out = tmp_path / "dicom.json"
    result = runner.invoke(app, ["benchmark", str(tiny), "--input", str(folder), "--warmup-s", "0", "--min-iters",
                                 "2", "--duration-s", "0", "--json", str(out), "--roi", "whole"])
    assert result.exit_code == 0, result.output
    e2e = json.loads(out.read_text())["end_to_end"]
    assert e2e["stage_order"] == ["scan", "read", "decode", "hu", "stack", "plan", "resample", "normalize", "batch",
                                  "infer", "postprocess"]
    assert e2e["case"]["shape"][1:] == [512, 512]
    stages, total = e2e["results"][0]["stages"], e2e["results"][0]["total"]
    assert sum(s["mean_ms"] for s in stages.values()) <= total["mean_ms"] * 1.01
    assert "| artifact | scan | read | decode | hu | stack | plan |" in result.output


def test_benchmark_of_a_study_without_hips_is_refused(tiny, tmp_path):
    """The GE series is a head CT: timing it as a whole study would time no hip, so it is refused with the fix."""
    folder = unpack_ge_series(tmp_path / "series")
    result = runner.invoke(app, ["benchmark", str(tiny), "--input", str(folder), "--duration-s", "0"])
    assert result.exit_code == 1 and "no femoral head found" in result.output and "--roi whole" in result.output


def test_benchmark_batch_throughput_per_prefetch_setting(tiny, tmp_path):
    """`--study` runs batch prediction over whole studies once per --prefetch setting: studies/s, the ratio to the
    first setting, and what each run predicted (both hips of each phantom), in the JSON and the tables."""
    from tests.helpers import write_pelvis_study

    studies = [write_pelvis_study(tmp_path / f"s{i}", 31 + i, dicom=False)[0] for i in range(2)]
    out = tmp_path / "t.json"
    result = runner.invoke(app, ["benchmark", str(tiny), "--study", str(studies[0]), "--study", str(studies[1]),
                                 "--prefetch", "0,1", "--throughput-rounds", "1", "--duration-s", "0",
                                 "--min-iters", "1", "--warmup-s", "0", "--threads", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    t = doc["throughput"]
    assert t["inputs"] == 2 and t["baseline_prefetch"] == 0 and [r["prefetch"] for r in t["results"]] == [0, 1]
    assert t["results"][0]["ratio_vs_first_median"] == 1.0 and t["results"][1]["studies_per_s_median"] > 0
    assert [(r["predicted"], r["failed"]) for r in t["runs"]] == [(4, 0), (4, 0)]
    assert "--study" in doc["environment"]["command"] and "--prefetch 0,1" in doc["environment"]["command"]
    assert "**Batch throughput**" in result.output
