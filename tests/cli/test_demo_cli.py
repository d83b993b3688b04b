"""`sranet demo --quick`: the whole README path runs from whole-pelvis studies with no ROI anywhere and says where
everything went (tiny model, about 30 s)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sranet.cli.main import app

pytest.importorskip("torch")
runner = CliRunner()


@pytest.mark.integration
def test_demo_quick_runs_the_whole_path(tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for step in ("synthesise", "prepare", "train", "evaluate", "export", "predict", "benchmark"):
        assert f"== {step}" in result.output
    assert "parity gate passed" in result.output and "done in" in result.output
    for artefact in ("data/manifest.csv", "data/truth.csv", "run/best.pt", "model.onnx", "model.onnx.parity.json",
                     "predict/results.jsonl", "predict/summary.json", "benchmark.json", "timings.json"):
        assert (out / artefact).is_file(), artefact
    assert "automatic ROIs" in result.output and "per hip from whole studies: AUC" in result.output
    lines = [json.loads(line) for line in (out / "predict" / "results.jsonl").read_text().splitlines()]
    assert lines and all(r["roi_source"] == "auto" and r["side"] in ("L", "R") for r in lines)
    assert any("probability" in r and "localiser" in r for r in lines)
    assert any(r.get("heatmaps", {}).get("png", "").endswith("_study.png") for r in lines)
    summary = json.loads((out / "predict" / "summary.json").read_text())
    assert summary["localisation"]["by_visibility"]["full"]["found"] >= 1
    assert summary["prediction"]["roi_mismatch_with_cache"] == 0
    visible = summary["prediction"]["auc_visible"]  # None where a split lacks a class once stage I is left out
    assert visible is None or 0 <= visible <= 1
    assert "| AUC without the stage-I positives (invisible on CT) |" in (out / "predict" / "summary.md").read_text()
    bench = json.loads((out / "benchmark.json").read_text())
    assert "locate" in bench["end_to_end"]["stage_order"]  # the first test study, read and located


def test_demo_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    result = runner.invoke(app, ["demo", "--quick", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "is not empty" in result.output and (tmp_path / "keep.txt").exists()
