"""Fixtures for the benchmark tests: a tiny SRANet exported to ONNX with sranet metadata, run by real ORT."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from sranet.config import ModelConfig, PreprocessConfig
from sranet.runtime.artifact import ArtifactInfo
from sranet.runtime.backends.base import Backend


def export_tiny(path: Path, seed: int = 0) -> Path:
    """Export SRANet(tiny) with inputs/outputs per docs/CONTRACTS.md and ArtifactInfo in metadata_props."""
    import onnx
    import torch

    from sranet.model.sranet import SRANet

    cfg = ModelConfig.preset("tiny")
    torch.manual_seed(seed)
    model = SRANet(cfg).eval()

    class Wrapped(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, ct):
            out = self.m(ct)
            return torch.sigmoid(out.logit), out.attention

    S = cfg.input_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is fine for this tiny graph
        torch.onnx.export(Wrapped(model), (torch.zeros(2, 1, S, S, S),), str(path), input_names=["ct"],
                          output_names=["prob", "attention"], dynamic_axes={"ct": {0: "B"}}, dynamo=False)
    proto = onnx.load(str(path))
    info = ArtifactInfo(model=cfg, preprocess=PreprocessConfig.for_model(cfg), threshold=0.5)
    for k, v in info.to_metadata().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(proto, str(path))
    return path


class OrtTestBackend(Backend):
    """A minimal real ONNX Runtime backend for these tests (the package's own one may not have landed yet)."""

    name = "onnxruntime-test"

    def __init__(self, path, threads: int = 0):
        import onnx
        import onnxruntime as ort

        self.path = Path(path)
        meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        self.info = ArtifactInfo.from_metadata(meta, path=path)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def _infer(self, ct: np.ndarray) -> dict[str, np.ndarray]:
        prob, attention = self.session.run(["prob", "attention"], {"ct": ct})
        return {"prob": prob, "attention": attention}


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("bench") / "tiny.onnx")


@pytest.fixture(scope="session")
def tiny_onnx_b(tmp_path_factory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("bench") / "tiny_b.onnx", seed=1)


@pytest.fixture(scope="session")
def ort_opener():
    return OrtTestBackend
