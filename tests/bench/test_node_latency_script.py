"""benchmarks/node_latency.py end to end with its --quick settings: a real Orthanc, `sranet serve` on the tiny model,
small phantom studies; what it writes is consistent with itself and with the node's health lines."""

import importlib.util
import json
from pathlib import Path

import pytest

from tests.node.orthanc import find_orthanc

pytestmark = pytest.mark.pacs
BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_node_latency_quick(tmp_path, tiny_artifacts):
    if find_orthanc() is None:
        pytest.skip("the Orthanc binary is not installed (Debian package 'orthanc'; .ci/run installs it)")
    spec = importlib.util.spec_from_file_location("bench_script_node_latency", BENCH / "node_latency.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "node.json"
    assert script.main(["--quick", "--artifact", str(tiny_artifacts[0]), "--idle", "0.5", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["settings"]["study_shape"] == [80, 256, 256] and doc["settings"]["idle_s"] == 0.5
    assert doc["environment"]["libraries"]["orthanc"] and doc["environment"]["libraries"]["pynetdicom"]
    [run] = doc["studies_in_sequence"]
    node = run["node"]
    assert node["received"] == 80 and node["results"] == 4  # SR, a map per hip, the overview
    assert node["idle_wait_s"] >= 0.5
    # the results arrive after the node waited and processed, and the SR is among them
    assert node["idle_wait_s"] + node["process_s"] < run["latency_s"] < 60
    assert run["sr_latency_s"] <= run["latency_s"]
    assert run["beyond_idle_s"] == pytest.approx(run["latency_s"] - 0.5, abs=2e-3)
    assert doc["latency_beyond_idle_ms"]["p50_ms"] == pytest.approx(run["beyond_idle_s"] * 1e3)
    [round_] = doc["in_flight_rounds"]
    assert round_["studies"] == 2 and len(round_["node"]) == 2 and len(round_["latency_s"]) == 2
    assert round_["studies_per_min"] == pytest.approx(2 * 60 / round_["elapsed_s"], rel=1e-3)
    assert round_["all_sent_s"] < round_["elapsed_s"]
