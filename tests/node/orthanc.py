"""A real Orthanc (the Debian package's binary) on 127.0.0.1 for the node tests, driven through its REST API.

``start_orthanc`` writes a JSON configuration (DICOM and HTTP ports, storage in a temporary folder, no plugins, a
modality entry declaring the sranet node), starts ``Orthanc`` and waits until ``/system`` answers.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ORTHANC_AET, NODE_AET = "ORTHANC", "SRANET"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_orthanc() -> str | None:
    return shutil.which("Orthanc") or next((p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if Path(p).exists()),
                                           None)


@dataclass
class Orthanc:
    process: subprocess.Popen
    http_port: int
    dicom_port: int
    node_port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def request(self, method: str, path: str, body: bytes | dict | list | None = None, timeout: float = 60.0):
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        req = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    def get(self, path: str):
        return self.request("GET", path)

    def upload(self, files) -> str:
        """POST each DICOM file to /instances; returns the Orthanc id of their (last) study."""
        study = None
        for f in files:
            study = self.request("POST", "/instances", Path(f).read_bytes())["ParentStudy"]
        return study

    def send_to_node(self, study: str, synchronous: bool = True):
        """Orthanc C-STOREs the study to the sranet modality (as a PACS routing rule would)."""
        return self.request("POST", "/modalities/sranet/store",
                            {"Resources": [study], "Synchronous": synchronous})

    def study_id(self, study_uid: str) -> str | None:
        found = self.request("POST", "/tools/lookup", study_uid.encode())
        return next((x["ID"] for x in found if x["Type"] == "Study"), None)

    def series_by_modality(self, study: str) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for series in self.get(f"/studies/{study}/series"):
            out.setdefault(series["MainDicomTags"].get("Modality", ""), []).append(series)
        return out

    def instance_file(self, instance: str) -> bytes:
        return self.request("GET", f"/instances/{instance}/file")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def start_orthanc(folder: Path, node_port: int, timeout_s: float = 20.0) -> Orthanc:
    exe = find_orthanc()
    if exe is None:
        raise FileNotFoundError("Orthanc")
    folder.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "sranet-tests", "StorageDirectory": str(folder / "storage"), "IndexDirectory": str(folder / "index"),
        "DicomAet": ORTHANC_AET, "DicomPort": dicom_port, "HttpPort": http_port, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "Plugins": [], "StorageCompression": False,
        "DicomAlwaysAllowStore": True, "DicomCheckModalityHost": False, "DicomScuTimeout": 30,
        "DicomModalities": {"sranet": [NODE_AET, "127.0.0.1", node_port]},
        "HttpsVerifyPeers": False, "StableAge": 60, "JobsHistorySize": 50, "SaveJobs": False,
    }
    cfg = folder / "orthanc.json"
    cfg.write_text(json.dumps(config, indent=1))
    log = folder / "orthanc.log"
    process = subprocess.Popen([exe, str(cfg)], stdout=open(log, "wb"), stderr=subprocess.STDOUT, cwd=folder)
    server = Orthanc(process, http_port, dicom_port, node_port, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with code {process.returncode}: {log.read_text()[-2000:]}")
        try:
            server.get("/system")
            return server
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"Orthanc did not answer within {timeout_s} s: {log.read_text()[-2000:]}")
