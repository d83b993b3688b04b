"""Conv3d -> ReLU -> MaxPool3d(2) as one convolution over a space-to-depth input: ``S2dConvPool3d``.

Why: the paper's conv1 has one input channel. Every runtime computes it as a matrix product whose inner dimension
is the 125 kernel taps and whose other small dimension is the 20 output channels, a shape that runs far below a
CPU's matrix-multiply peak (oneDNN broadcasts one input value against a 20-wide vector of weights; with bf16 it has
no pair of input channels to feed its dot-product instructions). Rewritten here, the same layer has 8 input
channels, 160 output channels and a 3^3 kernel, and the max-pool becomes a maximum over channel groups.

The maths (one patch, edge n, kernel k, pool 2, output edge m = n - k + 1, even; pooled edge m/2):
    y[o, 2t + p] = sum_a w[o, a] x[2t + p + a]              p in {0,1}^3: position inside the pool window
                 = sum_{q, s} w[o, 2s + q - p] X[q, t + s]  X[q, u] = x[2u + q]: space-to-depth, 8 channels
so a valid conv of the 8-channel X (edge n/2) with a kernel of edge ceil((k + 1) / 2) and 8 * O output channels
(o, p) gives every position of every pool window at once; pool(relu(y + b)) = relu(max_p(y) + b), because the bias
is the same over a window and ReLU is monotonic (the graph adds it inside the convolution, where runtimes fuse
it). The kernel has (k + 1)^3 / k^3 of the taps (1.73x for k = 5),
zeros where 2s + q - p falls outside the kernel: more arithmetic, in a shape that runs at the peak rate. Along an
axis left out of ``axes`` the layer keeps the plain kernel and pools with MaxPool3d afterwards.

Exact in real arithmetic; in float32 only the summation order differs (tests/model/test_s2d.py, export parity gate).
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn

from sranet.errors import ConfigError


def s2d_weight(weight: torch.Tensor, parity: tuple[int, int, int]) -> torch.Tensor:
    """Conv3d weight (O, 1, k, k, k) -> (O * T, T, k0, k1, k2), T = prod(parity); output channel (o, p), input
    channel q (parity positions in C order over the axes with parity 2), k_a = ceil((k + 1) / 2) on those axes."""
    out_ch, in_ch, k = weight.shape[0], weight.shape[1], weight.shape[2]
    if in_ch != 1:
        raise ConfigError(f"S2dConvPool3d rewrites a Conv3d with one input channel; this one has {in_ch}.")
    ks = [(k + t - 1 + t - 1) // t for t in parity]  # taps per axis after the split: k (t = 1) or ceil((k + 1) / 2)
    T = parity[0] * parity[1] * parity[2]
    out = torch.zeros(out_ch, *parity, *parity, *ks, dtype=weight.dtype)  # (o, p0, p1, p2, q0, q1, q2, s0, s1, s2)
    ranges = [range(t) for t in parity]
    for p in itertools.product(*ranges):
        for q in itertools.product(*ranges):
            for s in itertools.product(*[range(v) for v in ks]):
                a = [parity[i] * s[i] + q[i] - p[i] for i in range(3)]
                if all(0 <= a[i] < k for i in range(3)):
                    out[(slice(None), *p, *q, *s)] = weight[:, 0, a[0], a[1], a[2]]
    return out.reshape(out_ch * T, T, *ks)


class S2dConvPool3d(nn.Module):
    """Drop-in for ``Conv3d(1, O, k) -> ReLU -> MaxPool3d(2)`` on cubic ``n``^3 inputs (n - k + 1 even).
    forward(x: (B, 1, n, n, n)) -> (B, O, m/2, m/2, m/2). ``axes``: the axes (0 = D, 1 = H, 2 = W) whose pooling
    is folded into the convolution; the others are pooled by a MaxPool3d. Inference only (weights are constants)."""

    def __init__(self, conv: nn.Conv3d, pool: nn.MaxPool3d, n: int, axes: tuple[int, ...] = (0, 1, 2)):
        super().__init__()
        k = conv.kernel_size[0]
        plain = (conv.stride == (1, 1, 1) and conv.dilation == (1, 1, 1) and conv.groups == 1
                 and conv.padding in ((0, 0, 0), "valid") and conv.kernel_size == (k, k, k) and conv.in_channels == 1)
        pool_ok = pool.kernel_size in (2, (2, 2, 2)) and pool.stride in (2, (2, 2, 2)) and pool.padding in (0, (0, 0, 0))
        m = n - k + 1
        if not plain or not pool_ok or m < 2 or m % 2 or n % 2 or not set(axes) <= {0, 1, 2} or not axes:
            raise ConfigError(f"S2dConvPool3d needs a valid, stride-1, one-input-channel Conv3d with a cubic kernel, "
                              f"then MaxPool3d(2), on an even {n}^3 input with an even output; got {conv}, {pool}.")
        self.n, self.m, self.out_ch = n, m, conv.out_channels
        self.parity = tuple(2 if a in axes else 1 for a in range(3))
        self.T = self.parity[0] * self.parity[1] * self.parity[2]
        weight = conv.weight.detach().to(torch.float64).cpu()
        bias = torch.zeros(self.out_ch) if conv.bias is None else conv.bias.detach().cpu()
        self.register_buffer("weight", s2d_weight(weight, self.parity).to(torch.float32))
        self.register_buffer("bias", bias.to(torch.float32).repeat_interleave(self.T))  # the same over a window
        self.rest = tuple(2 // t for t in self.parity)  # pooling left for a MaxPool3d (1 on folded axes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, (t0, t1, t2) = self.n, self.parity
        x = x.reshape(-1, n // t0, t0, n // t1, t1, n // t2, t2)  # (B, d, q0, h, q1, w, q2)
        x = x.permute(0, 2, 4, 6, 1, 3, 5).reshape(-1, self.T, n // t0, n // t1, n // t2)  # (B, q, d, h, w)
        y = nn.functional.conv3d(x, self.weight, self.bias)  # (B, (o, p), m/t0, m/t1, m/t2), bias per (o, p)
        y = y.reshape(-1, self.out_ch, self.T, *y.shape[-3:]).amax(dim=2)  # (B, O, ...): max over the window
        if self.rest != (1, 1, 1):
            y = nn.functional.max_pool3d(y, self.rest)
        return torch.relu(y)  # (B, O, m/2, m/2, m/2)

    def extra_repr(self) -> str:
        return f"1, {self.out_ch}, input={self.n}^3, parity={self.parity}"


def s2d_layers(cfg) -> tuple[int, ...]:
    """1-based Conv3d layers of ``cfg``'s patch CNN that ``S2dConvPool3d`` can replace: one input channel, a
    max-pool of 2 after it, even input and output edges. For every preset that is conv1."""
    from sranet.model.flops import conv_layers

    return tuple(L.index for L in conv_layers(cfg) if L.in_ch == 1 and cfg.pool_size == 2 and L.size % 2 == 0
                 and L.out % 2 == 0)


def s2d_copy(model: nn.Module, layers: tuple[int, ...] = (1,)) -> nn.Module:
    """A deep copy of an SRANet (eval, CPU) with Conv3d -> ReLU -> MaxPool3d number ``layers`` (1-based) computed
    by ``S2dConvPool3d``; the ReLU and MaxPool3d entries become Identity. The original is untouched."""
    from sranet.model.flops import conv_layers

    shapes = {L.index: L for L in conv_layers(model.cfg)}
    bad = [i for i in layers if i not in s2d_layers(model.cfg)]
    if bad:
        raise ConfigError(f"layers {bad} cannot be folded with their max-pool: only Conv3d layers with one input "
                          f"channel and even edges can (this model: {list(s2d_layers(model.cfg)) or 'none'}).")
    out = copy.deepcopy(model).eval().cpu()
    features = out.patch_cnn.features
    for i in layers:
        block = 3 * (i - 1)  # features = [Conv3d, ReLU, MaxPool3d] per entry of cfg.channels
        features[block] = S2dConvPool3d(features[block], features[block + 2], shapes[i].size)
        features[block + 1], features[block + 2] = nn.Identity(), nn.Identity()
    return out
