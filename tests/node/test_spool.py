"""The spool's layout and state machine, without a network: keys, durable moves, rounds, records, retention."""

from __future__ import annotations

import os
import time

import pytest

from sranet.errors import InputError
from sranet.runtime.node import Spool

STUDY_UID = "1.2.826.0.1.3680043.8.498.1234567890"


def received(spool: Spool, name: str = "x") -> os.PathLike:
    path = spool.root / f"{name}.tmpdcm"
    path.write_bytes(b"\0" * 128 + b"DICM")
    return path


def test_keys_are_salted_per_spool_and_stable(tmp_path):
    a, b = Spool(tmp_path / "a"), Spool(tmp_path / "b")
    assert a.key(STUDY_UID) == Spool(tmp_path / "a").key(STUDY_UID) != b.key(STUDY_UID)
    assert len(a.key(STUDY_UID)) == 16 and STUDY_UID not in a.key(STUDY_UID)
    assert (tmp_path / "a" / "salt").stat().st_mode & 0o777 == 0o600


def test_round_life_cycle_and_resend_record(tmp_path):
    spool = Spool(tmp_path)
    study = spool.key(STUDY_UID)
    for n in range(3):
        spool.store_instance(received(spool, str(n)), study, f"inst{n}")
    assert spool.incoming_studies() == [study] and not list(spool.tmp.iterdir())
    folder = spool.start_round(study, time.time(), time.time() - 5, time.time() - 1)
    assert folder.name == f"{study}.1" and spool.state(folder)["state"] == "ready"
    assert spool.instance_keys(folder) == ["inst0", "inst1", "inst2"] and not spool.incoming_studies()
    spool.update_state(folder, state="sent")
    spool.finish_round(folder, sent=True)
    assert not folder.exists() and spool.record(study)["instances"] == ["inst0", "inst1", "inst2"]
    spool.store_instance(received(spool), study, "inst0")
    assert spool.start_round(study, time.time(), 0.0, 0.0).name == f"{study}.2"  # rounds are numbered on
    with pytest.raises(InputError, match="unknown round state"):
        spool.set_state(folder.parent / f"{study}.2", {"state": "done"})


def test_failed_rounds_keep_their_instances_until_retention(tmp_path):
    spool = Spool(tmp_path)
    study = spool.key(STUDY_UID)
    spool.store_instance(received(spool), study, "inst0")
    folder = spool.start_round(study, time.time(), 0.0, 0.0)
    target = spool.fail_round(folder, "2 CT series found")
    assert (target / "instances" / "inst0.dcm").exists() and spool.state(target)["error"] == "2 CT series found"
    assert spool.record(study)["rounds"] == {"1": "failed"} and spool.record(study)["instances"] == []
    assert spool.purge(retention_s=3600) == 0
    assert spool.purge(retention_s=3600, now=time.time() + 7200) == 2  # the failed round and the record
    assert not any(spool.failed.iterdir()) and not any(spool.records.iterdir())


def test_a_file_is_not_a_spool(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="must be a folder"):
        Spool(tmp_path / "f")


def test_round_numbers_never_clash_after_records_expire(tmp_path):
    spool = Spool(tmp_path)
    study = spool.key(STUDY_UID)
    spool.store_instance(received(spool), study, "inst0")
    spool.fail_round(spool.start_round(study, time.time(), 0.0, 0.0), "reason")
    (spool.records / f"{study}.json").unlink()  # the record expired, the failed round not yet
    spool.store_instance(received(spool), study, "inst1")
    assert spool.start_round(study, time.time(), 0.0, 0.0).name == f"{study}.2"
