"""SRANet's training loss (paper section II.D): classification plus the structure regulariser.

    l_c  = BCE-with-logits(logit, y)                       y in {0, 1}, one per volume
    l_s  = mean_n BCE(sigm(q_n), f_n)                      q_n raw attention logits, f_n in {0, 1} patch targets
    l_i  = BCE-with-logits(max_n c_n, y)                   c_n = head(h_n), the patches' own logits
    loss = alpha * l_c + (1 - alpha) * l_s + beta * l_i    0 <= alpha <= 1, beta >= 0 (0: the paper's loss)

f_n = 1 where patch n of the coarse bone mask holds bone (``sranet.data.masks.patch_targets``), so the regulariser
pulls attention towards bone and away from air and soft tissue. alpha = 1 switches the regulariser off.

The instance term (training only, no parameters: the network is unchanged) asks the most suspicious patch alone to
give the label. The logit is sum_n a_n c_n, so the classification loss can also be lowered without looking at the
lesion: min-shift gives the lowest-scoring patch weight 0, and an attention that makes the lesion patch the lowest
flattens the weights of the others, a change the head can read. l_i pushes every patch of a negative below 0 and one
patch of a positive above it; only lesion patches can do both, so the positives' logit then rises only by attending
to them. docs/training.md shows the shortcut and the term's effect.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from sranet.errors import ConfigError
from sranet.model.sranet import SRANetOutput


class LossParts(NamedTuple):
    total: torch.Tensor  # () alpha * l_c + (1 - alpha) * l_s + beta * l_i
    classification: torch.Tensor  # () l_c
    structure: torch.Tensor  # () l_s
    instance: torch.Tensor | None = None  # () l_i, when its weight beta > 0


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


def sranet_loss(output: SRANetOutput, labels: torch.Tensor, patch_targets: torch.Tensor, alpha: float,
                instance_weight: float = 0.0) -> LossParts:
    """Loss of one batch.

    output           SRANetOutput with logit (B,), attention_logits (B, N) and, for instance_weight > 0,
                     patch_logits (B, N) (the model in training mode).
    labels           (B,) 0/1 (any float or int dtype).
    patch_targets    (B, N) 0/1 bone targets f_n, patch n = P*P*i + P*j + k.
    alpha            weight of the classification term, 0 <= alpha <= 1.
    instance_weight  beta, the weight of the instance term l_i (0: off, the paper's loss).
    """
    alpha = check_alpha(alpha)
    if not instance_weight >= 0:
        raise ConfigError(f"instance_weight must be >= 0 (0 = off), got {instance_weight!r}.")
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
    total = alpha * l_c + (1.0 - alpha) * l_s
    if instance_weight == 0:
        return LossParts(total, l_c, l_s)
    if output.patch_logits is None:
        raise ConfigError("the instance term needs the patches' logits, which the model returns in training mode "
                          "only; call model.train() before the forward pass, or set instance_weight to 0.")
    top = output.patch_logits.float().max(dim=1).values  # (B,) the most suspicious patch's logit
    l_i = F.binary_cross_entropy_with_logits(top, labels.to(top.dtype))
    return LossParts(total + instance_weight * l_i, l_c, l_s, l_i)
