"""What one training run carries from epoch to epoch, and how it is opened and saved.

``check_splits`` checks a prepared cache against the run's settings; ``open_run`` seeds and builds the model,
optimizer, scheduler and data of a ``RunState``, restoring them from RUN/last.pt when resuming (settings that define
the optimisation, ``RESUME_FIXED``, may not change); ``write_epoch`` appends the epoch's record to RUN/metrics.jsonl
and writes RUN/best.pt (when the epoch is the best), RUN/last.pt and RUN/plots/diagnostics.png.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sranet.errors import TrainingError
from sranet.train.config import TrainConfig
from sranet.train.metrics import json_safe


def check_splits(index, cfg: TrainConfig) -> None:
    model_cfg = cfg.model_config
    if index.preprocess.output_size != model_cfg.input_size:
        raise TrainingError(
            f"cache volumes are {index.preprocess.output_size}^3 but model {cfg.model!r} takes {model_cfg.input_size}^3.",
            path=index.root,
            hint=f"Prepare the cache with output size {model_cfg.input_size} or pick the matching --model.",
        )
    if index.grid != model_cfg.grid:
        raise TrainingError(f"cache grid is {index.grid} but the model's is {model_cfg.grid}.", path=index.root)
    for split in ("train", "val"):
        if not index.split(split):
            raise TrainingError(f"the {split!r} split is empty.", path=index.root / "cases.csv",
                                hint="Give some cases split=train and some split=val in the manifest.")
    val_labels = {c.label for c in index.split("val")}
    if len(val_labels) < 2:
        raise TrainingError(
            f"the 'val' split has only label {val_labels.pop()}; AUC and the threshold need both classes.",
            path=index.root / "cases.csv", hint="Put positive and negative cases in split=val.")


# Settings that define the optimisation; resuming with other values would silently change the run, so it is refused.
RESUME_FIXED = ("model", "lr", "weight_decay", "lr_step_epochs", "lr_gamma", "batch_size", "alpha", "instance_weight",
                "min_bone_fraction", "augment", "augment_mode", "seed", "init", "attention_init_std", "warmup_epochs",
                "grad_clip", "sampler", "alpha_start", "alpha_ramp_epochs", "select")


# What a checkpoint that does not record one of these settings trained with, where that differs from today's default.
UNRECORDED = {"instance_weight": 0.0}


def _check_resume(stored: dict[str, Any], cfg: TrainConfig, path: Path) -> None:
    """Refuse a change of any RESUME_FIXED setting; a setting the checkpoint does not record ran at its default
    (or at its UNRECORDED value)."""
    from dataclasses import fields

    defaults = {f.name: f.default for f in fields(TrainConfig)} | UNRECORDED
    now, was_set = cfg.to_dict(), {k: stored.get(k, defaults[k]) for k in RESUME_FIXED}
    changed = [k for k in RESUME_FIXED if was_set[k] != now[k]]
    if changed:
        was = ", ".join(f"{k}={was_set[k]!r}" for k in changed)
        asked = ", ".join(f"{k}={now[k]!r}" for k in changed)
        raise TrainingError(
            f"was trained with {was}; cannot resume it with {asked}.", path=path,
            hint="Resume with the run's original settings (only --epochs, --device, --workers and --amp may change), "
                 "or start a new run in another --out folder.")


@dataclass
class RunState:
    """What one training run carries from step to step (built by ``open_run``)."""

    config: TrainConfig
    ctx: Any  # sranet.train.distributed.DistContext
    index: Any  # sranet.data.dataset.CacheIndex
    out_dir: Path
    model: Any  # SRANet, or DistributedDataParallel around it
    optimizer: Any
    scheduler: Any
    scaler: Any = None
    train_set: Any = None
    val_set: Any = None
    sampler: Any = None
    start_epoch: int = 0
    best: dict[str, Any] = field(
        default_factory=lambda: {"auc": -math.inf, "val_loss": math.inf, "epoch": -1, "threshold": 0.5})
    history: list[dict[str, Any]] = field(default_factory=list)
    gradients: Any = None  # sranet.train.diagnostics.GradientMonitor
    # (N,) bool lesion patches per val case with a CT-visible lesion (a lesion mask, ARCO stage not I), else None
    val_lesion_patches: list[np.ndarray | None] = field(default_factory=list)

    @property
    def raw_model(self):
        return getattr(self.model, "module", self.model)

    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out_dir / "best.pt"

    @property
    def metrics_path(self) -> Path:
        return self.out_dir / "metrics.jsonl"


def open_run(config: TrainConfig, index, ctx, out_dir: Path, resume: bool) -> RunState:
    """Seed; build the model, optimizer and scheduler; restore them from OUT/last.pt when resuming; build the data."""
    import torch
    from torch.utils.data import DistributedSampler, RandomSampler

    from sranet.data.augment import AugmentConfig
    from sranet.data.dataset import BalancedSampler, CachedDataset
    from sranet.model.sranet import SRANet, initialize
    from sranet.train.diagnostics import GradientMonitor
    from sranet.train.metrics import visible_lesion_patches

    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    model = initialize(SRANet(config.model_config), config.init, config.attention_init_std).to(ctx.device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step_epochs, gamma=config.lr_gamma)
    run = RunState(config, ctx, index, out_dir, model, optimizer, scheduler)
    if resume:
        _restore(run)
    elif ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        run.metrics_path.write_text("")
    if ctx.distributed:
        run.model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device] if ctx.device.type == "cuda" else None)
    augment_cfg = AugmentConfig(mode=config.augment_mode) if config.augment else None
    run.train_set = CachedDataset(index, "train", augment_cfg=augment_cfg,
                                  seed=config.seed, min_bone_fraction=config.min_bone_fraction)
    run.val_set = CachedDataset(index, "val", seed=config.seed, min_bone_fraction=config.min_bone_fraction)
    if config.sampler == "balanced":
        run.sampler = BalancedSampler([c.label for c in run.train_set.cases], config.seed, ctx.rank, ctx.world_size)
    elif ctx.distributed:
        run.sampler = DistributedSampler(run.train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                         seed=config.seed)
    else:
        run.sampler = RandomSampler(run.train_set, generator=torch.Generator())
    run.scaler = torch.amp.GradScaler("cuda", enabled=config.amp == "fp16" and ctx.device.type == "cuda")
    run.gradients = GradientMonitor(model, clip=config.grad_clip or None)
    if ctx.is_main:
        run.val_lesion_patches = visible_lesion_patches(run.val_set)
    return run


def _restore(run: RunState) -> None:
    """Load weights, optimizer, scheduler, RNG, epoch and best-so-far from OUT/last.pt; trim metrics.jsonl to match."""
    import torch

    from sranet.model.checkpoint import load_checkpoint

    ckpt = load_checkpoint(run.last_path)
    _check_resume(ckpt.train_config, run.config, run.last_path)
    run.model.load_state_dict(ckpt.model_state)
    if ckpt.optimizer_state is not None:
        run.optimizer.load_state_dict(ckpt.optimizer_state)
    if ckpt.scheduler_state is not None:
        run.scheduler.load_state_dict(ckpt.scheduler_state)
    if ckpt.rng_state is not None:
        torch.set_rng_state(ckpt.rng_state)
    run.start_epoch = ckpt.epoch
    run.best = {**run.best, **ckpt.best}
    if run.metrics_path.is_file():
        lines = run.metrics_path.read_text().splitlines()
        run.history = [h for h in (json.loads(line) for line in lines if line.strip()) if h["epoch"] <= run.start_epoch]
        if run.ctx.is_main:  # drop lines of an epoch that crashed before its checkpoint was written
            run.metrics_path.write_text("".join(json.dumps(h) + "\n" for h in run.history))


def write_epoch(run: RunState, epoch: int, record: dict[str, Any], validated: bool) -> None:
    """Append the record to metrics.jsonl; write best.pt when this epoch is the best, then last.pt."""
    from sranet.model import checkpoint

    run.history.append(record)
    safe = json_safe(record)
    with run.metrics_path.open("a") as f:
        f.write(json.dumps(safe) + "\n")
    common = {"model": run.raw_model, "preprocess_config": run.index.preprocess,
              "train_config": run.config.to_dict(), "optimizer": run.optimizer, "scheduler": run.scheduler,
              "best": run.best, "epoch": epoch + 1, "metrics": safe}
    threshold_now = record.get("val_threshold", run.best["threshold"])
    # best.pt first: last.pt marks the epoch as done, so a crash in between must redo the epoch on resume
    if validated and run.best["epoch"] == epoch + 1:
        checkpoint.save_checkpoint(run.best_path, threshold=run.best["threshold"], **common)
    checkpoint.save_checkpoint(run.last_path, threshold=threshold_now, **common)
    _write_plots(run)


def _write_plots(run: RunState) -> None:
    """RUN/plots/diagnostics.png from the history so far (rewritten every epoch, so a stopped run has it too)."""
    from sranet.train.diagnostics import diagnostics_png

    cfg = run.config
    title = (f"{cfg.model} seed {cfg.seed}: lr {cfg.lr:g}, batch {cfg.batch_size}, alpha {cfg.alpha:g}, "
             f"augment {cfg.augment}  ({run.out_dir.name})")
    diagnostics_png(run.history, run.out_dir / "plots" / "diagnostics.png", title=title)
