"""Crash safety: `sranet serve` killed with SIGKILL while receiving, while processing and before its results went
out; after a restart each study's results arrive in Orthanc once and the spool holds nothing stale."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from tests.node.conftest import health, spool_is_clean, wait_until
from tests.node.orthanc import ORTHANC_AET, free_port
from tests.node.study import echo, phantom_study, send

pytestmark = pytest.mark.pacs
REPO = Path(__file__).resolve().parents[2]


class NodeProcess:
    """`python -m sranet.cli.main serve ...` in a subprocess (a real process to SIGKILL). ``processor``:
    'module:function' (--processor), or the model's arguments (ARTIFACT and its options) as a list."""

    def __init__(self, spool: Path, port: int, dest_port: int, processor: str | list[str], log: Path, **env: str):
        self.spool, self.port = spool, port
        target = ["--processor", processor] if isinstance(processor, str) else [*processor, "--threads", "1"]
        cmd = [sys.executable, "-m", "sranet.cli.main", "serve", *target, "--spool", str(spool), "--port", str(port),
               "--dest", f"{ORTHANC_AET}@127.0.0.1:{dest_port}", "--idle", "1.0",
               "--backoff", "0.2", "--max-backoff", "1.0", "--send-attempts", "2", "--min-free-mb", "1"]
        environment = {**os.environ, "PYTHONPATH": str(REPO), **env}
        self.log = open(log, "ab")
        self.process = subprocess.Popen(cmd, cwd=REPO, env=environment, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: self.process.poll() is not None or echo_ok(port), 60, "the node to answer C-ECHO")
        if self.process.poll() is not None:
            raise RuntimeError(f"sranet serve exited: {Path(log).read_text()[-3000:]}")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


def echo_ok(port: int) -> bool:
    try:
        return echo(port) == 0
    except Exception:  # noqa: BLE001 - not listening yet
        return False


@pytest.fixture
def nodes():
    started = []
    yield started
    for node in started:
        node.stop()


def sr_count(orthanc, study_uid: str) -> int:
    study = orthanc.study_id(study_uid)
    if study is None:
        return 0
    return sum(len(s["Instances"]) for s in orthanc.series_by_modality(study).get("SR", []))


def test_kill_while_receiving(orthanc, tmp_path, nodes):
    spool, port = tmp_path / "spool", free_port()
    files = phantom_study(tmp_path / "ct", seed=21, shape=(32, 48, 48))
    study_uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    node = NodeProcess(spool, port, orthanc.dicom_port, "tests.node.processors:fixed_finding", tmp_path / "a.log")
    nodes.append(node)
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="SRANET")
    for f in files[:10]:
        assert int(assoc.send_c_store(pydicom.dcmread(f)).Status) == 0
    node.kill()  # mid-study, association open: ten instances acknowledged, the rest never sent
    assoc.abort()
    assert len(list((spool / "incoming").glob("*/*.dcm"))) == 10  # every acknowledged instance is on disk
    node = NodeProcess(spool, port, orthanc.dicom_port, "tests.node.processors:fixed_finding", tmp_path / "b.log")
    nodes.append(node)
    assert set(send(files, port)) == {0}  # the sender retries the study
    [line] = wait_until(lambda: health(spool), 60, "health line")
    assert line["state"] == "sent" and line["received"] == len(files) and line["round"] == 1
    wait_until(lambda: sr_count(orthanc, study_uid) == 1, 30, "the SR in Orthanc")
    wait_until(lambda: spool_is_clean(spool), 30, "a clean spool")
    assert sr_count(orthanc, study_uid) == 1


