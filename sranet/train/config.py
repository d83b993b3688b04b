"""``TrainConfig``: every training setting in one frozen, torch-free dataclass, stored in each checkpoint.

Defaults follow the paper (section III.A): AdamW, lr 1e-4, weight decay 1e-4, lr divided by 10 every 50 epochs,
200 epochs. alpha = 0.9 is our default (tune it per data set). One addition to the paper's loss is on by default:
the instance term at 0.5 (training only, the network is unchanged; ``instance_weight=0`` gives the paper's loss),
because the seed sweep shows it makes the attention find the lesion on every seed (docs/training.md). The main
fields are ``sranet train`` options; the rest keep their defaults from the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sranet.config import INIT_SCHEMES, MODEL_PRESETS, ModelConfig, _ConfigMixin, _from_dict
from sranet.data.augment import AUGMENT_MODES
from sranet.errors import ConfigError, check_choice

AMP_CHOICES = ("off", "bf16", "fp16")
SAMPLER_CHOICES = ("random", "balanced")
SELECT_CHOICES = ("val_auc", "val_auc_visible", "val_loss")


@dataclass(frozen=True)
class TrainConfig(_ConfigMixin):
    """model           preset name ("paper", "small", "tiny").
    epochs          number of epochs to run in total (a resumed run continues up to this many).
    lr              AdamW learning rate at epoch 0.
    weight_decay    AdamW weight decay.
    lr_step_epochs  StepLR period: lr is multiplied by lr_gamma every lr_step_epochs epochs.
    lr_gamma        StepLR factor.
    batch_size      volumes per optimizer step (per process under torchrun).
    alpha           loss = alpha * l_c + (1 - alpha) * l_s (0..1).
    instance_weight beta of the instance term: loss += beta * l_i, l_i = BCE(max_n c_n, y) on the patches' own
                    logits (sranet.model.loss; 0: off, the paper's loss). Training only; the network is unchanged.
    min_bone_fraction  f_n = 1 when patch n holds any bone (0, the paper rule) or at least this fraction of bone.
    augment         random flips + a geometric transform on training volumes (sranet.data.augment).
    augment_mode    the transform: "crop_zoom" (the reference loader's), "head_crop_zoom" (keeps the central
                    femoral-head box, so a lesion is never cut out), "affine" or "none" (flips only).
    seed            seeds initialisation, data order and augmentation.
    workers         DataLoader worker processes (0 = load in the main process).
    device          "cpu", "cuda", "cuda:N" or "auto".
    amp             "off", "bf16" or "fp16" autocast (CUDA only for fp16; bf16 also works on CPU).
    channels_last   keep the model's weights and activations in the channels-last-3d layout (NDHWC), which
                    oneDNN and cuDNN convolve faster; the network and its checkpoint are the same either way.
    val_every       validate every this many epochs (and always on the last).
    init            "kaiming" or "torch" (PyTorch's default); see sranet.model.sranet.initialize.
    attention_init_std  with init "kaiming": the standard deviation of the attention output w's initial weights.
    warmup_epochs   the lr rises linearly from lr / (steps of warm-up) to lr over this many epochs (0: off).
    grad_clip       clip the whole model's gradient norm to this value per step (0: off).
    sampler         "random" (shuffle) or "balanced" (every class equally often, classes alternating, so every
                    batch of even size holds as many positives as negatives).
    alpha_start     alpha at epoch 0 when alpha_ramp_epochs > 0; alpha moves linearly from it to ``alpha``.
    alpha_ramp_epochs  epochs over which alpha moves from alpha_start to alpha (0: alpha throughout).
    select          which validated epoch becomes best.pt: "val_auc" (highest AUC, ties to the lower loss),
                    "val_auc_visible" (highest AUC without the ARCO stage I positives, which CT cannot show; ties
                    to the higher AUC, then the lower loss) or "val_loss" (lowest classification loss l_c).
    """

    model: str = "paper"
    epochs: int = 200
    lr: float = 1e-4
    weight_decay: float = 1e-4
    lr_step_epochs: int = 50
    lr_gamma: float = 0.1
    batch_size: int = 2
    alpha: float = 0.9
    instance_weight: float = 0.5
    min_bone_fraction: float = 0.0
    augment: bool = True
    augment_mode: str = "crop_zoom"
    seed: int = 0
    workers: int = 0
    device: str = "cpu"
    amp: str = "off"
    channels_last: bool = False
    val_every: int = 1
    init: str = "torch"
    attention_init_std: float = 1e-3
    warmup_epochs: int = 0
    grad_clip: float = 0.0
    sampler: str = "random"
    alpha_start: float = 1.0
    alpha_ramp_epochs: int = 0
    select: str = "val_auc"

    def __post_init__(self) -> None:
        check_choice("model", self.model, MODEL_PRESETS)
        check_choice("amp", self.amp, AMP_CHOICES)
        check_choice("init", self.init, INIT_SCHEMES)
        check_choice("sampler", self.sampler, SAMPLER_CHOICES)
        check_choice("augment_mode", self.augment_mode, AUGMENT_MODES)
        check_choice("select", self.select, SELECT_CHOICES)
        for name in ("epochs", "batch_size", "lr_step_epochs", "val_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"TrainConfig.{name} must be a positive integer, got {value!r}.")
        for name in ("warmup_epochs", "alpha_ramp_epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"TrainConfig.{name} must be an integer >= 0, got {value!r}.")
        if not (isinstance(self.attention_init_std, (int, float)) and self.attention_init_std > 0):
            raise ConfigError(f"TrainConfig.attention_init_std must be > 0, got {self.attention_init_std!r}.")
        if not (isinstance(self.instance_weight, (int, float)) and self.instance_weight >= 0):
            raise ConfigError(f"TrainConfig.instance_weight must be >= 0 (0 = off), got {self.instance_weight!r}.")
        if not (isinstance(self.grad_clip, (int, float)) and self.grad_clip >= 0):
            raise ConfigError(f"TrainConfig.grad_clip must be >= 0 (0 = off), got {self.grad_clip!r}.")
        if not (isinstance(self.alpha_start, (int, float)) and 0 <= self.alpha_start <= 1):
            raise ConfigError(f"TrainConfig.alpha_start must be in [0, 1], got {self.alpha_start!r}.")
        if not isinstance(self.workers, int) or self.workers < 0:
            raise ConfigError(f"TrainConfig.workers must be an integer >= 0, got {self.workers!r}.")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ConfigError(f"TrainConfig.lr must be > 0, got {self.lr!r}. The paper uses 1e-4.")
        if not self.weight_decay >= 0:
            raise ConfigError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}.")
        if not 0 < self.lr_gamma <= 1:
            raise ConfigError(f"TrainConfig.lr_gamma must be in (0, 1], got {self.lr_gamma!r}.")
        if not 0 <= self.min_bone_fraction <= 1:
            raise ConfigError(f"TrainConfig.min_bone_fraction must be in [0, 1], got {self.min_bone_fraction!r}.")
        if not (isinstance(self.alpha, (int, float)) and 0 <= self.alpha <= 1):
            raise ConfigError(
                f"TrainConfig.alpha={self.alpha!r} is outside [0, 1]; loss = alpha * l_c + (1 - alpha) * l_s. Use e.g. 0.9."
            )

    def alpha_at(self, epoch: int) -> float:
        """alpha of 0-based ``epoch``: alpha_start moving linearly to alpha over alpha_ramp_epochs, then alpha."""
        if self.alpha_ramp_epochs <= 0 or epoch >= self.alpha_ramp_epochs:
            return float(self.alpha)
        return float(self.alpha_start + (self.alpha - self.alpha_start) * epoch / self.alpha_ramp_epochs)

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig.preset(self.model)

    def replace(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return _from_dict(cls, data, "TrainConfig")
