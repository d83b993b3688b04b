"""Configs that travel with the weights (timm-style): model shape and preprocessing.

Both are plain, frozen dataclasses with no torch import, because the torch-free runtime reads them back from an
artifact's metadata (ONNX ``metadata_props``, an engine's JSON sidecar, a checkpoint). ``from_dict`` is strict: an
unknown key is an error that suggests the nearest known one, never silently dropped.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, TypeVar

from sranet.errors import ConfigError, check_choice, suggest

T = TypeVar("T")


def _from_dict(cls: type[T], data: dict[str, Any], what: str) -> T:
    if not isinstance(data, dict):
        raise ConfigError(f"{what} must be a JSON object, got {type(data).__name__}.")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        key = unknown[0]
        raise ConfigError(
            f"{what} has an unknown key {key!r}; known keys are {', '.join(names)}.{suggest(key, names)}"
        )
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**kwargs)


class _ConfigMixin:
    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{cls.__name__} JSON is not valid JSON ({exc}).") from exc
        return cls.from_dict(data)


@dataclass(frozen=True)
class ModelConfig(_ConfigMixin):
    """SRANet's shape. The defaults are the paper's configuration (section II).

    input_size      S, edge of the cubic input in voxels (128 in the paper).
    grid            P, patches per axis; P**3 patches of (S/P)**3 voxels. Patch index = P*P*i + P*j + k.
    channels        output channels of the patch CNN's Conv3d blocks (Conv3d -> ReLU -> MaxPool each).
    kernel_size     Conv3d kernel edge, no padding (5 in the paper).
    pool_size       MaxPool3d kernel and stride.
    feature_dim     M, size of the patch embedding h_i.
    attention_dim   L, hidden size of the gated attention.
    attention_norm  "minshift" (paper eq. 7) or "softmax".
    attention_eps   epsilon in the min-shift denominator, so equal scores give uniform weights, not 0/0.
    """

    input_size: int = 128
    grid: int = 4
    channels: tuple[int, ...] = (20, 50)
    kernel_size: int = 5
    pool_size: int = 2
    feature_dim: int = 500
    attention_dim: int = 128
    attention_norm: str = "minshift"
    attention_eps: float = 1e-6

    def __post_init__(self) -> None:
        for name in ("input_size", "grid", "kernel_size", "pool_size", "feature_dim", "attention_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"ModelConfig.{name} must be a positive integer, got {value!r}.")
        if not self.channels or any(not isinstance(c, int) or c < 1 for c in self.channels):
            raise ConfigError(f"ModelConfig.channels must be positive integers, got {self.channels!r}.")
        if self.input_size % self.grid:
            raise ConfigError(
                f"ModelConfig.input_size={self.input_size} is not divisible into a {self.grid}^3 patch grid. "
                f"Choose an input_size that is a multiple of grid (e.g. {self.grid * max(1, self.input_size // self.grid)})."
            )
        check_choice("ModelConfig.attention_norm", self.attention_norm, ("minshift", "softmax"))
        if not self.attention_eps > 0:
            raise ConfigError(f"ModelConfig.attention_eps must be > 0, got {self.attention_eps!r}.")
        if self.feature_map_size < 1:
            raise ConfigError(
                f"ModelConfig: a {self.patch_size}^3 patch shrinks to nothing through {len(self.channels)} blocks of "
                f"Conv3d({self.kernel_size}) + MaxPool({self.pool_size}). Use a larger input_size, fewer blocks or a "
                "smaller kernel_size."
            )

    @property
    def num_patches(self) -> int:
        return self.grid**3

    @property
    def patch_size(self) -> int:
        return self.input_size // self.grid

    @property
    def feature_map_size(self) -> int:
        """Edge of the patch CNN's last feature map (valid convolutions, floor pooling)."""
        size = self.patch_size
        for _ in self.channels:
            size = (size - self.kernel_size + 1) // self.pool_size
            if size < 1:
                return 0
        return size

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return _from_dict(cls, data, "ModelConfig")

    @classmethod
    def preset(cls, name: str) -> ModelConfig:
        check_choice("model preset", name, MODEL_PRESETS)
        return MODEL_PRESETS[name]


