"""SRANet in PyTorch. ``SRANet(ModelConfig())`` is the paper's configuration.

The names below import torch on first use, so the torch-free parts of this package (``sranet.model.flops``, the
layer shapes and FLOP counts) can be imported where torch is not installed.
"""

from __future__ import annotations

import importlib
from typing import Any

from sranet.config import MODEL_PRESETS, ModelConfig

_FROM_SRANET = ("SRANet", "SRANetOutput", "count_parameters", "minshift_normalize", "patchify")

__all__ = ["MODEL_PRESETS", "ModelConfig", *_FROM_SRANET]


def __getattr__(name: str) -> Any:
    if name in _FROM_SRANET:
        return getattr(importlib.import_module("sranet.model.sranet"), name)
    raise AttributeError(f"module 'sranet.model' has no attribute {name!r}")
