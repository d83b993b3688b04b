"""The node's DIMSE side: C-ECHO, and C-STORE of CT instances straight into the spool.

The C-STORE handler never decodes pixels and never waits on a model: pynetdicom writes the incoming dataset to a
temporary file as it arrives (bounded memory), the handler reads its header, checks it, moves the file into the
spool durably and only then answers. Statuses (DICOM PS3.4 Annex B and PS3.7 Annex C):

    0x0000  stored
    0x0122  refused: SOP class not supported (anything but CT Image / Enhanced CT Image storage)
    0xA700  refused: out of resources (the spool's file system is nearly full)
    0xA900  error: data set does not match SOP class (not CT, UIDs missing or not matching the request)
    0xC000  error: cannot understand (the data set cannot be parsed)
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sranet.runtime.dicom_out.source import CT_STORAGE_CLASSES
from sranet.runtime.node.spool import Spool

LOG = logging.getLogger("sranet.node")

SUCCESS, SOP_CLASS_NOT_SUPPORTED, OUT_OF_RESOURCES, DOES_NOT_MATCH, CANNOT_UNDERSTAND = (
    0x0000, 0x0122, 0xA700, 0xA900, 0xC000)
REQUIRED = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Modality")


class Receiver:
    """C-STORE / C-ECHO handlers bound to a spool. ``on_stored(study, association_id)`` is told of each instance."""

    def __init__(self, spool: Spool, on_stored: Callable[[str, int], None], *, min_free_mb: int = 1024):
        self.spool = spool
        self.on_stored = on_stored
        self.min_free_bytes = int(min_free_mb) * 1024 * 1024
        self.counts = {"stored": 0, "refused": 0}
        self._lock = threading.Lock()

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def handle_echo(self, event) -> int:
        return SUCCESS

    def handle_store(self, event) -> int:
        """EVT_C_STORE: check, spool durably, then answer (``STORE_RECV_CHUNKED_DATASET`` mode)."""
        status = self._store(event)
        self._count("stored" if status == SUCCESS else "refused")
        return status

    def _store(self, event) -> int:
        import pydicom

        peer = f"{event.assoc.requestor.ae_title}@{event.assoc.requestor.address}"
        context_class = str(event.context.abstract_syntax)
        if context_class not in CT_STORAGE_CLASSES:
            LOG.warning("refused an instance of SOP class %s from %s: only CT Image and Enhanced CT Image storage "
                        "are accepted", context_class, peer)
            return SOP_CLASS_NOT_SUPPORTED
        path = Path(event.dataset_path)
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(REQUIRED))
            values = {k: str(getattr(ds, k, "") or "") for k in REQUIRED}
        except Exception as exc:  # noqa: BLE001 - any parse failure of a peer's bytes is "cannot understand"
            LOG.warning("refused an unreadable data set from %s (%s)", peer, type(exc).__name__)
            return CANNOT_UNDERSTAND
        missing = [k for k, v in values.items() if not v]
        if len(missing) == len(REQUIRED):  # parsed as something, but none of a composite instance's basics
            LOG.warning("refused a data set from %s: no UIDs or modality could be read from it", peer)
            return CANNOT_UNDERSTAND
        request_uid = str(getattr(event.request, "AffectedSOPInstanceUID", "") or "")
        problem = None
        if missing:
            problem = f"missing {', '.join(missing)}"
        elif values["SOPClassUID"] != context_class:
            problem = "SOP Class UID differs from the presentation context"
        elif request_uid and values["SOPInstanceUID"] != request_uid:
            problem = "SOP Instance UID differs from the C-STORE request"
        elif values["Modality"] != "CT":
            problem = f"modality {values['Modality'][:16]!r}, not CT"
        if problem:
            LOG.warning("refused a data set from %s: %s", peer, problem)
            return DOES_NOT_MATCH
        if shutil.disk_usage(self.spool.root).free < self.min_free_bytes:
            LOG.error("refused an instance from %s: under %d MB free in the spool", peer,
                      self.min_free_bytes // (1024 * 1024))
            return OUT_OF_RESOURCES
        study = self.spool.key(values["StudyInstanceUID"])
        try:
            self.spool.store_instance(path, study, self.spool.key(values["SOPInstanceUID"], 24))
        except OSError as exc:
            LOG.error("could not spool an instance of study %s: %s", study, exc.strerror or type(exc).__name__)
            return OUT_OF_RESOURCES
        self.on_stored(study, id(event.assoc))
        return SUCCESS


def build_ae(receiver: Receiver, ae_title: str, *, max_associations: int, allowed_calling: tuple[str, ...] | None,
             network_timeout_s: float = 60.0):
    """A pynetdicom AE: verification, CT storage with every transfer syntax pynetdicom knows, and every other
    storage SOP class (so that a non-CT instance reaches the handler and gets a refusal status, instead of a
    rejected presentation context the sender may not report)."""
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title=ae_title)
    ae.maximum_associations = max_associations
    ae.network_timeout = network_timeout_s
    ae.acse_timeout = ae.dimse_timeout = 60.0
    if allowed_calling:
        ae.require_calling_aet = list(allowed_calling)
    ae.add_supported_context(Verification)
    for sop_class in CT_STORAGE_CLASSES:
        ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
    for cx in AllStoragePresentationContexts:
        if cx.abstract_syntax not in CT_STORAGE_CLASSES:
            ae.add_supported_context(cx.abstract_syntax)
    return ae


def wait_s(seconds: float, stop: threading.Event) -> bool:
    """Sleep up to ``seconds``; False when ``stop`` is set (the node is stopping)."""
    end = time.monotonic() + seconds
    while not stop.is_set():
        left = end - time.monotonic()
        if left <= 0:
            return True
        stop.wait(min(left, 0.5))
    return False
