"""What ``sranet train`` records each epoch to say why a run learns or stalls (RUN/metrics.jsonl, RUN/plots/).

All of it is cheap: attention statistics, dead ReLUs and localisation come from the validation pass the loop runs
anyway (hooks on its forward), gradient norms and the regulariser's target share are accumulated during the
training steps. Keys written per validated epoch (N patches, n validation volumes):

    attn_entropy            mean over volumes of H(a) = -sum_n a_n log a_n, in nats; log N for uniform weights
    attn_effective_patches  mean of exp(H(a)): how many patches carry the weight (N uniform, 1 all on one patch)
    attn_top_share          mean of max_n a_n, the weight of the top patch
    attn_onehot_share       share of volumes with max_n a_n >= 0.9 (min-shift's "all weight on one patch")
    attn_uniform_share      share of volumes with exp(H(a)) >= 0.95 N (weights collapsed to about uniform)
    attn_zero_share         mean share of patches with weight 0 (min-shift gives the lowest patch exactly 0)
    attn_logit_range        mean of max_n q_n - min_n q_n, the spread of the raw scores min-shift divides by
    attn_target_mass        mean attention on patches whose regulariser target f_n is 1 (bone)
    val_top_patch_hit_rate  share of visible-lesion positives whose top patch holds lesion (sranet.train.metrics)
    val_bottom_patch_hit_rate  the same for the lowest-weight patch (weight 0): near 1 when the lesion is switched off
    val_lesion_attention_mass, val_lesion_chance_level
    dead_relu               {layer: share of its channels that are 0 on every validation volume and patch}
    zero_activation         {layer: share of its activations that are 0}
                            (convolution maps are sampled at every s-th voxel per axis, at most 8 per axis)
and per trained epoch:
    grad_norm               {block: mean over steps of the block's gradient L2 norm, before clipping}
    grad_norm_total         mean over steps of the whole model's gradient norm (max in grad_norm_total_max)
    grad_clipped_share      share of steps whose norm exceeded TrainConfig.grad_clip (0 without clipping)
    train_target_share      share of the regulariser's targets f_n that are 1 over the epoch's batches
"""

from __future__ import annotations

from typing import Any

import numpy as np

ONEHOT_TOP_SHARE = 0.9
UNIFORM_EFFECTIVE_FRACTION = 0.95


