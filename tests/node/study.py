"""Phantom studies for the node tests (the project's phantom writer) and a pynetdicom client that sends them."""

from __future__ import annotations

from pathlib import Path

from tests.runtime.dicom_out.builders import write_phantom


def phantom_study(folder: Path, *, seed: int = 5, shape=(24, 48, 48), study_uid: str | None = None) -> list[Path]:
    """Write a small phantom CT series (the project's DICOM writer, fake patient tags); return its files in order."""
    write_phantom(folder, seed=seed, shape=shape, study_uid=study_uid)
    return sorted(folder.glob("*.dcm"))


def send(files, port: int, *, abort_after: int | None = None, ae_title: str = "TESTSCU") -> list[int]:
    """C-STORE ``files`` (paths or Datasets) to the node on 127.0.0.1:port; returns each status.

    abort_after  abort the association (A-ABORT, as a dropped connection) after this many instances.
    """
    import pydicom
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts
    from pynetdicom.sop_class import CTImageStorage

    ae = AE(ae_title=ae_title)
    ae.requested_contexts = [cx for cx in StoragePresentationContexts if cx.abstract_syntax != CTImageStorage][:100]
    ae.add_requested_context(CTImageStorage, ALL_TRANSFER_SYNTAXES[:4])
    assoc = ae.associate("127.0.0.1", port, ae_title="SRANET")
    if not assoc.is_established:
        raise ConnectionError("association with the node failed")
    statuses = []
    try:
        for n, f in enumerate(files):
            if abort_after is not None and n == abort_after:
                assoc.abort()
                return statuses
            ds = f if isinstance(f, pydicom.Dataset) else pydicom.dcmread(f)
            status = assoc.send_c_store(ds)
            statuses.append(int(status.Status) if status else -1)
    finally:
        if assoc.is_established:
            assoc.release()
    return statuses


def echo(port: int) -> int:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="SRANET")
    if not assoc.is_established:
        return -1
    try:
        status = assoc.send_c_echo()
        return int(status.Status) if status else -1
    finally:
        assoc.release()


def pelvis_study(folder: Path, seed: int, *, thick_copy: bool = False, **kwargs) -> tuple[Path, Path | None]:
    """A whole-pelvis phantom study (tests.helpers.write_pelvis_study: 80 slices of 3 mm, 256 x 256) in
    ``folder/thin``; with ``thick_copy`` a second CT series of the same study in ``folder/thick``: every other slice
    (6 mm), as a scanner's thick reconstruction. Returns (thin folder, thick folder or None)."""
    import pydicom

    from sranet.data.dicom_write import write_dicom_series
    from tests.helpers import PATIENT_ID, PATIENT_NAME, write_pelvis_study

    thin, study = write_pelvis_study(folder / "thin", seed, **kwargs)
    if not thick_copy:
        return thin, None
    study_uid = pydicom.dcmread(next(thin.glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID
    spacing = (study.spacing_mm[0] * 2, study.spacing_mm[1], study.spacing_mm[2])
    write_dicom_series(study.hu[::2], spacing, folder / "thick", origin_mm=study.origin_mm, direction=study.direction,
                       patient_name=PATIENT_NAME, patient_id=PATIENT_ID, study_uid=study_uid,
                       patient_position=study.patient_position)
    return thin, folder / "thick"
