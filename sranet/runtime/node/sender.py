"""Send a round's results to the destination by C-STORE, with retries and exponential backoff.

Each result file is sent at most until the destination acknowledges it; which files went out is recorded in the
round's state, so a retry (or a restart) sends only the rest. Re-sending a file that did go out before a crash is
harmless: its SOP Instance UID is the same, and a PACS stores one instance per UID.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sranet.errors import InputError

LOG = logging.getLogger("sranet.node")
STORED = {0x0000, 0xB000, 0xB006, 0xB007}  # success, and the storage warnings (coerced, elements discarded)


@dataclass(frozen=True)
class Destination:
    """Where results go: the PACS (or any storage SCP) by host, port and AE title."""

    host: str
    port: int
    ae_title: str

    def __post_init__(self) -> None:
        if not self.host:
            raise InputError("the destination host is empty.", hint="Give --dest-host (e.g. 127.0.0.1).")
        if not (0 < int(self.port) < 65536):
            raise InputError(f"destination port {self.port} is not in 1..65535.")
        check_ae_title(self.ae_title, "destination AE title")

    @classmethod
    def parse(cls, text: str) -> Destination:
        """``AE@host:port`` -> Destination."""
        try:
            ae, address = text.split("@", 1)
            host, port = address.rsplit(":", 1)
            return cls(host, int(port), ae)
        except ValueError:
            raise InputError(f"destination {text!r} is not AE_TITLE@host:port.",
                             hint="For example ORTHANC@127.0.0.1:4242.") from None


def check_ae_title(title: str, what: str = "AE title") -> str:
    if not title or len(title) > 16 or not title.isascii() or "\\" in title or title != title.strip() or \
            any(ord(c) < 32 for c in title):
        raise InputError(f"{what} {title!r} is not 1-16 printable ASCII characters without backslash or "
                         "surrounding spaces.", hint="For example SRANET.")
    return title


def send_files(files: list[Path], destination: Destination, calling_ae: str, *, timeout_s: float = 30.0) -> list[Path]:
    """One association: C-STORE each file; returns the files the destination acknowledged (stored or warning).

    Raises ConnectionError when no association could be made.
    """
    import pydicom
    from pynetdicom import AE

    if not files:
        return []
    datasets = [(f, pydicom.dcmread(f)) for f in files]
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    for sop_class in sorted({str(ds.SOPClassUID) for _, ds in datasets}):
        ae.add_requested_context(sop_class, [str(ds.file_meta.TransferSyntaxUID) for _, ds in datasets
                                             if str(ds.SOPClassUID) == sop_class][:1])
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        raise ConnectionError(f"no association with {destination.ae_title}@{destination.host}:{destination.port}")
    done = []
    try:
        for path, ds in datasets:
            try:
                status = assoc.send_c_store(ds)
            except ValueError:  # the destination accepted no presentation context for this SOP class
                LOG.warning("destination does not accept SOP class %s (result %s)", ds.SOPClassUID, path.name)
                continue
            code = int(getattr(status, "Status", -1)) if status else -1
            if code in STORED:
                done.append(path)
            else:
                LOG.warning("destination answered C-STORE with status 0x%04X for result %s", code & 0xFFFF, path.name)
            if not assoc.is_established:
                break
    finally:
        if assoc.is_established:
            assoc.release()
    return done


def send_with_retries(files: list[Path], destination: Destination, calling_ae: str, *, attempts: int,
                      backoff_s: float, max_backoff_s: float, on_progress: Callable[[list[Path]], None],
                      sleep: Callable[[float], bool]) -> tuple[bool, int]:
    """Send ``files`` until all are acknowledged or ``attempts`` are used; returns (all sent, attempts used).

    on_progress   called with the files acknowledged so far after each attempt (the node records them).
    sleep         waits the given seconds and returns False when the node is stopping (no more retries).
    """
    remaining = list(files)
    used = 0
    delay = backoff_s
    while remaining and used < attempts:
        used += 1
        try:
            done = send_files(remaining, destination, calling_ae)
        except (ConnectionError, OSError, RuntimeError) as exc:
            LOG.warning("sending results failed (attempt %d of %d): %s", used, attempts, exc)
            done = []
        if done:
            remaining = [f for f in remaining if f not in done]
            on_progress([f for f in files if f not in remaining])
        if remaining and used < attempts:
            if not sleep(delay):
                break
            delay = min(delay * 2, max_backoff_s)
    return not remaining, used
