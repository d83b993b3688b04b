"""Fixtures shared by the runtime tests."""

import pytest

from sranet.runtime.predictor import Predictor


@pytest.fixture(scope="module")
def predictor(tiny_artifacts):
    """A Predictor of the session's tiny ONNX (one thread), one per test module."""
    with Predictor.from_artifact(tiny_artifacts[0], threads=1) as p:
        yield p
