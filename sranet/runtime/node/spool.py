"""The node's on-disk spool: every received instance, every study's state, and nothing identifying in a name.

Layout (all under the spool folder the user names)::

    salt                      32 random bytes (hex), mode 0600: keys below are salted SHA-256 prefixes
    tmp/                      partial writes; emptied at every start
    incoming/<study>/         a study receiving instances: <instance>.dcm, each written to tmp/, fsynced, renamed
    work/<study>.<round>/     a round being handled: state.json, instances/, results/
    failed/<study>.<round>/   a round whose processing failed: state.json (the reason) and its instances
    records/<study>.json      what was done for a study: the instance keys of rounds whose results went out
    health.jsonl              one line per finished round (counts, timings, summary; no identifiers)

``<study>`` and ``<instance>`` are the first 16 / 24 hex digits of SHA-256(salt + Study / SOP Instance UID): no UID,
name or ID appears in a path or a log line, and only someone holding the spool can link a key to a study.

A round's ``state.json`` moves ready -> processed -> sent (or failed / skipped); each write is atomic (temporary
file, fsync, rename, fsync of the folder), so a kill at any point leaves a state the next start resumes from.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from sranet.errors import InputError
from sranet.runtime.files import atomic_write

STATES = ("ready", "processed", "sent", "failed", "skipped")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: dict[str, Any], tmp_dir: Path) -> None:
    """Write ``data`` as JSON to ``path`` (``atomic_write``: a temporary file in ``tmp_dir``, fsync, rename, fsync
    of the folder)."""
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True), tmp_dir=tmp_dir, fsync_dir=True)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Spool:
    """The spool folder. Thread-safe for the operations the node runs concurrently (each writes its own files)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise InputError("is a file; the spool must be a folder.", path=self.root, hint="Give a folder for --spool.")
        for name in ("tmp", "incoming", "work", "failed", "records"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        self.tmp, self.incoming, self.work = self.root / "tmp", self.root / "incoming", self.root / "work"
        self.failed, self.records = self.root / "failed", self.root / "records"
        salt_path = self.root / "salt"
        if not salt_path.exists():
            tmp = self.tmp / "salt.partial"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, salt_path)
            fsync_dir(self.root)
        self.lock = threading.Lock()  # a study's incoming folder is never renamed while an instance lands in it
        self._salt = salt_path.read_text().strip().encode()
        if len(self._salt) < 32:
            raise InputError("the spool's salt file is damaged (too short).", path=salt_path,
                             hint="Restore it from a backup, or use a new spool folder.")

    # -- keys -----------------------------------------------------------------------------------------------------
    def key(self, uid: str, length: int = 16) -> str:
        """Salted SHA-256 prefix of a UID: the name of a study (16 hex) or an instance (24 hex) in paths and logs."""
        return hashlib.sha256(self._salt + str(uid).encode()).hexdigest()[:length]

    # -- receiving --------------------------------------------------------------------------------------------------
    def store_instance(self, received: Path, study: str, instance: str) -> Path:
        """Move (or copy, across file systems) a received file into ``incoming/<study>/<instance>.dcm`` durably.

        The file is fsynced under a temporary name in ``tmp/``, renamed into place and the folder fsynced, so once
        this returns the instance survives a crash. A re-sent instance replaces the earlier copy.
        """
        tmp = self.tmp / f"{instance}.{secrets.token_hex(6)}.partial"
        try:
            os.replace(received, tmp)
        except OSError:  # another file system (TMPDIR elsewhere): copy instead
            shutil.copyfile(received, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        with self.lock:
            folder = self.incoming / study
            folder.mkdir(exist_ok=True)
            final = folder / f"{instance}.dcm"
            os.replace(tmp, final)
            fsync_dir(folder)
        return final

    def incoming_studies(self) -> list[str]:
        return sorted(p.name for p in self.incoming.iterdir() if p.is_dir())

    # -- rounds -----------------------------------------------------------------------------------------------------
    def record(self, study: str) -> dict[str, Any]:
        return read_json(self.records / f"{study}.json") or {"next_round": 1, "instances": [], "rounds": {}}

    def save_record(self, study: str, record: dict[str, Any]) -> None:
        write_json_atomic(self.records / f"{study}.json", record, self.tmp)

    def start_round(self, study: str, now: float, first_received: float, last_received: float) -> Path | None:
        """Turn ``incoming/<study>`` into ``work/<study>.<round>/instances`` with state ``ready``; None if empty."""
        with self.lock:
            return self._start_round(study, now, first_received, last_received)

    def _start_round(self, study: str, now: float, first_received: float, last_received: float) -> Path | None:
        source = self.incoming / study
        files = list(source.glob("*.dcm")) if source.is_dir() else []
        if not files:
            shutil.rmtree(source, ignore_errors=True)
            return None
        record = self.record(study)
        taken = [int(p.name.rsplit(".", 1)[1]) for parent in (self.work, self.failed)
                 for p in parent.glob(f"{study}.*") if p.name.rsplit(".", 1)[1].isdigit()]
        n = max([int(record.get("next_round", 1)), *(t + 1 for t in taken)])  # a purged record restarts at 1
        record["next_round"] = n + 1
        self.save_record(study, record)
        folder = self.work / f"{study}.{n}"
        folder.mkdir()
        self.set_state(folder, {"state": "ready", "study": study, "round": n, "received": len(files),
                                "first_received": first_received, "last_received": last_received, "ready": now})
        os.rename(source, folder / "instances")  # the round's instances move in one step
        fsync_dir(self.incoming)
        fsync_dir(folder)
        return folder

    def state(self, folder: Path) -> dict[str, Any]:
        return read_json(folder / "state.json") or {}

    def set_state(self, folder: Path, state: dict[str, Any]) -> None:
        if state.get("state") not in STATES:
            raise InputError(f"unknown round state {state.get('state')!r}; one of {STATES} was expected.")
        write_json_atomic(folder / "state.json", state, self.tmp)

    def update_state(self, folder: Path, **changes: Any) -> dict[str, Any]:
        state = self.state(folder)
        state.update(changes)
        self.set_state(folder, state)
        return state

    def instance_keys(self, folder: Path) -> list[str]:
        return sorted(p.stem for p in (folder / "instances").glob("*.dcm"))

    def rounds(self) -> list[Path]:
        """Rounds in ``work/``, oldest first (by round folder name order within a study, then by ready time)."""
        folders = [p for p in self.work.iterdir() if p.is_dir()]
        return sorted(folders, key=lambda p: (self.state(p).get("ready", 0.0), p.name))

    def finish_round(self, folder: Path, *, sent: bool) -> None:
        """A round is done: when its results went out, record its instances (so a re-send is recognised), then
        delete the round with its instances and results."""
        state = self.state(folder)
        study, n = state.get("study") or folder.name.split(".")[0], str(state.get("round", ""))
        record = self.record(study)
        if sent and record.get("rounds", {}).get(n) != "sent":
            keys = set(record.get("instances", [])) | set(self.instance_keys(folder))
            record["instances"] = sorted(keys)
            record.setdefault("rounds", {})[n] = "sent"
            self.save_record(study, record)
        elif not sent:
            record.setdefault("rounds", {})[n] = state.get("state", "skipped")
            self.save_record(study, record)
        shutil.rmtree(folder)
        fsync_dir(self.work)

    def fail_round(self, folder: Path, reason: str) -> Path:
        """Keep a failed round's instances (nothing acknowledged is lost) in ``failed/`` with the reason."""
        self.update_state(folder, state="failed", error=reason[:2000], failed=time.time())
        state = self.state(folder)
        record = self.record(state["study"])
        record.setdefault("rounds", {})[str(state["round"])] = "failed"
        self.save_record(state["study"], record)
        shutil.rmtree(folder / "results", ignore_errors=True)
        target = self.failed / folder.name
        os.rename(folder, target)
        fsync_dir(self.work)
        fsync_dir(self.failed)
        return target

    # -- housekeeping -----------------------------------------------------------------------------------------------
    def clear_tmp(self) -> int:
        removed = 0
        for p in self.tmp.iterdir():
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed += 1
        return removed

    def purge(self, retention_s: float, now: float | None = None) -> int:
        """Delete failed rounds and study records older than ``retention_s`` (by modification time)."""
        now = time.time() if now is None else now
        removed = 0
        for folder in list(self.failed.iterdir()):
            if now - folder.stat().st_mtime > retention_s:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        for path in list(self.records.glob("*.json")):
            if now - path.stat().st_mtime > retention_s:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def append_health(self, line: dict[str, Any]) -> None:
        data = (json.dumps(line, sort_keys=True) + "\n").encode()
        fd = os.open(self.root / "health.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
