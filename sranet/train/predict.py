"""Scoring a dataset with the model outside the training step: ``predict_split`` (labels, probabilities, attention,
regulariser targets and the mean losses of a split) and ``autocast``, the mixed-precision context of a
``TrainConfig``'s ``amp`` setting, which training and scoring share.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from sranet.errors import ConfigError
from sranet.train.config import TrainConfig


def autocast(cfg: TrainConfig, device):
    import contextlib

    import torch

    if cfg.amp == "off":
        return contextlib.nullcontext()
    if cfg.amp == "fp16" and device.type != "cuda":
        raise ConfigError("--amp fp16 needs a CUDA device; on CPU use --amp bf16 or --amp off.")
    dtype = torch.bfloat16 if cfg.amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def as_input(x, cfg: TrainConfig | None):
    """``x`` in the memory layout the model trains in: channels-last-3d when ``cfg.channels_last``."""
    import torch

    return x.contiguous(memory_format=torch.channels_last_3d) if cfg is not None and cfg.channels_last else x


class SplitPrediction(NamedTuple):
    labels: np.ndarray  # (n,) int64 0/1
    probs: np.ndarray  # (n,) p(AVNFH present)
    attention: np.ndarray  # (n, N) weights a_n
    attention_logits: np.ndarray  # (n, N) raw scores q_n
    targets: np.ndarray  # (n, N) regulariser targets f_n
    loss: float  # alpha * l_c + (1 - alpha) * l_s, NaN without a TrainConfig
    loss_classification: float  # l_c
    loss_structure: float  # l_s


def predict_split(model, dataset, device, cfg: TrainConfig | None = None, batch_size: int = 4) -> SplitPrediction:
    """Run ``model`` over a dataset without augmentation; losses at ``cfg.alpha`` when a TrainConfig is given."""
    import torch
    from torch.utils.data import DataLoader

    from sranet.model.loss import sranet_loss

    model.eval()
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("labels", "probs", "attention", "logits", "targets")}
    losses = np.zeros(3)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    with torch.no_grad():
        for batch in loader:
            x = as_input(batch["volume"].to(device), cfg)
            with autocast(cfg, device) if cfg else torch.autocast(device.type, enabled=False):
                out = model(x)
            if cfg is not None:
                loss = sranet_loss(out, batch["label"].to(device), batch["targets"].to(device), cfg.alpha)
                losses += np.array([float(loss.total), float(loss.classification), float(loss.structure)]) * len(x)
            parts["labels"].append(batch["label"].numpy())
            parts["probs"].append(torch.sigmoid(out.logit.float()).cpu().numpy())
            parts["attention"].append(out.attention.float().cpu().numpy())
            parts["logits"].append(out.attention_logits.float().cpu().numpy())
            parts["targets"].append(batch["targets"].numpy())
    joined = {k: np.concatenate(v) for k, v in parts.items()}
    mean_losses = losses / len(dataset) if cfg is not None else np.full(3, math.nan)
    return SplitPrediction(joined["labels"].astype(np.int64), joined["probs"], joined["attention"], joined["logits"],
                           joined["targets"], *(float(v) for v in mean_losses))
