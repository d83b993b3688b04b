"""A valid, stride-1 Conv3d computed in the frequency domain with matrix products only: ``SpectralConv3d``.

Why: ONNX Runtime's CPU Conv3d is im2col + SGEMM. For the paper's conv2 (20 -> 50 channels, 5^3 kernel, 14^3 input,
64 patches) that is 16 GFLOP per volume; the same result through 3-D DFTs needs 4.4 GFLOP, all of it in MatMul
nodes, which every runtime runs at close to its peak rate. ``sranet export --conv-impl spectral`` swaps in this
module for the layers where it at least halves the arithmetic (``sranet.model.flops.choose_spectral_layers``).

The maths (one patch, one input channel c, one output channel o, edge n, kernel k, output edge m = n - k + 1):
    y[t] = sum_a w[a] x[t + a]                              valid cross-correlation, t in [0, m)^3
    y[t] = IDFT_n( DFT_n(x) * conj(DFT_n(w_padded)) )[t]    circular correlation of length n; for t < m nothing
                                                            wraps around (t + a <= n - 1), so no padding is needed
The DFTs are separable: a real 2-D DFT over (H, W) keeps the n x (n//2 + 1) non-redundant bins, a complex DFT over D,
then per frequency bin a complex (C_in -> C_out) product, then the inverses evaluated only at the m kept positions.
Every step is a real matrix product on tensors laid out so that the only transposes are 2-D ones (contiguous rows
to contiguous columns), which ONNX Runtime runs at memory speed. Float64 builds the constants; the graph is float32
(max |error| about 1e-6 of the output scale, checked by tests/model/test_spectral.py and by the export parity gate).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from sranet.errors import ConfigError


def dft_matrices(n: int, k: int) -> dict[str, np.ndarray]:
    """The four fixed transforms for input edge ``n`` and kernel ``k`` (float64). Layouts (rows x columns):
    dft_hw  (h, w) -> (reim, fh, fw)             n*n x 2*n*f,  f = n//2 + 1, reim 0 = real, 1 = imaginary
    dft_d   (reim', fd) <- (reim, d)             2n x 2n,      left-multiplied
    idft_d  (d, reim') <- (reim, fd), d < m       2m x 2n,      left-multiplied
    idft_hw (reim, fh, fw) -> (h, w), h, w < m    2*n*f x m*m   complex-to-real, Hermitian weights folded in
    """
    m, f = n - k + 1, n // 2 + 1
    i_n, i_m, i_f = np.arange(n), np.arange(m), np.arange(f)

    theta = 2 * np.pi * (np.multiply.outer(i_n, i_n)[:, None, :, None] + np.multiply.outer(i_n, i_f)[None, :, None, :]) / n
    dft_hw = np.stack([np.cos(theta), -np.sin(theta)], axis=2).reshape(n * n, 2 * n * f)  # theta (h, w, fh, fw)

    t = 2 * np.pi * np.multiply.outer(i_n, i_n) / n  # (fd, d); X = sum_d x e^{-it} = (Xr C + Xi S) + i(Xi C - Xr S)
    C, S = np.cos(t), np.sin(t)
    dft_d = np.zeros((2, n, 2, n))
    dft_d[0, :, 0], dft_d[0, :, 1], dft_d[1, :, 0], dft_d[1, :, 1] = C, S, -S, C

    t = 2 * np.pi * np.multiply.outer(i_m, i_n) / n  # (d, fd); z = (1/n) sum_fd Z e^{+it}
    C, S = np.cos(t) / n, np.sin(t) / n
    idft_d = np.zeros((m, 2, 2, n))
    idft_d[:, 0, 0], idft_d[:, 0, 1], idft_d[:, 1, 0], idft_d[:, 1, 1] = C, -S, S, C

    weight = np.full(f, 2.0)  # bins fw and n - fw both stand behind column fw, except fw = 0 and fw = n/2
    weight[0] = 1.0
    if n % 2 == 0:
        weight[-1] = 1.0
    theta = 2 * np.pi * (np.multiply.outer(i_n, i_m)[:, None, :, None] + np.multiply.outer(i_f, i_m)[None, :, None, :]) / n
    scale = weight[None, :, None, None] / (n * n)  # theta (fh, fw, h, w)
    idft_hw = np.stack([np.cos(theta) * scale, -np.sin(theta) * scale]).reshape(2 * n * f, m * m)
    return {"dft_hw": dft_hw, "dft_d": dft_d.reshape(2 * n, 2 * n), "idft_d": idft_d.reshape(2 * m, 2 * n),
            "idft_hw": idft_hw}


def mixing_weights(weight: np.ndarray, n: int) -> np.ndarray:
    """Conv3d weight (O, C, k, k, k) -> per-bin real matrices (n*n*f, 2C, 2O) that multiply X by conj(DFT(w))."""
    out_ch, in_ch, k = weight.shape[0], weight.shape[1], weight.shape[2]
    padded = np.zeros((out_ch, in_ch, n, n, n))
    padded[..., :k, :k, :k] = weight
    spectrum = np.conj(np.fft.fft(np.fft.fft(np.fft.rfft(padded, axis=-1), axis=-2), axis=-3))  # (O, C, fd, fh, fw)
    a = spectrum.transpose(2, 3, 4, 1, 0).reshape(-1, in_ch, out_ch)  # (bins, C, O), bins = (fd, fh, fw)
    mix = np.zeros((a.shape[0], in_ch, 2, out_ch, 2))  # rows (c, reim), columns (o, reim')
    mix[:, :, 0, :, 0], mix[:, :, 1, :, 0] = a.real, -a.imag  # Yr = Xr Ar - Xi Ai
    mix[:, :, 0, :, 1], mix[:, :, 1, :, 1] = a.imag, a.real  # Yi = Xr Ai + Xi Ar
    return mix.reshape(-1, 2 * in_ch, 2 * out_ch)


class SpectralConv3d(nn.Module):
    """Drop-in for a trained ``nn.Conv3d`` (valid, stride 1, groups 1, cubic kernel) on cubic ``n``^3 inputs.
    forward(x: (B, C, n, n, n)) -> (B, O, m, m, m), m = n - k + 1. Inference only: the weights become constants."""

    def __init__(self, conv: nn.Conv3d, n: int):
        super().__init__()
        k = conv.kernel_size[0]
        plain = (conv.stride == (1, 1, 1) and conv.dilation == (1, 1, 1) and conv.groups == 1
                 and conv.padding in ((0, 0, 0), "valid") and conv.kernel_size == (k, k, k))
        if not plain or not k <= n:
            raise ConfigError(f"SpectralConv3d needs a valid, stride-1, ungrouped Conv3d with a cubic kernel no larger "
                              f"than the {n}^3 input; got {conv}.")
        self.n, self.m, self.f = n, n - k + 1, n // 2 + 1
        self.in_ch, self.out_ch = conv.in_channels, conv.out_channels
        mats = dft_matrices(n, k)
        weight = conv.weight.detach().to(torch.float64).cpu().numpy()
        bias = np.zeros(self.out_ch) if conv.bias is None else conv.bias.detach().to(torch.float64).cpu().numpy()
        for name in ("dft_hw", "dft_d", "idft_d", "idft_hw"):
            self.register_buffer(name, torch.tensor(mats[name], dtype=torch.float32))
        self.register_buffer("mix", torch.tensor(mixing_weights(weight, n), dtype=torch.float32))
        self.register_buffer("bias", torch.tensor(bias, dtype=torch.float32).reshape(1, -1, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, m, nf, C, K = self.n, self.m, self.n * self.f, self.in_ch, self.out_ch
        x = x.reshape(-1, n * n) @ self.dft_hw  # (B*C*n, (reim, fh, fw)), rows (b, c, d)
        x = x.reshape(-1, n, 2, nf).transpose(1, 2).reshape(-1, 2 * n, nf)  # (B*C, (reim, d), fhw)
        x = self.dft_d @ x  # (B*C, (reim', fd), fhw)
        x = x.reshape(-1, n * nf).transpose(0, 1).reshape(n * nf, -1, 2 * C)  # (bins, B, (c, reim)): 2-D transpose
        y = torch.bmm(x, self.mix)  # (bins, B, (o, reim))
        y = y.reshape(n * nf, -1).transpose(0, 1).reshape(-1, 2 * n, nf)  # (B*K, (reim, fd), fhw): 2-D transpose
        y = self.idft_d @ y  # (B*K, (d, reim), fhw), d < m
        y = y.reshape(-1, 2 * nf) @ self.idft_hw  # (B*K*m, (h, w)), h, w < m
        return y.reshape(-1, K, m, m, m) + self.bias

    def extra_repr(self) -> str:
        return f"{self.in_ch}, {self.out_ch}, input={self.n}^3, output={self.m}^3"


def spectral_copy(model: nn.Module, layers: tuple[int, ...]) -> nn.Module:
    """A deep copy of an SRANet (eval, CPU) with the patch CNN's Conv3d number ``layers`` (1-based) computed by
    ``SpectralConv3d``. The original is untouched."""
    from sranet.model.flops import conv_layers

    shapes = {L.index: L for L in conv_layers(model.cfg)}
    unknown = [i for i in layers if i not in shapes]
    if unknown:
        raise ConfigError(f"spectral layers {unknown} do not exist; the patch CNN has Conv3d layers 1-{len(shapes)}.")
    out = copy.deepcopy(model).eval().cpu()
    for i in layers:
        block = 3 * (i - 1)  # features = [Conv3d, ReLU, MaxPool3d] per entry of cfg.channels
        out.patch_cnn.features[block] = SpectralConv3d(out.patch_cnn.features[block], shapes[i].size)
    return out
