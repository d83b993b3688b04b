"""SRANet, read top to bottom like section II.C of the paper (Li et al., "Structure Regularized Attentive Network
for Automatic Femoral Head Necrosis Diagnosis and Localization").

  1. Patching      the (S, S, S) crop is cut into a P x P x P grid of (S/P)^3 patches; patch n = P*P*i + P*j + k.
  2. Patch CNN     shared over patches: [Conv3d(k) -> ReLU -> MaxPool3d] x 2 -> Linear -> h_n in R^M.
  3. Attention     gated attention (Ilse et al. 2018): q_n = w^T (tanh(K h_n) * sigm(Q h_n)), L hidden units.
                   Min-shift weights (paper eq. 7): a_n = (q_n - min q) / (sum_m (q_m - min q) + eps).
  4. Fusion        Z = sum_n a_n h_n.
  5. Head          Linear(M, 1) -> logit of p(AVNFH present).

Because the weights sum to 1 and the head is linear, the logit is the attention-weighted mean of the patches' own
logits c_n = head(h_n): logit = sum_n a_n c_n. In training mode the model also returns c_n (``patch_logits``), which
the optional instance term of the loss reads; in eval mode (and in every exported graph) it is not computed.

The structure regulariser (training only) supervises the raw attention logits q_n; it lives in ``loss.py``.
Shapes use B = batch, N = P**3 patches, C = channels, p = patch edge.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from sranet.config import INIT_SCHEMES, ModelConfig
from sranet.errors import InputError


class SRANetOutput(NamedTuple):
    logit: torch.Tensor  # (B,)   logit of p(AVNFH present); sigmoid gives the probability
    attention: torch.Tensor  # (B, N) attention weights a_n, each row sums to 1 (up to eps)
    attention_logits: torch.Tensor  # (B, N) raw gated-attention scores q_n, supervised by the structure regulariser
    patch_logits: torch.Tensor | None = None  # (B, N) head(h_n) per patch, in training mode only


def patchify(x: torch.Tensor, grid: int) -> torch.Tensor:
    """Cut (B, 1, S, S, S) volumes into (B * N, 1, p, p, p) patches, patch n = grid*grid*i + grid*j + k."""
    B, C, D, H, W = x.shape
    p = D // grid
    x = x.reshape(B, C, grid, p, grid, p, grid, p)  # (B, C, i, p, j, p, k, p)
    x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)  # (B, i, j, k, C, p, p, p)
    return x.reshape(B * grid**3, C, p, p, p)  # (B*N, C, p, p, p)


class PatchCNN(nn.Module):
    """Shared patch encoder: [Conv3d -> ReLU -> MaxPool3d] per entry of cfg.channels, then Linear to M."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 1
        for out_ch in cfg.channels:
            layers += [nn.Conv3d(in_ch, out_ch, cfg.kernel_size), nn.ReLU(inplace=True), nn.MaxPool3d(cfg.pool_size)]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.embed = nn.Sequential(nn.Linear(in_ch * cfg.feature_map_size**3, cfg.feature_dim), nn.ReLU(inplace=True))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        h = self.features(patches)  # (B*N, C, f, f, f)
        return self.embed(h.flatten(1))  # (B*N, M)


