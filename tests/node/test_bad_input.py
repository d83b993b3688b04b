"""Bad input on the wire: a proper DIMSE status or a logged per-study failure; the node stays up, nothing is lost."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.helpers import REAL_CT
from tests.node.conftest import health, spool_is_clean, wait_until
from tests.node.processors import fixed_finding
from tests.node.study import echo, phantom_study, send


def test_non_ct_and_malformed_data_sets_get_refusal_statuses(start_node, tmp_path):
    node = start_node(fixed_finding)
    mr = pydicom.dcmread(REAL_CT / "pydicom" / "MR_small.dcm")
    files = phantom_study(tmp_path / "ct", shape=(16, 32, 32))
    no_study = pydicom.dcmread(files[0])
    del no_study.StudyInstanceUID
    not_ct = pydicom.dcmread(files[1])
    not_ct.Modality = "MR"
    statuses = send([mr, no_study, not_ct], node.port)
    assert statuses == [0x0122, 0xA900, 0xA900]  # SOP class not supported; data set does not match SOP class
    assert echo(node.port) == 0x0000  # still up
    assert not any(node.spool.incoming.iterdir())  # nothing refused was spooled


@pytest.mark.filterwarnings("ignore:Expected explicit VR:UserWarning")  # pydicom reading the garbage, as expected
def test_unparseable_bytes_get_cannot_understand(start_node, tmp_path):
    """A C-STORE whose data set bytes are garbage (sent raw, as a broken modality might)."""
    from pynetdicom import AE, _config
    from pynetdicom.sop_class import CTImageStorage

    node = start_node(fixed_finding)
    files = phantom_study(tmp_path / "ct", shape=(16, 32, 32))
    ds = pydicom.dcmread(files[0])
    broken = tmp_path / "broken.dcm"
    raw = io.BytesIO()
    ds.save_as(raw, enforce_file_format=True)
    data = bytearray(raw.getvalue())
    meta_end = 132 + 12 + int.from_bytes(data[140:144], "little")  # preamble, DICM, group length element + value
    data[meta_end:meta_end + 64] = b"\xff\xfe" * 32  # the data set's first elements: an impossible tag and length
    broken.write_bytes(bytes(data))
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(CTImageStorage, str(ds.file_meta.TransferSyntaxUID))
    assoc = ae.associate("127.0.0.1", node.port, ae_title="SRANET")
    old, _config.STORE_SEND_CHUNKED_DATASET = _config.STORE_SEND_CHUNKED_DATASET, True  # send the file's bytes as is
    try:
        status = assoc.send_c_store(broken)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = old
        assoc.release()
    assert int(status.Status) == 0xC000
    assert echo(node.port) == 0x0000


def test_full_spool_refuses_with_out_of_resources(start_node, tmp_path):
    node = start_node(fixed_finding, min_free_mb=10**9)  # a petabyte: never free
    files = phantom_study(tmp_path / "ct", shape=(16, 32, 32))
    assert send(files[:2], node.port) == [0xA700, 0xA700]


@pytest.mark.integration
def test_two_series_in_one_study_is_a_logged_study_failure(start_node, tmp_path, caplog):
    caplog.set_level("INFO", logger="sranet.node")
    node = start_node(fixed_finding)
    study_uid = generate_uid()
    first = phantom_study(tmp_path / "a", seed=1, shape=(16, 32, 32), study_uid=study_uid)
    second = phantom_study(tmp_path / "b", seed=2, shape=(16, 32, 32), study_uid=study_uid)
    assert set(send(first + second, node.port)) == {0}
    [line] = wait_until(lambda: health(node.spool.root), what="health line")
    assert line["state"] == "failed" and "series" in line["error"]
    failed = wait_until(lambda: list(node.spool.failed.iterdir()), what="the failed round kept")
    assert len(list((failed[0] / "instances").glob("*.dcm"))) == 32  # nothing lost
    assert "processing failed" in caplog.text
    wait_until(lambda: spool_is_clean(node.spool.root), what="a clean spool")
    good = phantom_study(tmp_path / "c", seed=3, shape=(16, 32, 32))  # the node goes on with the next study
    assert set(send(good, node.port)) == {0}
    wait_until(lambda: len(health(node.spool.root)) == 2, what="second health line")
    assert health(node.spool.root)[1]["state"] == "sent"


@pytest.mark.integration
def test_incomplete_series_is_a_logged_study_failure(start_node, tmp_path):
    node = start_node(fixed_finding)
    files = phantom_study(tmp_path / "ct", shape=(24, 32, 32))
    assert set(send(files[:6] + files[18:], node.port)) == {0}  # 12 slices missing in the middle
    [line] = wait_until(lambda: health(node.spool.root), what="health line")
    assert line["state"] == "failed" and "gap" in line["error"].lower()
    assert echo(node.port) == 0x0000


@pytest.mark.integration
def test_resent_study_is_not_sent_twice_but_new_instances_are(start_node, orthanc, tmp_path):
    node = start_node(fixed_finding)
    files = phantom_study(tmp_path / "ct", seed=7)
    study_uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    assert set(send(files, node.port)) == {0}
    wait_until(lambda: health(node.spool.root), what="first round")
    assert set(send(files, node.port)) == {0}  # the same study again
    wait_until(lambda: len(health(node.spool.root)) == 2, what="second round")
    first, second = health(node.spool.root)
    assert first["state"] == "sent" and second["state"] == "skipped" and first["study"] == second["study"]
    study = orthanc.study_id(study_uid)
    assert len(orthanc.series_by_modality(study)["SR"]) == 1
    # a second CT series of the same study after the results went out: a new round, new results
    more = phantom_study(tmp_path / "ct2", seed=8, study_uid=study_uid)
    assert set(send(more, node.port)) == {0}
    wait_until(lambda: len(health(node.spool.root)) == 3, what="third round")
    assert health(node.spool.root)[2]["state"] == "sent"
    wait_until(lambda: len(orthanc.series_by_modality(study)["SR"]) == 2, what="second SR in Orthanc")
    wait_until(lambda: spool_is_clean(node.spool.root), what="a clean spool")


@pytest.mark.integration
def test_dropped_association_then_retry_is_one_round(start_node, tmp_path):
    node = start_node(fixed_finding, idle_s=1.5)
    files = phantom_study(tmp_path / "ct", seed=9)
    assert set(send(files, node.port, abort_after=10)) == {0}  # the connection drops after 10 instances
    assert set(send(files, node.port)) == {0}  # the sender retries the whole study within the idle time
    [line] = wait_until(lambda: health(node.spool.root), what="health line")
    assert line["state"] == "sent" and line["received"] == len(files)


@pytest.mark.integration
def test_dropped_association_without_retry_processes_what_arrived(start_node, tmp_path):
    node = start_node(fixed_finding)
    files = phantom_study(tmp_path / "ct", seed=10)
    assert set(send(files, node.port, abort_after=12)) == {0}
    [line] = wait_until(lambda: health(node.spool.root), what="health line")
    assert line["received"] == 12 and line["state"] == "sent" and line["summary"]["slices"] == 12
    assert echo(node.port) == 0x0000


def leaky_processor(folder):
    raise ValueError("could not parse PatientName 'DOE^JANE'")  # a library message quoting a tag's value


@pytest.mark.integration
def test_a_processor_crash_is_logged_without_its_message(start_node, tmp_path, caplog):
    from tests.helpers import PATIENT_NAME

    caplog.set_level("INFO", logger="sranet.node")
    node = start_node(leaky_processor)
    assert set(send(phantom_study(tmp_path / "ct", shape=(16, 32, 32)), node.port)) == {0}
    [line] = wait_until(lambda: health(node.spool.root), what="health line")
    assert line["state"] == "failed" and line["error"].startswith("ValueError raised in the processor")
    assert PATIENT_NAME not in caplog.text and PATIENT_NAME not in (node.spool.root / "health.jsonl").read_text()
    [failed] = wait_until(lambda: list(node.spool.failed.iterdir()), what="the failed round")
    assert PATIENT_NAME in (failed / "state.json").read_text()  # the detail stays with the instances
    assert echo(node.port) == 0x0000