# Weight initialisation schemes of sranet.model.sranet.initialize (TrainConfig.init, `sranet train --init`).
INIT_SCHEMES = ("kaiming", "torch")

# Named configurations. "paper" is the default; "small" is what the demo trains on a 2-core CPU in minutes;
# "tiny" keeps unit tests fast. All keep the 4x4x4 grid, so every artifact has 64 attention weights.
MODEL_PRESETS: dict[str, ModelConfig] = {
    "paper": ModelConfig(),
    "small": ModelConfig(input_size=64, channels=(8, 16), kernel_size=3, feature_dim=64, attention_dim=32),
    "tiny": ModelConfig(input_size=48, channels=(4, 8), kernel_size=3, feature_dim=16, attention_dim=8),
}


@dataclass(frozen=True)
class PreprocessConfig(_ConfigMixin):
    """How a CT volume becomes the network's input. Stored with the weights; the artifact, not a flag, decides.

    output_size     edge of the cubic output in voxels; must equal ModelConfig.input_size.
    window_hu       HU values are clipped to [low, high] before normalisation.
    pad_value_hu    HU used where the resampled box extends past the scan or pads to keep aspect.
    keep_aspect     True: scale the ROI's largest physical extent to output_size, pad the others (no distortion).
    normalize       "zscore": (x - mean) / std over the volume after clipping; "window": map window to [0, 1].
    interpolation   "linear" (trilinear) or "nearest".
    canonical       True: flip output axes to point along the nearest positive LPS axis (D superior, H posterior,
                    W patient left for axial scans), so scanners that store rows posterior-to-anterior or slices
                    head-to-feet give the same picture. Axes are never permuted. See sranet/runtime/preprocess.py.
    roi_margin_mm   an automatic ROI (``sranet.runtime.localise.head_roi``) is the femoral head's bounding cube
                    (centre +- radius) plus this margin on every side, so training and inference crop alike.

    Defaults: the window -1000..2000 HU keeps air, fat, soft tissue, cancellous and cortical bone (the femoral head
    and its sclerotic rim) and clips metal; padding is air (-1000 HU); keep_aspect avoids distorting the head; a
    5 mm ROI margin keeps the head filling most of the input (the crop phantoms' ROI is drawn the same way).
    A stored config without ``roi_margin_mm`` loads with its default.
    """

    output_size: int = 128
    window_hu: tuple[float, float] = (-1000.0, 2000.0)
    pad_value_hu: float = -1000.0
    keep_aspect: bool = True
    normalize: str = "zscore"
    interpolation: str = "linear"
    canonical: bool = True
    roi_margin_mm: float = 5.0

    def __post_init__(self) -> None:
        if not isinstance(self.output_size, int) or self.output_size < 8:
            raise ConfigError(f"PreprocessConfig.output_size must be an integer >= 8, got {self.output_size!r}.")
        if len(self.window_hu) != 2 or not self.window_hu[0] < self.window_hu[1]:
            raise ConfigError(f"PreprocessConfig.window_hu must be (low, high) with low < high, got {self.window_hu!r}.")
        check_choice("PreprocessConfig.normalize", self.normalize, ("zscore", "window"))
        check_choice("PreprocessConfig.interpolation", self.interpolation, ("linear", "nearest"))
        margin = self.roi_margin_mm
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0.0 <= margin <= 100.0:
            raise ConfigError(f"PreprocessConfig.roi_margin_mm must be a number of millimetres in [0, 100], got {margin!r}.")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        return _from_dict(cls, data, "PreprocessConfig")

    @classmethod
    def for_model(cls, model: ModelConfig, **overrides: Any) -> PreprocessConfig:
        return cls(output_size=model.input_size, **overrides)
