"""The patch CNN's layer shapes (``conv_layers``) and SRANet's FLOPs per volume, counted from ``ModelConfig``.

Torch-free (``count_flops_torch`` imports torch to cross-check). The benchmarks divide these counts by a measured
peak rate; the exporter uses the layer walk to pick the Conv3d layers whose spectral form is cheaper.

Convention: one multiply-accumulate (MAC) = 2 FLOPs, so FLOPs = 2 x MACs for convolutions and matrix products.
Bias additions are not counted in ``matmul_flops`` (the same convention as ``torch.utils.flop_counter``, which the
tests cross-check against); they, ReLU, max-pooling comparisons, tanh/sigmoid gating and the attention
normalisation are counted as one FLOP per element operation in ``other_flops``. The compute floor
(``sranet.bench.stats.compute_floor_ms``) uses ``matmul_flops`` only, because it is divided by a measured peak
*matrix-multiply* rate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sranet.config import ModelConfig


@dataclass(frozen=True)
class FlopCount:
    """FLOPs for one volume (batch 1). All fields are FLOPs (not MACs)."""

    conv: int  # Conv3d multiply-adds, 2 per MAC, all patches
    linear: int  # patch embedding Linear, 2 per MAC, all patches
    attention: int  # K, Q, w Linears (all patches) and the fusion Z = sum_n a_n h_n
    head: int  # classifier Linear(M, 1)
    other: int  # biases, ReLU, max-pool comparisons, tanh/sigmoid/gating, attention normalisation

    @property
    def matmul_flops(self) -> int:
        return self.conv + self.linear + self.attention + self.head

    @property
    def total_flops(self) -> int:
        return self.matmul_flops + self.other

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "matmul_flops": self.matmul_flops, "total_flops": self.total_flops}


@dataclass(frozen=True)
class ConvLayer:
    """One Conv3d of the patch CNN as the graph sees it: 1-based ``index``, channels, input edge ``size``, kernel."""

    index: int
    in_ch: int
    out_ch: int
    size: int
    kernel: int

    @property
    def out(self) -> int:
        return self.size - self.kernel + 1

    def direct_flops(self) -> int:
        """FLOPs of this layer for one patch, computed directly (2 per MAC)."""
        return 2 * self.out**3 * self.out_ch * self.in_ch * self.kernel**3

    def spectral_flops(self) -> dict[str, int]:
        """FLOPs of the five matrix products of ``SpectralConv3d`` for one patch (sranet/model/spectral.py):
        2-D real DFT over (H, W), complex DFT over D, per-frequency channel mixing, inverse DFT over D (kept rows
        only), inverse 2-D real DFT over (H, W) (kept columns only). Complex numbers are pairs of reals."""
        n, m, f, c, o = self.size, self.out, self.size // 2 + 1, self.in_ch, self.out_ch
        parts = {
            "dft_hw": 2 * c * n * (n * n) * (2 * n * f),
            "dft_d": 2 * c * (2 * n) * (2 * n) * (n * f),
            "mix": 2 * (n * n * f) * (2 * c) * (2 * o),
            "idft_d": 2 * o * (2 * m) * (2 * n) * (n * f),
            "idft_hw": 2 * o * m * (2 * n * f) * (m * m),
        }
        return {**parts, "total": sum(parts.values())}


def conv_layers(cfg: ModelConfig) -> list[ConvLayer]:
    layers, size, in_ch = [], cfg.patch_size, 1
    for i, out_ch in enumerate(cfg.channels, start=1):
        layers.append(ConvLayer(i, in_ch, out_ch, size, cfg.kernel_size))
        size = (size - cfg.kernel_size + 1) // cfg.pool_size
        in_ch = out_ch
    return layers


def count_flops(cfg: ModelConfig) -> FlopCount:
    """Count FLOPs per volume for ``cfg`` (see the module docstring for the convention)."""
    N, M, L = cfg.num_patches, cfg.feature_dim, cfg.attention_dim
    size, in_ch = cfg.patch_size, 1
    conv = other = 0
    for layer in conv_layers(cfg):
        conv_out = layer.out**3 * layer.out_ch  # output elements per patch
        conv += layer.direct_flops() * N
        other += 2 * conv_out * N  # bias and ReLU
        size, in_ch = layer.out // cfg.pool_size, layer.out_ch
        other += size**3 * in_ch * (cfg.pool_size**3 - 1) * N  # max-pool comparisons
    flat = in_ch * size**3
    linear = 2 * flat * M * N
    other += 2 * M * N  # bias + ReLU
    attention = 2 * (2 * M * L + L) * N  # K, Q and w per patch
    other += (2 * L + 1) * N + 3 * L * N  # biases; tanh, sigmoid, product
    if cfg.attention_norm == "softmax":
        other += 4 * N  # max-free exp, sum, divide (approx.)
    else:
        other += 4 * N  # min, subtract, sum, divide
    attention += 2 * N * M  # fusion bmm: (1, N) @ (N, M)
    head = 2 * M
    other += 1  # head bias
    return FlopCount(conv=conv, linear=linear, attention=attention, head=head, other=other)


def count_flops_torch(cfg: ModelConfig) -> int:
    """FLOPs of one forward pass at batch 1 as counted by ``torch.utils.flop_counter`` (imports torch)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from sranet.model.sranet import SRANet

    model = SRANet(cfg).eval()
    S = cfg.input_size
    x = torch.zeros(1, 1, S, S, S)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


SPECTRAL_MAX_FRACTION = 0.5  # a layer goes spectral only if that halves its arithmetic (transposes cost memory time)


def choose_spectral_layers(cfg: ModelConfig, max_fraction: float = SPECTRAL_MAX_FRACTION) -> tuple[int, ...]:
    """1-based indices of the Conv3d layers whose spectral form needs at most ``max_fraction`` of the direct FLOPs.
    For the paper configuration this is (2,): conv2 drops from 250 to 69 MFLOP per patch; conv1 (one input channel,
    20 outputs at 28^3) would grow tenfold."""
    return tuple(L.index for L in conv_layers(cfg) if L.spectral_flops()["total"] <= max_fraction * L.direct_flops())


def graph_matmul_flops(cfg: ModelConfig, spectral_layers: tuple[int, ...] = ()) -> int:
    """``count_flops(cfg).matmul_flops`` with the layers in ``spectral_layers`` counted as their spectral form:
    the arithmetic the exported graph actually performs per volume."""
    total = count_flops(cfg).matmul_flops
    for L in conv_layers(cfg):
        if L.index in spectral_layers:
            total += (L.spectral_flops()["total"] - L.direct_flops()) * cfg.num_patches
    return total
