"""``sranet serve``: a DICOM node (C-ECHO, C-STORE of CT) that processes each study and sends the results back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sranet.cli._common import BackendDeviceOpt, MaxVolumeOpt, TrustedKeyOpt, cli_errors


@cli_errors
def serve(
    artifact: Annotated[Path | None, typer.Argument(help="Model artifact (.onnx, .pt, .engine/.plan, .xml) that processes each study: localise, predict each hip, SR + attention maps. Omit it only with --processor.", show_default=False)] = None,
    spool: Annotated[Path, typer.Option("--spool", help="Folder for received instances and each study's state (created if missing). Keep it on a local disk.")] = ...,
    dest: Annotated[str, typer.Option("--dest", help="Where results go by C-STORE: AE_TITLE@host:port, e.g. ORTHANC@127.0.0.1:4242.")] = ...,
    processor: Annotated[str | None, typer.Option("--processor", help="Advanced, instead of ARTIFACT: your own processing function 'module:function': folder of one study's instances -> StudyResult(datasets, summary).")] = None,
    ae_title: Annotated[str, typer.Option("--ae-title", help="This node's AE title.")] = "SRANET",
    host: Annotated[str, typer.Option("--host", help="Address to listen on; 0.0.0.0 accepts studies from other machines.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="DICOM port to listen on.")] = 11112,
    idle_s: Annotated[float, typer.Option("--idle", min=0.1, help="Seconds without a new instance after which a study is processed.")] = 10.0,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Studies processed at the same time.")] = 1,
    send_attempts: Annotated[int, typer.Option("--send-attempts", min=1, help="Tries per send before the results are parked and retried later.")] = 5,
    backoff_s: Annotated[float, typer.Option("--backoff", min=0.01, help="Seconds before the first retry; doubled for each next one.")] = 1.0,
    max_backoff_s: Annotated[float, typer.Option("--max-backoff", min=0.01, help="Longest wait between tries, and the wait before a parked send is tried again.")] = 60.0,
    retention_days: Annotated[float, typer.Option("--retention-days", min=0.001, help="Failed studies (with their instances) and study records are deleted after this many days.")] = 7.0,
    min_free_mb: Annotated[int, typer.Option("--min-free-mb", min=0, help="Refuse instances (out of resources) below this much free space in the spool.")] = 1024,
    allow_calling: Annotated[list[str] | None, typer.Option("--allow-calling", help="Accept associations only from this calling AE title (repeat for several).")] = None,
    device: BackendDeviceOpt = "cpu",
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads for inference per worker (default: the CPUs divided among --workers).")] = None,
    trusted_key: TrustedKeyOpt = None,
    predict_metal: Annotated[bool, typer.Option("--predict-metal", help="Predict a hip with metal (prosthesis, screws) near its head too, flagged metal_near_head; by default the SR says it was not assessed and why.")] = False,
    overview: Annotated[bool, typer.Option("--overview/--no-overview", help="Also send a Secondary Capture of the overview picture (coronal slice with each hip's box, then each hip's attention), for viewers that show neither SR nor Parametric Map.")] = True,
    max_volume_gib: MaxVolumeOpt = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
) -> None:
    """Receive CT studies by C-STORE, process each one once no instance has arrived for --idle seconds, and send the results (SR, attention maps) to --dest by C-STORE, with retries.

    Each study: the CT series to read is chosen by one rule (axial, at least 16 slices; among those spanning 80 mm or more, the thinnest slices), its femoral heads are found and each hip predicted with ARTIFACT (opened once per worker; its digest checked, and with --trusted-key its signature). The results, in the same study: a Comprehensive 3D SR with each hip's finding (or why it was not assessed), a Parametric Map of each assessed hip's attention on the CT grid, and (--overview) a Secondary Capture of the overview picture.

    Every instance is written to --spool (fsynced) before it is acknowledged; a restart resumes unfinished studies and sends each study's results once. Logs name a study by a salted hash, never by UID, name or ID.

    Wiring it to Orthanc: (1) declare the node in Orthanc's configuration: "DicomModalities": {"sranet": ["SRANET", "127.0.0.1", 11112]}, and keep "DicomAlwaysAllowStore": true (the default) so Orthanc accepts the results.

    (2) start the node: sranet serve model.onnx --spool /var/lib/sranet/spool --dest ORTHANC@127.0.0.1:4242

    (3) send a study from Orthanc: POST /modalities/sranet/store with {"Resources": ["<Orthanc study id>"]}, or route every stable CT study with a Lua OnStableStudy script. The results appear in the same study.
    """
    import logging
    import os
    import signal
    import tempfile

    from sranet.errors import InputError, check_choice
    from sranet.runtime.node import Destination, DicomNode, NodeConfig, load_processor

    level = check_choice("--log-level", log_level.lower(), ("debug", "info", "warning", "error"))
    if (artifact is None) == (processor is None):
        raise InputError("give a model ARTIFACT (the default processing) or --processor module:function, not "
                         f"{'both' if artifact is not None else 'neither'}.",
                         hint="For example: sranet serve model.onnx --spool SPOOL --dest ORTHANC@127.0.0.1:4242.")
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = NodeConfig(spool=spool, destination=Destination.parse(dest), ae_title=ae_title, host=host, port=port,
                        idle_s=idle_s, workers=workers, send_attempts=send_attempts, backoff_s=backoff_s,
                        max_backoff_s=max_backoff_s, retention_days=retention_days, min_free_mb=min_free_mb,
                        allowed_calling=tuple(allow_calling) if allow_calling else None)
    if processor is not None:
        process = load_processor(processor)
    else:
        from sranet.runtime.integrity import load_trusted_keys
        from sranet.runtime.node.model_processor import ModelProcessor

        trusted = load_trusted_keys(trusted_key) if trusted_key else None
        process = ModelProcessor(artifact, workers=workers, device=device, threads=threads, trusted_keys=trusted,
                                 predict_metal=predict_metal, overview=overview, max_gib=max_volume_gib)
    node = DicomNode(config, process)
    # pynetdicom writes each incoming data set to a temporary file: keep it on the spool's file system so that
    # spooling it is a rename, not a copy (this process is the node's own)
    os.makedirs(node.spool.tmp, exist_ok=True)
    tempfile.tempdir = str(node.spool.tmp)
    signal.signal(signal.SIGTERM, lambda *_: node.request_stop())
    try:
        node.serve_forever()
    finally:
        if hasattr(process, "close"):
            process.close()
