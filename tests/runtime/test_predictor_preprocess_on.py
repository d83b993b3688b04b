"""Predictor's choice of preprocessing device: validated up front, never a silent fallback to the CPU."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from sranet.config import ModelConfig, PreprocessConfig
from sranet.errors import DependencyMissingError, InputError
from sranet.runtime.artifact import ArtifactInfo
from sranet.runtime.backends.base import Backend
from sranet.runtime.predictor import Predictor


class ConstantBackend(Backend):
    """A backend that returns fixed outputs: enough to exercise the Predictor's own checks."""

    name = "constant"

    def __init__(self):
        cfg = ModelConfig.preset("tiny")
        self.info = ArtifactInfo(model=cfg, preprocess=PreprocessConfig.for_model(cfg), threshold=0.5)
        self.path = Path("constant")

    def _infer(self, ct):
        B, N = ct.shape[0], self.info.model.num_patches
        return {"prob": np.full(B, 0.7, np.float32), "attention": np.full((B, N), 1.0 / N, np.float32)}


def test_unknown_device_is_refused_with_a_suggestion():
    with pytest.raises(InputError, match="preprocess_on='gpus'.*Did you mean 'gpu'"):
        Predictor(ConstantBackend(), model_sha256="0", preprocess_on="gpus")


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_gpu_preprocessing_without_cupy_fails_at_construction():
    with pytest.raises(DependencyMissingError, match="CuPy"):
        Predictor(ConstantBackend(), model_sha256="0", preprocess_on="gpu")


def test_cpu_preprocessing_runs_a_volume_end_to_end():
    from sranet.runtime.volume import Volume

    hu = np.full((40, 50, 60), -1000.0, np.float32)
    hu[10:30, 15:35, 20:40] = 400.0
    predictor = Predictor(ConstantBackend(), model_sha256="0", preprocess_on="cpu")
    result = predictor.predict(Volume(hu=hu, spacing_mm=(1.0, 1.0, 1.0)))
    assert result.probability == pytest.approx(0.7)
    assert result.decision is True
    assert result.attention.shape == (4, 4, 4)


def test_the_hip_side_from_the_roi_reaches_the_results_record():
    from sranet.runtime.roi import parse_roi
    from sranet.runtime.volume import Volume

    hu = np.full((40, 50, 60), -1000.0, np.float32)
    predictor = Predictor(ConstantBackend(), model_sha256="0")
    left = predictor.predict(Volume(hu=hu, spacing_mm=(1.0, 1.0, 1.0)), roi=parse_roi("0:40,0:50,0:30", "L"))
    assert left.to_record()["side"] == "L"
    plain = predictor.predict(Volume(hu=hu, spacing_mm=(1.0, 1.0, 1.0)), roi="0:40,0:50,0:30")
    assert plain.to_record()["side"] is None
