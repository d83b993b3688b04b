"""SRANet in PyTorch (imports torch). ``SRANet(ModelConfig())`` is the paper's configuration."""

from sranet.config import MODEL_PRESETS, ModelConfig
from sranet.model.sranet import SRANet, SRANetOutput, count_parameters, minshift_normalize, patchify

__all__ = ["MODEL_PRESETS", "ModelConfig", "SRANet", "SRANetOutput", "count_parameters", "minshift_normalize", "patchify"]