def test_kill_while_processing(orthanc, tmp_path, nodes):
    """Orthanc pushes the study (its C-STORE SCU, as a routing rule would) to the node on its declared port."""
    spool, port, marker = tmp_path / "spool", orthanc.node_port, tmp_path / "marker.jsonl"
    files = phantom_study(tmp_path / "ct", seed=22, shape=(24, 48, 48))
    study_uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    slow = "tests.node.processors:slow_finding"
    node = NodeProcess(spool, port, orthanc.dicom_port, slow, tmp_path / "a.log", SRANET_TEST_MARKER=str(marker),
                       SRANET_TEST_DELAY_S="60")
    nodes.append(node)
    orthanc.send_to_node(orthanc.upload(files))
    wait_until(lambda: marker.exists() and marker.read_text().strip(), 30, "processing to start")
    node.kill()
    [state_file] = list((spool / "work").glob("*/state.json"))
    assert json.loads(state_file.read_text())["state"] == "ready"
    node = NodeProcess(spool, port, orthanc.dicom_port, slow, tmp_path / "b.log", SRANET_TEST_MARKER=str(marker),
                       SRANET_TEST_DELAY_S="0")
    nodes.append(node)
    [line] = wait_until(lambda: health(spool), 60, "health line")
    assert line["state"] == "sent" and line["received"] == len(files)
    assert len(marker.read_text().splitlines()) == 2  # processed again after the restart, from the spool
    wait_until(lambda: sr_count(orthanc, study_uid) == 1, 30, "the SR in Orthanc")
    wait_until(lambda: spool_is_clean(spool), 30, "a clean spool")


def test_kill_before_results_went_out(orthanc, tmp_path, nodes):
    """The destination is down: the results wait in the spool; after a kill and a restart they go out once."""
    spool, port = tmp_path / "spool", free_port()
    files = phantom_study(tmp_path / "ct", seed=23, shape=(24, 48, 48))
    study_uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    processor = "tests.node.processors:fixed_finding"
    node = NodeProcess(spool, port, free_port(), processor, tmp_path / "a.log")  # nobody listens there
    nodes.append(node)
    assert set(send(files, port)) == {0}

    def parked():
        states = [json.loads(p.read_text()) for p in (spool / "work").glob("*/state.json")]
        return states and states[0]["state"] == "processed" and states[0].get("send_attempts", 0) >= 2

    wait_until(parked, 60, "the send to fail and be parked")
    node.kill()
    node = NodeProcess(spool, port, orthanc.dicom_port, processor, tmp_path / "b.log")
    nodes.append(node)
    [line] = wait_until(lambda: health(spool), 60, "health line")
    assert line["state"] == "sent" and line["send_attempts"] >= 3
    wait_until(lambda: sr_count(orthanc, study_uid) == 1, 30, "the SR in Orthanc")
    wait_until(lambda: spool_is_clean(spool), 30, "a clean spool")
    assert sr_count(orthanc, study_uid) == 1


# -- with the model: `sranet serve ARTIFACT` -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def signed(tiny_artifacts, tmp_path_factory):
    """(a signed copy of the tiny ONNX, its public key): the node checks the signature before it listens."""
    import shutil

    pytest.importorskip("cryptography")
    from sranet.runtime.integrity import sign_artifact
    from tests.robustness.inputs import make_keys

    root = tmp_path_factory.mktemp("signed")
    private, public = make_keys(root, "site")
    artifact = shutil.copy(tiny_artifacts[0], root / "model.onnx")
    sign_artifact(artifact, private)
    return Path(artifact), public


def model_args(signed) -> list[str]:
    artifact, public = signed
    return [str(artifact), "--trusted-key", str(public)]


def sr_of(orthanc, study_uid: str):
    import io

    study = orthanc.study_id(study_uid)
    [series] = orthanc.series_by_modality(study)["SR"]
    return pydicom.dcmread(io.BytesIO(orthanc.instance_file(series["Instances"][0])))


