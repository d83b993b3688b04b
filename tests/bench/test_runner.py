"""A short real run (tiny SRANet in ONNX Runtime): document structure, schema, ratios, Markdown."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from sranet.bench.report import SCHEMA, load_result, to_markdown, validate_result, write_json
from sranet.bench.runner import EndToEnd, Settings, run_benchmark
from sranet.errors import InputError

FAST = Settings(batches=(1, 2), warmup_s=0.0, warmup_iters=1, min_iters=3, duration_s=0.1)


@pytest.fixture(scope="module")
def doc(tiny_onnx, tiny_onnx_b):
    return run_benchmark([tiny_onnx, tiny_onnx_b], FAST, peak_gflops=50.0, argv=["test"])


@pytest.mark.integration
def test_document_validates_and_round_trips(doc, tmp_path):
    validate_result(doc)
    path = write_json(doc, tmp_path / "r.json")
    again = load_result(path)
    assert again["schema"] == "sranet-benchmark/1"
    assert json.loads(path.read_text())["environment"]["command"] == "test"


def test_every_artifact_and_batch_is_measured(doc, tiny_onnx):
    assert [a["label"] for a in doc["artifacts"]] == ["tiny.onnx", "tiny_b.onnx"]
    assert len(doc["artifacts"][0]["sha256"]) == 64
    assert [b["batch"] for b in doc["model_only"]] == [1, 2]
    for block in doc["model_only"]:
        assert [r["artifact"] for r in block["results"]] == [0, 1]
        first, second = block["results"]
        assert first["ratio_vs_first"]["paired_median_ratio"] == 1.0
        assert second["ratio_vs_first"]["paired_median_ratio"] > 0
        h = first["host"]
        assert h["n"] >= 3 and h["min_ms"] <= h["p50_ms"] <= h["p90_ms"] <= h["p99_ms"] <= h["max_ms"]
        assert first["device"] is None  # no GPU here: host time only, stated as such
        assert first["floor_ms"] == pytest.approx(block["batch"] * 16_862_240 / 50e9 * 1e3)
    cold = doc["artifacts"][0]["cold_start"]
    assert cold["total_ms"] == pytest.approx(cold["load_ms"] + cold["first_infer_ms"])
    assert doc["memory"]["peak_rss_mib"] > 0
    assert doc["end_to_end"] is None


def test_markdown_has_a_row_per_artifact_and_batch(doc):
    md = to_markdown(doc)
    assert md.count("| tiny.onnx | 1 |") == 1 and md.count("| tiny_b.onnx | 2 |") == 1
    assert "p50/floor" in md and "Cold start" in md


def test_schema_rejects_a_broken_document(doc):
    bad = copy.deepcopy(doc)
    del bad["model_only"][0]["results"][0]["host"]["p99_ms"]
    bad["schema"] = "sranet-benchmark/0"
    with pytest.raises(InputError, match=r"p99_ms.*|schema"):
        validate_result(bad)
    with pytest.raises(InputError, match="expected array"):
        validate_result({**doc, "artifacts": {}})
    assert SCHEMA["properties"]["schema"]["enum"] == ["sranet-benchmark/1"]


def test_input_and_synthetic_are_exclusive(tiny_onnx, tmp_path):
    with pytest.raises(InputError, match="exclusive"):
        EndToEnd(tmp_path, synthetic=True)
    with pytest.raises(InputError, match="needs --input PATH or --synthetic"):
        EndToEnd()
    with pytest.raises(InputError, match="no artifact"):
        run_benchmark([], FAST)


def test_end_to_end_stages_on_a_synthetic_case(tiny_onnx, monkeypatch):
    import tempfile

    made = []
    real = tempfile.TemporaryDirectory

    def spy(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(tempfile, "TemporaryDirectory", spy)
    settings = Settings(batches=(1,), warmup_s=0.0, warmup_iters=0, min_iters=2, duration_s=0.0)
    doc = run_benchmark([tiny_onnx], settings, case=EndToEnd(synthetic=True, synthetic_shape=(80, 256, 256)))
    assert len(made) == 1 and not Path(made[0].name).exists()  # the phantom's folder is gone after the run
    validate_result(doc)
    e2e = doc["end_to_end"]
    stages = e2e["results"][0]["stages"]
    # a whole-pelvis phantom: read once, both femoral heads located, both hips cropped and inferred in one batch
    assert e2e["stage_order"] == ["load", "locate", "crop", "plan", "resample", "normalize", "batch", "infer",
                                  "postprocess"]
    for name in e2e["stage_order"]:
        assert stages[name]["n"] == 2
    total = e2e["results"][0]["total"]["p50_ms"]
    assert sum(stages[n]["p50_ms"] for n in e2e["stage_order"]) == pytest.approx(total, rel=0.2)
    assert e2e["case"]["shape"] == [80, 256, 256] and set(e2e["case"]["heads"]) == {"L", "R"}
    assert "End to end" in to_markdown(doc)
    assert np.isfinite(total)


def test_backends_and_temp_folder_are_released_when_a_run_fails(tiny_onnx, tmp_path, monkeypatch):
    from sranet.bench import e2e, runner
    from sranet.errors import ArtifactError

    opened = []
    real_open = runner.open_backend

    def open_and_watch(path, **kwargs):
        backend = real_open(path, **kwargs)
        closed = []
        real_close = backend.close
        backend.close = lambda: (closed.append(True), real_close())
        opened.append(closed)
        return backend

    monkeypatch.setattr(runner, "open_backend", open_and_watch)
    with pytest.raises(ArtifactError):
        run_benchmark([tiny_onnx, tmp_path / "missing.onnx"], FAST)
    assert len(opened) == 1 and opened[0] == [True]

    folders = []

    def failing_case(folder, shape):
        folders.append(Path(folder))
        raise ArtifactError("no phantom today")

    monkeypatch.setattr(e2e, "synthetic_case", failing_case)
    with pytest.raises(ArtifactError, match="no phantom today"):
        run_benchmark([tiny_onnx], FAST, case=EndToEnd(synthetic=True))
    assert len(folders) == 1 and not folders[0].exists() and opened[-1] == [True]


@pytest.mark.integration
def test_spectral_graph_is_measured_against_both_floors(tiny_artifacts, tiny_onnx, tmp_path):
    from sranet.config import ModelConfig
    from sranet.export.onnx import export_onnx
    from sranet.model.flops import ConvLayer, count_flops

    spectral = export_onnx(tiny_artifacts[1], tmp_path / "spectral.onnx", parity_cases=2, conv_impl="spectral",
                           spectral_layers=(1, 2)).path
    fast = Settings(batches=(1,), warmup_s=0.0, warmup_iters=1, min_iters=3, duration_s=0.05)
    doc = run_benchmark([tiny_onnx, spectral], fast, peak_gflops=50.0, argv=["test"])
    validate_result(doc)
    direct_art, spectral_art = doc["artifacts"]
    assert (direct_art["conv_impl"], direct_art["spectral_layers"]) == ("direct", [])
    assert direct_art["graph_matmul_flops"] == direct_art["flops_per_volume"]["matmul_flops"]
    cfg = ModelConfig.preset("tiny")
    layers = [ConvLayer(1, 1, 4, 12, 3), ConvLayer(2, 4, 8, 5, 3)]
    extra = 64 * sum(L.spectral_flops()["total"] - L.direct_flops() for L in layers)
    assert spectral_art["conv_impl"] == "spectral" and spectral_art["spectral_layers"] == [1, 2]
    assert spectral_art["graph_matmul_flops"] == count_flops(cfg).matmul_flops + extra
    first, second = doc["model_only"][0]["results"]
    assert "graph_floor_ms" not in first
    assert second["graph_floor_ms"] == pytest.approx(spectral_art["graph_matmul_flops"] / 50e9 * 1e3)
    assert second["p50_over_graph_floor"] == pytest.approx(second["host"]["p50_ms"] / second["graph_floor_ms"])
    assert "spectral.onnx: spectral graph (Conv3d layers [1, 2]" in to_markdown(doc)


def test_interleaved_onnx_sessions_do_not_busy_wait(doc, tiny_onnx):
    """Two artifacts take turns: each ORT session is opened with spinning off and says so; one artifact alone keeps
    ONNX Runtime's default."""
    from sranet.bench.runner import open_artifact

    for art in doc["artifacts"]:
        assert "spinning=off (interleaved with other artifacts)" in art["options_applied"]
        assert art["backend"]["intra_op_spinning"] == "off"
    one_thread = Settings(threads=1)
    backend, _, applied = open_artifact(tiny_onnx, one_thread, interleaved=True)
    try:
        assert backend.session.get_session_options().get_session_config_entry(
            "session.intra_op.allow_spinning") == "0"
    finally:
        backend.close()
    backend, _, applied = open_artifact(tiny_onnx, one_thread)
    try:
        assert applied == "device=cpu, threads=1" and backend.describe()["intra_op_spinning"] == "default (on)"
    finally:
        backend.close()
