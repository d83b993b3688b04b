"""``sranet serve``: a DICOM node (C-ECHO, C-STORE of CT) that processes each study and sends the results back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sranet.cli._common import cli_errors


@cli_errors
def serve(
    spool: Annotated[Path, typer.Option("--spool", help="Folder for received instances and each study's state (created if missing). Keep it on a local disk.")],
    dest: Annotated[str, typer.Option("--dest", help="Where results go by C-STORE: AE_TITLE@host:port, e.g. ORTHANC@127.0.0.1:4242.")],
    processor: Annotated[str, typer.Option("--processor", help="Processing function 'module:function': folder of one study's instances -> StudyResult(datasets, summary).")],
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
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
) -> None:
    """Receive CT studies by C-STORE, process each one once no instance has arrived for --idle seconds, and send the results (SR, attention maps) to --dest by C-STORE, with retries.

    Every instance is written to --spool (fsynced) before it is acknowledged; a restart resumes unfinished studies and sends each study's results once. Logs name a study by a salted hash, never by UID, name or ID.

    Wiring it to Orthanc: (1) declare the node in Orthanc's configuration: "DicomModalities": {"sranet": ["SRANET", "127.0.0.1", 11112]}, and keep "DicomAlwaysAllowStore": true (the default) so Orthanc accepts the results.

    (2) start the node: sranet serve --spool /var/lib/sranet/spool --dest ORTHANC@127.0.0.1:4242 --processor module:function

    (3) send a study from Orthanc: POST /modalities/sranet/store with {"Resources": ["<Orthanc study id>"]}, or route every stable CT study with a Lua OnStableStudy script. The results appear in the same study.
    """
    import logging
    import os
    import signal
    import tempfile

    from sranet.errors import check_choice
    from sranet.runtime.node import Destination, DicomNode, NodeConfig, load_processor

    level = check_choice("--log-level", log_level.lower(), ("debug", "info", "warning", "error"))
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = NodeConfig(spool=spool, destination=Destination.parse(dest), ae_title=ae_title, host=host, port=port,
                        idle_s=idle_s, workers=workers, send_attempts=send_attempts, backoff_s=backoff_s,
                        max_backoff_s=max_backoff_s, retention_days=retention_days, min_free_mb=min_free_mb,
                        allowed_calling=tuple(allow_calling) if allow_calling else None)
    node = DicomNode(config, load_processor(processor))
    # pynetdicom writes each incoming data set to a temporary file: keep it on the spool's file system so that
    # spooling it is a rename, not a copy (this process is the node's own)
    os.makedirs(node.spool.tmp, exist_ok=True)
    tempfile.tempdir = str(node.spool.tmp)
    signal.signal(signal.SIGTERM, lambda *_: node.request_stop())
    node.serve_forever()
