"""``DicomNode``: receive CT studies by C-STORE, process each when it goes quiet, send the results back.

Threads: pynetdicom's (one per association: C-ECHO, C-STORE into the spool), one scheduler (finds studies idle
for ``idle_s`` with no association still sending to them, re-queues sends that are due, purges old records) and
``workers`` workers (process a round with the injected processor, write its results to the spool, send them).
An association never waits on processing; a study's progress is on disk (``sranet.runtime.node.spool``), so after
a crash or a kill the next start resumes every unfinished round and sends each round's results once.

Logs name a study by its salted key (``study 3fa9c1d2e4b5a6f7``), never by UID, name or ID.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from sranet.errors import InputError, SranetError
from sranet.runtime.node.receiver import Receiver, build_ae, wait_s
from sranet.runtime.node.sender import Destination, check_ae_title, send_with_retries
from sranet.runtime.node.spool import Spool

LOG = logging.getLogger("sranet.node")


class StudyResult(NamedTuple):
    """What a processor returns for one study: the DICOM objects to send and a JSON-able summary for the health
    line (counts, decisions, QC flags; nothing identifying)."""

    datasets: list
    summary: dict[str, Any]


# A processor gets the folder holding one round's received instances (``*.dcm``, flat) and returns a StudyResult.
# It raises a SranetError (or any exception) to record the round as failed; it must not write into the folder.
Processor = Callable[[Path], StudyResult]


@dataclass(frozen=True)
class NodeConfig:
    """How the node listens, waits, sends and keeps.

    spool            folder for received instances and study state (created if missing).
    ae_title, host, port   where the node listens (port 0: any free port, see ``DicomNode.port``).
    destination      where results go (C-STORE).
    idle_s           a study is processed once no instance has arrived for this long.
    workers          studies processed at the same time.
    send_attempts, backoff_s, max_backoff_s   one send tries this often, waiting backoff_s, 2x, 4x ... up to
                     max_backoff_s between tries; then it is parked and tried again every max_backoff_s.
    retention_days   failed rounds (with their instances) and study records are deleted after this long.
    min_free_mb      C-STORE is refused (out of resources) below this much free space in the spool.
    allowed_calling  accept associations only from these AE titles (None: from any).
    """

    spool: Path
    destination: Destination
    ae_title: str = "SRANET"
    host: str = "127.0.0.1"
    port: int = 11112
    idle_s: float = 10.0
    workers: int = 1
    send_attempts: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    retention_days: float = 7.0
    min_free_mb: int = 1024
    max_associations: int = 16
    allowed_calling: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_ae_title(self.ae_title, "node AE title")
        if not isinstance(self.destination, Destination):
            raise InputError("NodeConfig.destination must be a Destination (host, port, AE title).")
        if not (0 <= int(self.port) < 65536):
            raise InputError(f"port {self.port} is not in 0..65535.")
        for name in ("idle_s", "backoff_s", "max_backoff_s", "retention_days"):
            if not float(getattr(self, name)) > 0:
                raise InputError(f"{name}={getattr(self, name)!r} must be positive.")
        for name in ("workers", "send_attempts", "max_associations"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name}={getattr(self, name)!r} must be at least 1.")


class DicomNode:
    """Start with ``start()`` (returns once listening) or ``serve_forever()``; stop with ``stop()``."""

    def __init__(self, config: NodeConfig, processor: Processor):
        if not callable(processor):
            raise InputError(f"the processor must be callable (folder -> StudyResult), got {type(processor).__name__}.")
        self.config = config
        self.processor = processor
        self.spool = Spool(config.spool)
        self.receiver = Receiver(self.spool, self._stored, min_free_mb=config.min_free_mb)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._arrivals: dict[str, list[float]] = {}  # study -> [first (wall), last (monotonic), last (wall)]
        self._open: dict[int, set[str]] = {}  # association -> studies it stored into
        self._queue: queue.Queue[Path] = queue.Queue()
        self._queued: set[str] = set()
        self._parked: dict[str, float] = {}  # round folder name -> monotonic time its send is due again
        self._threads: list[threading.Thread] = []
        self._server = None

    # -- lifecycle ----------------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._server.server_address[1]) if self._server else int(self.config.port)

    def start(self) -> DicomNode:
        from pynetdicom import _config, evt

        _config.STORE_RECV_CHUNKED_DATASET = True  # received data sets go to a file, not to memory
        self._recover()
        ae = build_ae(self.receiver, self.config.ae_title, max_associations=self.config.max_associations,
                      allowed_calling=self.config.allowed_calling)
        handlers = [(evt.EVT_C_STORE, self.receiver.handle_store), (evt.EVT_C_ECHO, self.receiver.handle_echo),
                    (evt.EVT_RELEASED, self._closed), (evt.EVT_ABORTED, self._closed),
                    (evt.EVT_CONN_CLOSE, self._closed)]
        self._server = ae.start_server((self.config.host, int(self.config.port)), block=False, evt_handlers=handlers)
        self._threads = [threading.Thread(target=self._schedule, name="sranet-scheduler", daemon=True)]
        self._threads += [threading.Thread(target=self._work, name=f"sranet-worker-{n}", daemon=True)
                          for n in range(self.config.workers)]
        for t in self._threads:
            t.start()
        LOG.info("listening as %s on %s:%d; results to %s@%s:%d; idle %.1f s; spool %s", self.config.ae_title,
                 self.config.host, self.port, self.config.destination.ae_title, self.config.destination.host,
                 self.config.destination.port, self.config.idle_s, self.spool.root)
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop listening, let the workers finish the round in hand; queued rounds resume at the next start."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        for t in self._threads:
            t.join(timeout_s)
        LOG.info("stopped")

    def request_stop(self) -> None:
        """Ask ``serve_forever`` to return (safe from a signal handler)."""
        self._stop.set()

    def serve_forever(self) -> None:
        self.start()
        try:
            while not self._stop.wait(1.0):
                pass
        finally:
            self.stop()

    def __enter__(self) -> DicomNode:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- receiving bookkeeping ------------------------------------------------------------------------------------------
    def _stored(self, study: str, association: int) -> None:
        with self._lock:
            arrival = self._arrivals.setdefault(study, [time.time(), 0.0, 0.0])
            arrival[1], arrival[2] = time.monotonic(), time.time()
            self._open.setdefault(association, set()).add(study)

    def _closed(self, event) -> None:
        with self._lock:
            self._open.pop(id(event.assoc), None)

    def _recover(self) -> None:
        """Resume after a restart: partial files go, receiving studies get a full idle period, rounds resume."""
        removed = self.spool.clear_tmp()
        self.spool.purge(self.config.retention_days * 86400.0)
        now_wall, now = time.time(), time.monotonic()
        for study in self.spool.incoming_studies():
            self._arrivals[study] = [now_wall, now, now_wall]
        for folder in self.spool.rounds():
            state = self.spool.state(folder).get("state")
            if state is None or (state == "ready" and not (folder / "instances").is_dir()):
                import shutil  # a round interrupted while it was being created: its instances are still incoming

                shutil.rmtree(folder)
                continue
            self._enqueue(folder)
        if removed or self._queued or self._arrivals:
            LOG.info("resumed: %d receiving studies, %d rounds to finish, %d partial files removed",
                     len(self._arrivals), len(self._queued), removed)

    def _enqueue(self, folder: Path) -> None:
        with self._lock:
            if folder.name in self._queued:
                return
            self._queued.add(folder.name)
        self._queue.put(folder)

    # -- scheduler ------------------------------------------------------------------------------------------------------
    def _schedule(self) -> None:
        tick = min(0.25, self.config.idle_s / 4)
        last_purge = time.monotonic()
        while not self._stop.wait(tick):
            now = time.monotonic()
            with self._lock:
                busy = set().union(*self._open.values()) if self._open else set()
                ready = [s for s, a in self._arrivals.items() if now - a[1] >= self.config.idle_s and s not in busy]
            for study in ready:
                with self._lock:
                    first, _, last_wall = self._arrivals.pop(study)
                try:
                    folder = self.spool.start_round(study, time.time(), first, last_wall)
                except OSError as exc:
                    LOG.error("study %s: could not start processing: %s", study, exc)
                    continue
                if folder is not None:
                    LOG.info("study %s round %s: %d instances, quiet for %.1f s: queued", study,
                             folder.name.split(".")[1], len(self.spool.instance_keys(folder)), self.config.idle_s)
                    self._enqueue(folder)
            for name, due in list(self._parked.items()):
                if now >= due:
                    del self._parked[name]
                    if (self.spool.work / name).is_dir():
                        self._enqueue(self.spool.work / name)
            if now - last_purge > 3600:
                self.spool.purge(self.config.retention_days * 86400.0)
                last_purge = now

    # -- workers --------------------------------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                folder = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._handle(folder)
            except Exception as exc:  # noqa: BLE001 - the node stays up; the round stays on disk and is retried
                LOG.error("round %s: %s while handling it; it stays in the spool and is tried again in %.0f s",
                          folder.name, type(exc).__name__, self.config.max_backoff_s)
                self._parked[folder.name] = time.monotonic() + self.config.max_backoff_s
            finally:
                with self._lock:
                    self._queued.discard(folder.name)

    def _handle(self, folder: Path) -> None:
        state = self.spool.state(folder)
        if state.get("state") == "ready":
            state = self._process(folder, state)
        if state.get("state") == "processed":
            state = self._send(folder, state)
        if state.get("state") in ("sent", "skipped"):
            self.spool.finish_round(folder, sent=state["state"] == "sent")
        elif state.get("state") == "failed" and folder.parent == self.spool.work:
            self.spool.fail_round(folder, state.get("error", "unknown"))

    def _process(self, folder: Path, state: dict[str, Any]) -> dict[str, Any]:
        from sranet.runtime.dicom_out.writer import save_dataset

        study, n = state["study"], state["round"]
        keys = set(self.spool.instance_keys(folder))
        done = set(self.spool.record(study).get("instances", []))
        if keys and keys <= done:
            LOG.info("study %s round %s: all %d instances were in rounds whose results went out: re-sent study, "
                     "results not sent again", study, n, len(keys))
            state = self.spool.update_state(folder, state="skipped", finished=time.time())
            self._health(state)
            return state
        t0 = time.monotonic()
        import shutil

        shutil.rmtree(folder / "results", ignore_errors=True)  # a restart mid-processing: start the results anew
        try:
            result = self.processor(folder / "instances")
            datasets, summary = _check_result(result)
            (folder / "results").mkdir()
            names = []
            for i, ds in enumerate(datasets):
                save_dataset(ds, folder / "results" / f"{i:03d}.dcm")
                names.append(f"{i:03d}.dcm")
        except Exception as exc:  # noqa: BLE001 - a processing failure is this study's, not the node's
            # sranet's own errors are written for logs (no identifiers); another library's message might quote a
            # tag's value, so the log and the health line get its type only and the round's state.json (kept with
            # the instances in failed/) the full text and traceback
            if isinstance(exc, SranetError):
                reason, detail = str(exc), None
            else:
                import traceback

                reason = f"{type(exc).__name__} raised in the processor (details in the failed round's state.json)"
                detail = "".join(traceback.format_exception(exc))[-4000:]
            state = self.spool.update_state(folder, state="failed", error=reason[:2000], detail=detail,
                                            process_s=round(time.monotonic() - t0, 3), finished=time.time())
            LOG.error("study %s round %s: processing failed: %s (instances kept in the spool's failed/)",
                      study, n, reason)
            self._health(state)
            return state
        return self.spool.update_state(folder, state="processed", results=names, sent_files=[], summary=summary,
                                       process_s=round(time.monotonic() - t0, 3), processed=time.time())

    def _send(self, folder: Path, state: dict[str, Any]) -> dict[str, Any]:
        results = folder / "results"
        files = [results / name for name in state.get("results", []) if name not in state.get("sent_files", [])]
        t0 = time.monotonic()

        def progress(sent: list[Path]) -> None:
            self.spool.update_state(folder, sent_files=sorted({*state.get("sent_files", []), *(p.name for p in sent)}))

        ok, used = send_with_retries(files, self.config.destination, self.config.ae_title,
                                     attempts=self.config.send_attempts, backoff_s=self.config.backoff_s,
                                     max_backoff_s=self.config.max_backoff_s, on_progress=progress,
                                     sleep=lambda s: wait_s(s, self._stop))
        attempts = int(state.get("send_attempts", 0)) + used
        send_s = round(float(state.get("send_s", 0.0)) + time.monotonic() - t0, 3)
        if not ok:
            self.spool.update_state(folder, send_attempts=attempts, send_s=send_s)
            self._parked[folder.name] = time.monotonic() + self.config.max_backoff_s
            LOG.error("study %s round %s: results not sent after %d attempts; next try in %.0f s (kept in the spool)",
                      state["study"], state["round"], attempts, self.config.max_backoff_s)
            return self.spool.state(folder)
        state = self.spool.update_state(folder, state="sent", send_attempts=attempts, send_s=send_s,
                                        finished=time.time())
        self._health(state)
        return state

    def _health(self, state: dict[str, Any]) -> None:
        line = {k: state.get(k) for k in ("study", "round", "state", "received", "process_s", "send_s",
                                          "send_attempts", "summary", "error") if state.get(k) is not None}
        line["results"] = len(state.get("results", []))
        if state.get("finished") and state.get("last_received"):
            line["last_instance_to_done_s"] = round(state["finished"] - state["last_received"], 3)
        if state.get("ready") and state.get("last_received"):
            line["idle_wait_s"] = round(state["ready"] - state["last_received"], 3)
        self.spool.append_health(line)
        LOG.info("health %s", json.dumps(line, sort_keys=True))


def _check_result(result) -> tuple[list, dict[str, Any]]:
    """Accept a StudyResult (or a (datasets, summary) pair) of pydicom Datasets and a JSON-able dict."""
    from pydicom.dataset import Dataset

    try:
        datasets, summary = result
    except (TypeError, ValueError):
        raise InputError(f"the processor returned {type(result).__name__}; a StudyResult(datasets, summary) "
                         "was expected.") from None
    datasets = list(datasets)
    if not all(isinstance(ds, Dataset) and "SOPInstanceUID" in ds and "SOPClassUID" in ds for ds in datasets):
        raise InputError("the processor returned something that is not a DICOM dataset with SOP Class and "
                         "Instance UIDs.")
    if summary is not None and not isinstance(summary, dict):
        raise InputError(f"the processor's summary is a {type(summary).__name__}; a dict was expected.")
    try:
        json.dumps(summary)
    except (TypeError, ValueError):
        raise InputError("the processor's summary is not JSON-serialisable (numbers, strings, lists, dicts only).") \
            from None
    return datasets, dict(summary or {})