def expected_hips(artifact: Path, folder: Path, tmp_path: Path) -> dict[str, dict]:
    """What `sranet predict` says about the study, per side."""
    from typer.testing import CliRunner

    from sranet.cli.main import app

    out = tmp_path / "expected.jsonl"
    result = CliRunner().invoke(app, ["predict", str(artifact), str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return {r["side"]: r for r in map(json.loads, out.read_text().splitlines())}


def check_sr(sr, expected: dict[str, dict]) -> None:
    from tests.runtime.dicom_out.builders import sr_hips

    hips = sr_hips(sr)
    assert set(hips) == set(expected)
    for side, r in expected.items():
        if "error" in r:
            assert hips[side]["not_assessed"][0] == f"{r['error']}: {r['message']}"
        else:
            assert hips[side]["probability"] == pytest.approx(r["probability"], abs=1e-6)


def test_model_node_killed_while_receiving(orthanc, tmp_path, nodes, signed):
    from tests.node.study import pelvis_study

    spool, port = tmp_path / "spool", free_port()
    folder, _ = pelvis_study(tmp_path / "study", 33, patient_position="HFS")
    files = sorted(folder.glob("*.dcm"))
    study_uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    node = NodeProcess(spool, port, orthanc.dicom_port, model_args(signed), tmp_path / "a.log")
    nodes.append(node)
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="SRANET")
    for f in files[:30]:
        assert int(assoc.send_c_store(pydicom.dcmread(f)).Status) == 0
    node.kill()  # mid-study: thirty instances acknowledged, the rest never sent
    assoc.abort()
    assert len(list((spool / "incoming").glob("*/*.dcm"))) == 30
    node = NodeProcess(spool, port, orthanc.dicom_port, model_args(signed), tmp_path / "b.log")
    nodes.append(node)
    assert set(send(files, port)) == {0}  # the sender retries the study
    [line] = wait_until(lambda: health(spool), 90, "health line")
    assert line["state"] == "sent" and line["received"] == len(files) and line["round"] == 1
    wait_until(lambda: sr_count(orthanc, study_uid) == 1, 30, "the SR in Orthanc")
    wait_until(lambda: spool_is_clean(spool), 30, "a clean spool")
    check_sr(sr_of(orthanc, study_uid), expected_hips(signed[0], folder, tmp_path))
    assert sr_count(orthanc, study_uid) == 1


def test_model_node_killed_while_processing(orthanc, tmp_path, nodes, signed):
    """Killed while the model works on the study (its overview folder exists in the spool's tmp/, the round is
    still `ready`): the restart removes the partial files and processes the round again from the spool."""
    import time

    from tests.node.study import pelvis_study

    spool, port = tmp_path / "spool", orthanc.node_port
    folder, _ = pelvis_study(tmp_path / "study", 34, slices=200, slice_mm=1.5)
    files = sorted(folder.glob("*.dcm"))
    study_uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    node = NodeProcess(spool, port, orthanc.dicom_port, model_args(signed), tmp_path / "a.log")
    nodes.append(node)
    orthanc.send_to_node(orthanc.upload(files), synchronous=False)
    deadline = time.monotonic() + 90
    while not list((spool / "tmp").glob("sranet-overview-*")):  # processing has begun
        assert time.monotonic() < deadline and node.process.poll() is None, "processing never began"
        time.sleep(0.005)
    node.kill()
    [state_file] = list((spool / "work").glob("*/state.json"))
    assert json.loads(state_file.read_text())["state"] == "ready", "processing had finished before the kill"
    assert list((spool / "tmp").iterdir())  # the killed round's partial files
    node = NodeProcess(spool, port, orthanc.dicom_port, model_args(signed), tmp_path / "b.log")
    nodes.append(node)
    [line] = wait_until(lambda: health(spool), 90, "health line")
    assert line["state"] == "sent" and line["received"] == len(files)
    assert "1 rounds to finish" in (tmp_path / "b.log").read_text()
    wait_until(lambda: sr_count(orthanc, study_uid) == 1, 30, "the SR in Orthanc")
    wait_until(lambda: spool_is_clean(spool), 30, "a clean spool")
    check_sr(sr_of(orthanc, study_uid), expected_hips(signed[0], folder, tmp_path))
    assert sr_count(orthanc, study_uid) == 1