def attention_stats(attention: np.ndarray, logits: np.ndarray | None = None,
                    targets: np.ndarray | None = None) -> dict[str, float]:
    """Summary of attention weights ``attention`` (n, N), rows summing to 1; optional raw scores ``logits`` (n, N)
    and regulariser targets ``targets`` (n, N) in {0, 1}. Keys as in the module docstring."""
    a = np.asarray(attention, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0:
        return {}
    n_patches = a.shape[1]
    safe = np.where(a > 0, a, 1.0)
    entropy = -(a * np.log(safe)).sum(axis=1)  # 0 log 0 = 0
    effective = np.exp(entropy)
    top = a.max(axis=1)
    stats = {
        "attn_entropy": float(entropy.mean()),
        "attn_effective_patches": float(effective.mean()),
        "attn_top_share": float(top.mean()),
        "attn_onehot_share": float((top >= ONEHOT_TOP_SHARE).mean()),
        "attn_uniform_share": float((effective >= UNIFORM_EFFECTIVE_FRACTION * n_patches).mean()),
        "attn_zero_share": float((a <= 0).mean()),
    }
    if logits is not None:
        q = np.asarray(logits, dtype=np.float64)
        stats["attn_logit_range"] = float((q.max(axis=1) - q.min(axis=1)).mean())
    if targets is not None:
        stats["attn_target_mass"] = float((a * (np.asarray(targets) > 0.5)).sum(axis=1).mean())
    return stats


def _block_name(name: str, module, convs: int) -> str:
    """Short name of a parametrised layer: conv1, conv2, ... for the Conv3d layers, embed for the patch embedding,
    attn_K / attn_Q / attn_w for the attention, else the module's own name (head)."""
    from torch import nn

    if isinstance(module, nn.Conv3d):
        return f"conv{convs}"
    if name.startswith("patch_cnn.embed"):
        return "embed"
    if name.startswith("attention."):
        return "attn_" + name.split(".", 1)[1]
    return name


def _relu_layers(model) -> dict[str, Any]:
    """{name: ReLU module} in forward order, each named after the layer that feeds it (conv1, conv2, ..., embed)."""
    from torch import nn

    layers: dict[str, Any] = {}
    convs, previous = 0, None
    for name, module in model.named_modules():
        if isinstance(module, nn.ReLU):
            layers[previous or name] = module
        elif any(True for _ in module.parameters(recurse=False)):
            convs += isinstance(module, nn.Conv3d)
            previous = _block_name(name, module, convs)
    return layers


class ReLUMonitor:
    """Context manager: forward hooks on every ReLU of ``model`` that count, per layer, the channels that are ever
    positive and the activations that are 0 (convolution maps sampled at every s-th voxel per axis, at most 8 per
    axis). ``result()`` -> (dead_relu, zero_activation) dicts {layer: share}."""

    def __init__(self, model):
        self.layers = _relu_layers(model)
        self.alive: dict[str, Any] = {}
        self.zeros: dict[str, float] = {}
        self.counts: dict[str, float] = {}
        self.handles: list[Any] = []

    def _hook(self, name: str):
        def record(_module, _inputs, output):
            import torch

            y = output.detach()  # (B*N, C, d, d, d) conv maps or (B*N, M) embeddings
            if y.dim() == 5:  # every s-th voxel per axis, at most 8 per axis: a full pass over conv1's maps
                step = -(-y.shape[-1] // 8)  # of the paper configuration costs as much as the convolution itself
                y = y[:, :, ::step, ::step, ::step].contiguous()
            dims = [0] + list(range(2, y.dim()))
            active = y.amax(dim=dims) > 0  # (C,)
            self.alive[name] = active if name not in self.alive else self.alive[name] | active
            self.zeros[name] = self.zeros.get(name, 0.0) + float(y.numel() - torch.count_nonzero(y))
            self.counts[name] = self.counts.get(name, 0.0) + float(y.numel())
        return record

    def __enter__(self) -> ReLUMonitor:
        self.handles = [m.register_forward_hook(self._hook(name)) for name, m in self.layers.items()]
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def result(self) -> tuple[dict[str, float], dict[str, float]]:
        dead = {k: float(1.0 - v.float().mean()) for k, v in self.alive.items()}
        zero = {k: self.zeros[k] / self.counts[k] for k in self.zeros if self.counts[k]}
        return dead, zero


def gradient_blocks(model) -> dict[str, list[Any]]:
    """{block: parameters} for gradient norms, one block per parametrised layer (names as ``_block_name``)."""
    from torch import nn

    blocks: dict[str, list[Any]] = {}
    convs = 0
    for name, module in model.named_modules():
        params = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if params:
            convs += isinstance(module, nn.Conv3d)
            blocks.setdefault(_block_name(name, module, convs), []).extend(params)
    return blocks


class GradientMonitor:
    """Per-step gradient norms per block and optional clipping of the whole model's norm to ``clip``.

    The sums stay on the device and are read once per epoch, so a step never waits for the GPU."""

    def __init__(self, model, clip: float | None = None):
        self.blocks = gradient_blocks(model)
        self.clip = clip
        self.reset()

    def reset(self) -> None:
        self.sums = None  # (blocks + 1,) summed norms, the last entry the whole model's
        self.total_max = None
        self.clipped = None
        self.finite = None
        self.steps = 0

    def step(self) -> None:
        """Record the current .grad norms (call after backward and after unscaling), then clip when ``clip`` is set:
        every gradient is scaled by min(1, clip / norm), as ``torch.nn.utils.clip_grad_norm_`` does. A step with a
        non-finite norm (fp16 overflow, skipped by the GradScaler) enters ``grad_nonfinite_steps``, not the means."""
        import torch

        norms = []
        for params in self.blocks.values():
            grads = [p.grad.detach().float().norm() for p in params if p.grad is not None]
            norms.append(torch.stack(grads).norm() if grads else torch.zeros((), device=params[0].device))
        block_norms = torch.stack(norms)
        total = block_norms.norm()
        # an fp16 step whose gradients overflowed (GradScaler skips it) is counted apart, not averaged in
        finite = torch.isfinite(total)
        row = torch.where(finite, torch.cat([block_norms, total[None]]), 0.0)
        first = self.sums is None
        self.sums = row if first else self.sums + row
        kept = torch.where(finite, total, 0.0)
        self.total_max = kept if first else torch.maximum(self.total_max, kept)
        self.finite = finite.float() if first else self.finite + finite.float()
        over = (finite & (total > self.clip)).float() if self.clip is not None else torch.zeros_like(total)
        self.clipped = over if first else self.clipped + over
        self.steps += 1
        if self.clip is not None:
            scale = (self.clip / (total + 1e-6)).clamp(max=1.0)
            for params in self.blocks.values():
                for p in params:
                    if p.grad is not None:
                        p.grad.mul_(scale.to(p.grad.dtype))

    def result(self) -> dict[str, Any]:
        if not self.steps:
            return {}
        finite = int(self.finite)
        means = (self.sums / finite).tolist() if finite else [None] * len(self.sums)
        return {"grad_norm": dict(zip(self.blocks, means[:-1], strict=True)), "grad_norm_total": means[-1],
                "grad_norm_total_max": float(self.total_max) if finite else None,
                "grad_clipped_share": float(self.clipped) / self.steps, "grad_nonfinite_steps": self.steps - finite}


def _series(history: list[dict[str, Any]], key: str, sub: str | None = None) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for record in history:
        value = record.get(key)
        if sub is not None:
            value = value.get(sub) if isinstance(value, dict) else None
        if isinstance(value, (int, float)):
            xs.append(record["epoch"])
            ys.append(float(value))
    return xs, ys


def _sub_keys(history: list[dict[str, Any]], key: str) -> list[str]:
    names: list[str] = []
    for record in history:
        for name in record.get(key) or {}:
            if name not in names:
                names.append(name)
    return names


def diagnostics_png(history: list[dict[str, Any]], path, *, title: str = "") -> Any:
    """Six panels from metrics.jsonl records: the loss terms, validation AUC and localisation, attention spread,
    dead ReLUs per layer, gradient norms per block (log10), and the schedule (lr, alpha, target share, clipping)."""
    from sranet.train.plots import line_panel, panels_png

    def lines(*pairs):
        return [(label, *_series(history, key)) for label, key in pairs]

    n_patches = next((r["attn_patches"] for r in history if r.get("attn_patches")), None)
    lr0 = next((r["lr"] for r in history if r.get("lr")), 1.0)
    # the rate the epoch's steps used on average (below the scheduled lr during warm-up), where recorded
    lr_used = [{"epoch": r["epoch"], "lr": r.get("lr_mean", r.get("lr"))} for r in history]
    effective = _series(history, "attn_effective_patches")
    panels = [
        line_panel(lines(("train l_c", "train_loss_classification"), ("train l_s", "train_loss_structure"),
                         ("train l_i", "train_loss_instance"),
                         ("val l_c", "val_loss_classification"), ("val l_s", "val_loss_structure")), "loss terms"),
        line_panel(lines(("val AUC", "val_auc"), ("val AUC w/o stage I", "val_auc_visible"),
                         ("top patch in lesion", "val_top_patch_hit_rate"),
                         ("zero-weight patch in lesion", "val_bottom_patch_hit_rate"),
                         ("chance", "val_lesion_chance_level"), ("lesion mass", "val_lesion_attention_mass")),
                   "validation", y_range=(0.0, 1.0)),
        line_panel([("eff. patches / N", effective[0], [v / (n_patches or 1) for v in effective[1]])]
                   + lines(("top share", "attn_top_share"), ("one-hot share", "attn_onehot_share"),
                           ("uniform share", "attn_uniform_share"), ("bone mass", "attn_target_mass")),
                   "attention on val (min-shift degenerate: one-hot / uniform)", y_range=(0.0, 1.0)),
        line_panel([(k, *_series(history, "dead_relu", k)) for k in _sub_keys(history, "dead_relu")],
                   "dead ReLU channels (share)", y_range=(0.0, 1.0)),
        line_panel([(k, *_series(history, "grad_norm", k)) for k in _sub_keys(history, "grad_norm")],
                   "gradient norm per block (log10)", log_y=True),
        line_panel([("lr / lr0", *(lambda s: (s[0], [v / lr0 for v in s[1]]))(_series(lr_used, "lr")))]
                   + lines(("alpha", "alpha"), ("targets = 1", "train_target_share"),
                           ("clipped steps", "grad_clipped_share")), "schedule", y_range=(0.0, 1.05)),
    ]
    return panels_png(panels, path, title=title)
