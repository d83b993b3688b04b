"""SRANet's training loss (paper section II.D): classification plus the structure regulariser.

    l_c  = BCE-with-logits(logit, y)                       y in {0, 1}, one per volume
    l_s  = mean_n BCE(sigm(q_n), f_n)                      q_n raw attention logits, f_n in {0, 1} patch targets
    loss = alpha * l_c + (1 - alpha) * l_s                 0 <= alpha <= 1

f_n = 1 where patch n of the coarse bone mask holds bone (``sranet.data.masks.patch_targets``), so the regulariser
pulls attention towards bone and away from air and soft tissue. alpha = 1 switches the regulariser off.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from sranet.errors import ConfigError
from sranet.model.sranet import SRANetOutput


class LossParts(NamedTuple):
    total: torch.Tensor  # () alpha * l_c + (1 - alpha) * l_s
    classification: torch.Tensor  # () l_c
    structure: torch.Tensor  # () l_s


def check_alpha(alpha: float) -> float:
    """Return alpha as a float, or raise ConfigError unless 0 <= alpha <= 1."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise ConfigError(f"alpha must be a number between 0 and 1, got {alpha!r}.") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(
            f"alpha={alpha!r} is outside [0, 1]. alpha weighs the classification loss against the structure "
            "regulariser: loss = alpha * l_c + (1 - alpha) * l_s; use e.g. 0.9."
        )
    return value


def sranet_loss(output: SRANetOutput, labels: torch.Tensor, patch_targets: torch.Tensor, alpha: float) -> LossParts:
    """Loss of one batch.

    output         SRANetOutput with logit (B,) and attention_logits (B, N).
    labels         (B,) 0/1 (any float or int dtype).
    patch_targets  (B, N) 0/1 bone targets f_n, patch n = P*P*i + P*j + k.
    alpha          weight of the classification term, 0 <= alpha <= 1.
    """
    alpha = check_alpha(alpha)
    logit = output.logit.float()
    q = output.attention_logits.float()
    if labels.shape != logit.shape:
        raise ConfigError(f"labels have shape {tuple(labels.shape)}, expected {tuple(logit.shape)} (one per volume).")
    if patch_targets.shape != q.shape:
        raise ConfigError(
            f"patch targets have shape {tuple(patch_targets.shape)}, expected {tuple(q.shape)} (B, N patches)."
        )
    l_c = F.binary_cross_entropy_with_logits(logit, labels.to(logit.dtype))
    l_s = F.binary_cross_entropy_with_logits(q, patch_targets.to(q.dtype))  # mean over batch and patches
    return LossParts(alpha * l_c + (1.0 - alpha) * l_s, l_c, l_s)