class GatedAttention(nn.Module):
    """q_n = w^T (tanh(K h_n) * sigm(Q h_n)); K, Q: M -> L, w: L -> 1. Returns weights a and raw scores q."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.K = nn.Linear(cfg.feature_dim, cfg.attention_dim)
        self.Q = nn.Linear(cfg.feature_dim, cfg.attention_dim)
        self.w = nn.Linear(cfg.attention_dim, 1)
        self.norm = cfg.attention_norm
        self.eps = cfg.attention_eps

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.w(torch.tanh(self.K(h)) * torch.sigmoid(self.Q(h))).squeeze(-1)  # (B, N)
        if self.norm == "softmax":
            return torch.softmax(q, dim=1), q
        return minshift_normalize(q, self.eps), q


def minshift_normalize(q: torch.Tensor, eps: float) -> torch.Tensor:
    """Paper eq. 7: a_n = (q_n - min q) / sum_m (q_m - min q). q: (B, N) -> (B, N), rows sum to 1.

    The lowest-scoring patch gets exactly 0. When all scores are equal (sum below eps) the weights fall back to
    uniform 1/N instead of 0/0 = NaN; the denominator is clamped so neither branch's gradient is NaN.
    """
    n = q.shape[1]
    shifted = q - q.min(dim=1, keepdim=True).values  # (B, N), >= 0, lowest = 0
    total = shifted.sum(dim=1, keepdim=True)  # (B, 1)
    weights = shifted / total.clamp_min(eps)  # (B, N)
    return torch.where(total > eps, weights, torch.full_like(weights, 1.0 / n))


class SRANet(nn.Module):
    """Patch CNN + gated attention + fusion + head. forward(x: (B, 1, S, S, S) float32) -> SRANetOutput."""

    def __init__(self, cfg: ModelConfig | None = None):
        super().__init__()
        self.cfg = cfg or ModelConfig()
        self.patch_cnn = PatchCNN(self.cfg)
        self.attention = GatedAttention(self.cfg)
        self.head = nn.Linear(self.cfg.feature_dim, 1)

    def check_input(self, x: torch.Tensor) -> None:
        S = self.cfg.input_size
        if x.dim() != 5 or tuple(x.shape[1:]) != (1, S, S, S):
            raise InputError(
                f"SRANet expects input of shape (B, 1, {S}, {S}, {S}), got {tuple(x.shape)}. "
                f"Resample the crop to {S}^3 (a multiple of the {self.cfg.grid}^3 patch grid) before the model."
            )

    def forward(self, x: torch.Tensor) -> SRANetOutput:
        if not torch.jit.is_tracing() and not torch.compiler.is_compiling():
            self.check_input(x)
        B = x.shape[0]
        N = self.cfg.num_patches
        patches = patchify(x, self.cfg.grid)  # (B*N, 1, p, p, p)
        h = self.patch_cnn(patches).reshape(B, N, -1)  # (B, N, M)
        a, q = self.attention(h)  # (B, N), (B, N)
        z = torch.bmm(a.unsqueeze(1), h).squeeze(1)  # (B, M): Z = sum_n a_n h_n
        logit = self.head(z).squeeze(-1)  # (B,)
        patch_logits = self.head(h).squeeze(-1) if self.training else None  # (B, N)
        return SRANetOutput(logit, a, q, patch_logits)


def initialize(model: SRANet, scheme: str = "kaiming", attention_std: float = 1e-3) -> SRANet:
    """Re-initialise ``model``'s weights in place (training only; the architecture is unchanged). Returns it.

    "kaiming"  Conv3d and the patch embedding (each followed by a ReLU): Kaiming-normal, fan_in, gain sqrt(2), bias 0,
               so activations keep their scale through the ReLUs instead of shrinking by ~1/3 per layer under
               PyTorch's default (a=sqrt(5)). K and Q: Xavier-uniform (tanh / sigmoid units), bias 0. The attention
               output w: normal(0, attention_std), bias 0, so the scores q_n start nearly equal: softmax weights
               start at ~1/N, and min-shift (scale-free) starts from the spread of the features alone. Head: bias 0.
    "torch"    PyTorch's default initialisation, as constructed (nothing is changed).
    """
    from sranet.errors import check_choice

    check_choice("init", scheme, INIT_SCHEMES)
    if scheme == "torch":
        return model
    with torch.no_grad():
        for module in model.patch_cnn.modules():
            if isinstance(module, (nn.Conv3d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(module.bias)
        for layer in (model.attention.K, model.attention.Q):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        nn.init.normal_(model.attention.w.weight, std=attention_std)
        nn.init.zeros_(model.attention.w.bias)
        nn.init.zeros_(model.head.bias)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
