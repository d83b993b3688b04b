"""Fixtures for the DICOM node tests: a real Orthanc for the whole session, a node in a thread, phantom studies."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.node.orthanc import NODE_AET, ORTHANC_AET, Orthanc, find_orthanc, free_port, start_orthanc


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory) -> Orthanc:
    """Orthanc on 127.0.0.1 with free ports and sranet declared as modality 'sranet' at ``orthanc.node_port``."""
    if find_orthanc() is None:
        pytest.skip("the Orthanc binary is not installed (Debian package 'orthanc'; .ci/run installs it)")
    try:
        server = start_orthanc(tmp_path_factory.mktemp("orthanc"), free_port())
    except (OSError, RuntimeError) as exc:
        pytest.skip(f"Orthanc cannot run here: {exc}")
    yield server
    server.stop()


@pytest.fixture
def start_node(orthanc, tmp_path):
    """start_node(processor, **config) -> a running DicomNode on orthanc.node_port sending to Orthanc; stopped after."""
    from sranet.runtime.node import Destination, DicomNode, NodeConfig

    nodes = []

    def start(processor: Callable, *, spool: Path | None = None, **config) -> DicomNode:
        values = dict(idle_s=0.5, backoff_s=0.2, max_backoff_s=1.0, min_free_mb=1)
        values.update(config)
        cfg = NodeConfig(spool=spool or tmp_path / "spool", ae_title=NODE_AET, port=orthanc.node_port,
                         destination=Destination("127.0.0.1", orthanc.dicom_port, ORTHANC_AET), **values)
        node = DicomNode(cfg, processor).start()
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.stop()


def wait_until(condition: Callable[[], object], timeout_s: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def health(spool: Path) -> list[dict]:
    import json

    path = spool / "health.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def spool_is_clean(spool: Path) -> bool:
    """Nothing left of finished rounds: no incoming, no work, no partial files."""
    return not any(any((spool / name).iterdir()) for name in ("incoming", "work", "tmp"))
