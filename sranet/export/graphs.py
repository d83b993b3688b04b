"""Which form each Conv3d layer takes in an exported graph: ``GraphPlan``. Same weights, same outputs, different
arithmetic; every form goes through the export's parity gate against the unmodified PyTorch model.

  direct        Conv nodes: what every runtime (TensorRT above all) knows how to tune.
  spectral      the Conv3d layers whose DFT form at most halves the arithmetic as MatMul nodes
                (sranet/model/spectral.py; paper configuration: conv2, 16.0 -> 4.4 GFLOP per volume).
  s2d           the first Conv3d -> ReLU -> MaxPool3d as one convolution over a space-to-depth input, 8 -> 160
                channels instead of 1 -> 20, and a maximum over channel groups (sranet/model/s2d.py). 1.73x the
                multiply-adds of conv1 in a shape bf16 kernels run far faster.
  s2d-spectral  both.
"""

from __future__ import annotations

from dataclasses import dataclass

from sranet.config import ModelConfig
from sranet.errors import InputError, check_choice
from sranet.runtime.artifact import KEY_CONV_IMPL, KEY_SPECTRAL_LAYERS

GRAPHS = ("direct", "spectral", "s2d", "s2d-spectral")
KEY_S2D_LAYERS = "sranet.s2d_layers"  # "1": 1-based Conv3d layers folded with their max-pool (s2d graphs only)


@dataclass(frozen=True)
class GraphPlan:
    """The graph form ``conv_impl`` and the 1-based Conv3d layers it rewrites."""

    conv_impl: str
    spectral_layers: tuple[int, ...] = ()
    s2d_layers: tuple[int, ...] = ()

    def metadata(self) -> dict[str, str]:
        meta = {KEY_CONV_IMPL: self.conv_impl}
        if self.spectral_layers:
            meta[KEY_SPECTRAL_LAYERS] = ",".join(map(str, self.spectral_layers))
        if self.s2d_layers:
            meta[KEY_S2D_LAYERS] = ",".join(map(str, self.s2d_layers))
        return meta

    def matmul_flops(self, cfg: ModelConfig) -> int:
        """Multiply-add FLOPs per volume the graph performs (the model's direct count with each rewritten layer
        counted in its own form)."""
        from sranet.model.flops import conv_layers, graph_matmul_flops

        total = graph_matmul_flops(cfg, self.spectral_layers)
        for L in conv_layers(cfg):
            if L.index in self.s2d_layers:
                total += (s2d_flops(L) - L.direct_flops()) * cfg.num_patches
        return total

    def summary(self, cfg: ModelConfig) -> str:
        from sranet.model.flops import count_flops

        parts = [f"spectral conv{i}" for i in self.spectral_layers] + [f"space-to-depth conv{i}+pool"
                                                                      for i in self.s2d_layers]
        return (f"graph {self.conv_impl} ({', '.join(parts) or 'Conv nodes'}): "
                f"{self.matmul_flops(cfg) / 1e9:.3g} GFLOP per volume (direct count "
                f"{count_flops(cfg).matmul_flops / 1e9:.3g})")


def s2d_flops(layer) -> int:
    """FLOPs for one patch of ``S2dConvPool3d`` folding all three axes (2 per MAC): (m/2)^3 positions x 8 O
    output channels x 8 input channels x ceil((k + 1) / 2)^3 taps."""
    taps = ((layer.kernel + 2) // 2) ** 3
    return 2 * (layer.out // 2) ** 3 * 8 * layer.out_ch * 8 * layer.in_ch * taps


def plan_graph(cfg: ModelConfig, conv_impl: str, spectral_layers: tuple[int, ...] | None = None) -> GraphPlan:
    """The layers ``conv_impl`` rewrites for this model. Refuses a form that would change nothing (no layer
    qualifies), naming each layer's arithmetic, rather than silently writing another graph."""
    from sranet.model.flops import SPECTRAL_MAX_FRACTION, choose_spectral_layers, conv_layers
    from sranet.model.s2d import s2d_layers

    check_choice("conv_impl", conv_impl, GRAPHS, InputError)
    layers = conv_layers(cfg)
    spectral: tuple[int, ...] = ()
    if "spectral" in conv_impl:
        if spectral_layers is not None:
            bad = [i for i in spectral_layers if i not in [L.index for L in layers]]
            if bad or not spectral_layers:
                raise InputError(f"spectral_layers={tuple(spectral_layers)!r}: this model's Conv3d layers are "
                                 f"{[L.index for L in layers]}.")
            spectral = tuple(sorted(set(spectral_layers)))
        else:
            spectral = choose_spectral_layers(cfg)
        if not spectral:
            costs = "; ".join(f"conv{L.index} {L.direct_flops() / 1e6:.3g} direct vs "
                              f"{L.spectral_flops()['total'] / 1e6:.3g} spectral" for L in layers)
            raise InputError(f"--conv-impl {conv_impl} would not cut this model's arithmetic: no Conv3d layer drops "
                             f"to {SPECTRAL_MAX_FRACTION:.0%} of its direct FLOPs (MFLOP per patch: {costs}).",
                             hint="Export with --conv-impl direct (or s2d); small kernels on small patches are "
                                  "cheapest direct.")
    elif spectral_layers is not None:
        raise InputError(f"spectral_layers was given for a {conv_impl} graph.", hint="Pass a spectral conv_impl too.")
    s2d: tuple[int, ...] = ()
    if conv_impl.startswith("s2d"):
        s2d = tuple(i for i in s2d_layers(cfg) if i not in spectral)
        if not s2d:
            raise InputError(f"--conv-impl {conv_impl}: no Conv3d layer of this model can be folded with its "
                             "max-pool (one input channel, max-pool 2, even edges).", hint="Use --conv-impl direct.")
    return GraphPlan(conv_impl, spectral, s2d)


def build_graph(model, plan: GraphPlan):
    """A copy of ``model`` (SRANet, eval, CPU) computing ``plan``'s forms; ``model`` itself is untouched."""
    if plan.s2d_layers:
        from sranet.model.s2d import s2d_copy

        model = s2d_copy(model, plan.s2d_layers)
    if plan.spectral_layers:
        from sranet.model.spectral import spectral_copy

        model = spectral_copy(model, plan.spectral_layers)
    return model
