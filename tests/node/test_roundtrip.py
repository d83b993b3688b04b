"""A phantom study goes Orthanc -> sranet serve -> Orthanc: the SR and the attention map arrive in the study."""

from __future__ import annotations

import io
import shutil
import subprocess

import pydicom
import pytest

from tests.helpers import PATIENT_ID, PATIENT_NAME
from tests.node.conftest import health, spool_is_clean, wait_until
from tests.node.processors import fixed_finding
from tests.node.study import echo, phantom_study, send


def test_echo_from_pynetdicom_dcmtk_and_orthanc(start_node, orthanc):
    node = start_node(fixed_finding)
    assert echo(node.port) == 0x0000
    if shutil.which("echoscu"):
        result = subprocess.run(["echoscu", "-aec", "SRANET", "127.0.0.1", str(node.port)], capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == 0, result.stderr
    assert orthanc.request("POST", "/modalities/sranet/echo", {}) is not None  # HTTP 200: Orthanc reached the node


def test_orthanc_round_trip(start_node, orthanc, tmp_path, caplog):
    caplog.set_level("INFO", logger="sranet.node")
    node = start_node(fixed_finding)
    files = phantom_study(tmp_path / "ct")
    source = pydicom.dcmread(files[0], stop_before_pixels=True)
    study = orthanc.upload(files)
    orthanc.send_to_node(study)  # Orthanc's C-STORE SCU -> the node
    series = wait_until(lambda: (s := orthanc.series_by_modality(study)).get("SR") and len(s) >= 3 and s,
                        what="SR and map in Orthanc")
    assert len(series["SR"]) == 1 and len(series["CT"]) == 1
    [sr_series] = series["SR"]
    sr = pydicom.dcmread(io.BytesIO(orthanc.instance_file(sr_series["Instances"][0])))
    assert sr.StudyInstanceUID == source.StudyInstanceUID and sr.SeriesInstanceUID != source.SeriesInstanceUID
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert len(sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence) \
        == len(files)
    maps = [s for mod, group in series.items() if mod not in ("SR", "CT") for s in group]
    pm = pydicom.dcmread(io.BytesIO(orthanc.instance_file(maps[0]["Instances"][0])))
    assert pm.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30" and pm.FrameOfReferenceUID == source.FrameOfReferenceUID
    [line] = wait_until(lambda: health(node.spool.root), what="health line")
    assert line["state"] == "sent" and line["received"] == len(files) and line["results"] == 2
    assert line["summary"] == {"slices": len(files), "hips": 1, "decision": True}
    assert line["send_attempts"] == 1 and line["last_instance_to_done_s"] > 0
    wait_until(lambda: spool_is_clean(node.spool.root), what="a clean spool")
    log = caplog.text + (node.spool.root / "health.jsonl").read_text()
    for secret in (PATIENT_NAME, PATIENT_ID, source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID):
        assert secret not in log
    assert f"study {line['study']}" in caplog.text


@pytest.mark.integration
@pytest.mark.parametrize("tool", ["storescu"])
def test_dcmtk_storescu_sends_a_study(start_node, tmp_path, tool):
    exe = shutil.which(tool)
    if exe is None:
        pytest.skip("dcmtk's storescu is not installed (Debian package dcmtk; .ci/run installs it)")
    node = start_node(fixed_finding)
    files = phantom_study(tmp_path / "ct", seed=11)
    result = subprocess.run([exe, "-aec", "SRANET", "127.0.0.1", str(node.port), *map(str, files)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    [line] = wait_until(lambda: health(node.spool.root), what="health line")
    assert line["state"] == "sent" and line["received"] == len(files)


@pytest.mark.integration
def test_concurrent_associations_each_study_once(start_node, tmp_path):
    import threading

    node = start_node(fixed_finding)
    studies = [phantom_study(tmp_path / f"ct{n}", seed=30 + n, shape=(16, 32, 32)) for n in range(3)]
    results: dict[int, list[int]] = {}
    threads = [threading.Thread(target=lambda n=n: results.__setitem__(n, send(studies[n], node.port)))
               for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(set(results[n]) == {0} for n in range(3))
    lines = wait_until(lambda: len(health(node.spool.root)) == 3 and health(node.spool.root), what="three rounds")
    assert sorted(line["received"] for line in lines) == [16, 16, 16] and {line["state"] for line in lines} == {"sent"}
    assert len({line["study"] for line in lines}) == 3
