"""The training loop: ``train(config, cache_dir, out_dir) -> TrainResult``.

Per epoch: shuffle the train split (seeded), augment, forward, loss (``sranet.model.loss``), AdamW step; StepLR at
the end of the epoch; then validation on the val split: AUC, the decision threshold (Youden's J, see
``sranet.train.metrics.youden_threshold``) and the metrics at that threshold. Rank 0 appends one JSON line per
epoch to RUN/metrics.jsonl, writes RUN/last.pt every epoch and RUN/best.pt whenever the validated epoch is the best by
``TrainConfig.select`` (highest AUC, ties to the lower loss; or lowest classification loss). ``resume=True`` continues from RUN/last.pt with its optimizer, scheduler, epoch
and RNG state; data order and augmentation are functions of (seed, epoch), so a resumed run sees the same data.
The run's state, its opening, resuming and saving live in ``sranet.train.run_state``; the scoring of a split in
``sranet.train.predict``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sranet.errors import TrainingError
from sranet.train.config import TrainConfig
from sranet.train.metrics import auc_visible, roc_auc, summarize, youden_threshold
from sranet.train.predict import as_input, autocast, predict_split
from sranet.train.run_state import RunState, check_splits, open_run, write_epoch


@dataclass
class TrainResult:
    out_dir: Path
    best_path: Path
    last_path: Path
    best_epoch: int
    best_val_auc: float
    threshold: float
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    rank: int = 0  # under torchrun only rank 0 validates; other ranks return best_epoch -1


def demo_train_config() -> TrainConfig:
    """Settings of the README demo: the "small" model (64^3) on the synthetic phantoms, a few minutes on 2 CPU cores.

    Batch 8, lr 1e-3 for 40 epochs then 1e-4, 50 epochs, no augmentation, the other settings TrainConfig's defaults,
    among them the instance term (docs/training.md: the sweep, and why training stalls or classifies without
    localising). The val/test AUC is capped below 1 because stage-I lesions are invisible on CT by design. The
    metrics of the committed demo run are in benchmarks/results/demo/.
    """
    return TrainConfig(model="small", epochs=50, lr=1e-3, lr_step_epochs=40, batch_size=8, alpha=0.9,
                       augment=False, seed=0)


def _progress(iterable, enabled: bool, **kwargs):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, leave=False, dynamic_ncols=True, **kwargs)


def train(config: TrainConfig, cache_dir: str | Path, out_dir: str | Path, *, resume: bool = False,
          progress: bool = False, log=None, on_epoch=None) -> TrainResult:
    """Train SRANet on a prepared cache; write RUN/best.pt, RUN/last.pt and RUN/metrics.jsonl under ``out_dir``.

    config     TrainConfig (model preset, epochs, lr, ...).
    cache_dir  folder written by ``sranet prepare``.
    out_dir    run folder; created if missing. With resume=True it must hold last.pt.
    progress   show tqdm bars (the CLI passes True on a terminal).
    log        callable taking one line of text per epoch (None: silent).
    on_epoch   callable(record, model) after each epoch's checkpoints, on rank 0 (e.g. a benchmark's extra
               evaluation); the model is in eval mode and must be left unchanged.
    """
    from sranet.data.dataset import read_cache
    from sranet.train import distributed as dist

    start_time = time.perf_counter()
    index = read_cache(cache_dir)
    check_splits(index, config)
    ctx = dist.setup(config.device)
    try:
        run = open_run(config, index, ctx, Path(out_dir), resume)
        for epoch in range(run.start_epoch, config.epochs):
            record = _train_epoch(run, epoch, progress and ctx.is_main)
            if ctx.is_main:
                validated = (epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs
                if validated:
                    _validate(run, epoch, record)
                record["seconds"] = round(time.perf_counter() - start_time, 2)
                write_epoch(run, epoch, record, validated)
                if log is not None:
                    log(_epoch_line(record, config.epochs))
                if on_epoch is not None:
                    run.raw_model.eval()
                    on_epoch(record, run.raw_model)
            dist.barrier(ctx)
    finally:
        dist.cleanup(ctx)
    if not run.best_path.is_file() and ctx.is_main:
        raise TrainingError("no epoch was run, so there is no best.pt.", path=run.out_dir,
                            hint=f"The run already has {run.start_epoch} epochs; raise --epochs to continue it.")
    best = run.best
    return TrainResult(run.out_dir, run.best_path, run.last_path, int(best["epoch"]), float(best["auc"]),
                       float(best["threshold"]), run.history, time.perf_counter() - start_time, ctx.rank)


def _epoch_loader(run: RunState, epoch: int):
    """The training DataLoader of ``epoch``: order and augmentation are functions of (seed, epoch)."""
    from torch.utils.data import DataLoader

    run.train_set.set_epoch(epoch)
    if hasattr(run.sampler, "set_epoch"):
        run.sampler.set_epoch(epoch)
    else:
        run.sampler.generator.manual_seed(run.config.seed * 100_003 + epoch)
    return DataLoader(run.train_set, batch_size=run.config.batch_size, sampler=run.sampler,
                      num_workers=run.config.workers, drop_last=False, pin_memory=run.ctx.device.type == "cuda")


def _train_epoch(run: RunState, epoch: int, bar: bool) -> dict[str, Any]:
    """One pass over the training split; returns the epoch's record so far: lr, alpha, mean losses, volumes seen,
    the share of regulariser targets that are 1, gradient norms per block and the epoch's training time."""
    import torch

    from sranet.train import distributed as dist

    config, ctx = run.config, run.ctx
    t0 = time.perf_counter()
    run.model.train()
    run.gradients.reset()
    sums = torch.zeros(6, dtype=torch.float64)  # total, l_c, l_s, volumes, targets that are 1, l_i
    n_targets = 0
    lr, alpha = run.optimizer.param_groups[0]["lr"], config.alpha_at(epoch)
    loader = _epoch_loader(run, epoch)
    warmup_steps = config.warmup_epochs * len(loader)
    warm_sum = 0.0
    for step, batch in enumerate(_progress(loader, bar, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch")):
        warm = min(1.0, (epoch * len(loader) + step + 1) / warmup_steps) if warmup_steps else 1.0
        warm_sum += warm
        loss, n = _train_step(run, batch, epoch, lr, alpha, warm)
        sums += torch.tensor([float(loss.total.detach()) * n, float(loss.classification.detach()) * n,
                              float(loss.structure.detach()) * n, n, float(batch["targets"].sum()),
                              0.0 if loss.instance is None else float(loss.instance.detach()) * n], dtype=torch.float64)
        n_targets += batch["targets"].numel()
    run.scheduler.step()
    count = int(sums[3])
    train_loss, train_volumes = dist.mean_across(float(sums[0]) / max(count, 1), count, ctx)
    train_l_c, _ = dist.mean_across(float(sums[1]) / max(count, 1), count, ctx)
    train_l_s, _ = dist.mean_across(float(sums[2]) / max(count, 1), count, ctx)
    target_share, _ = dist.mean_across(float(sums[4]) / max(n_targets, 1), n_targets, ctx)
    instance = {}
    if config.instance_weight > 0:
        instance["train_loss_instance"] = dist.mean_across(float(sums[5]) / max(count, 1), count, ctx)[0]
    # lr is the scheduled rate; lr_mean is what the epoch's steps used on average (below lr during warm-up)
    return {"epoch": epoch + 1, "lr": lr, "lr_mean": lr * warm_sum / max(len(loader), 1), "alpha": alpha,
            "train_loss": train_loss,
            "train_loss_classification": train_l_c, "train_loss_structure": train_l_s, **instance,
            "train_volumes": train_volumes,
            "world_size": ctx.world_size, "train_target_share": target_share, **run.gradients.result(),
            "train_seconds": round(time.perf_counter() - t0, 3)}


def _train_step(run: RunState, batch: dict[str, Any], epoch: int, lr: float, alpha: float, warm: float = 1.0):
    """Forward, loss at ``alpha``, a finite-loss check on every rank, backward, gradient norms (and clipping),
    optimizer step at ``warm`` times the scheduler's lr. Returns (LossParts, batch size)."""
    import torch

    from sranet.model.loss import sranet_loss

    config, ctx = run.config, run.ctx
    x = as_input(batch["volume"].to(ctx.device, non_blocking=True), config)
    with autocast(config, ctx.device):
        out = run.model(x)
    loss = sranet_loss(out, batch["label"].to(ctx.device), batch["targets"].to(ctx.device), alpha,
                       config.instance_weight)
    finite = torch.isfinite(loss.total.detach()).float()
    if ctx.distributed:
        torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
    if finite.item() < 1:
        raise TrainingError(
            f"loss became non-finite at epoch {epoch + 1} (lr {lr:g}, amp {config.amp}).",
            hint="Lower --lr, turn --amp off, or check the cache for NaN volumes.")
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss.total).backward()
    run.scaler.unscale_(run.optimizer)
    run.gradients.step()
    groups = run.optimizer.param_groups
    scheduled = [g["lr"] for g in groups]
    for g in groups:  # the warm-up scales this step only; StepLR keeps stepping from the scheduled lr
        g["lr"] *= warm
    run.scaler.step(run.optimizer)
    run.scaler.update()
    for g, value in zip(groups, scheduled, strict=True):
        g["lr"] = value
    return loss, len(x)


def _validate(run: RunState, epoch: int, record: dict[str, Any]) -> None:
    """Score the val split (rank 0): loss terms, AUC, Youden threshold and the metrics at it, attention and ReLU
    diagnostics, localisation on visible lesions; update the best epoch."""
    from sranet.train.diagnostics import ReLUMonitor, attention_stats
    from sranet.train.metrics import localisation_from_patches

    config = run.config
    t0 = time.perf_counter()
    with ReLUMonitor(run.raw_model) as relu:
        pred = predict_split(run.raw_model, run.val_set, run.ctx.device, config, config.batch_size)
    threshold = youden_threshold(pred.labels, pred.probs)
    val = summarize(pred.labels, pred.probs, threshold)
    loc = localisation_from_patches(pred.attention, run.val_lesion_patches, pred.labels)
    dead, zero = relu.result()
    visible = auc_visible(pred.labels, pred.probs, [c.stage for c in run.val_set.cases])
    record.update({"val_loss": pred.loss, "val_loss_classification": pred.loss_classification,
                   "val_loss_structure": pred.loss_structure, **{f"val_{k}": v for k, v in val.items()},
                   "val_top_patch_hit_rate": loc["top_patch_hit_rate"],
                   "val_bottom_patch_hit_rate": loc["bottom_patch_hit_rate"],
                   "val_lesion_attention_mass": loc["lesion_attention_mass"],
                   "val_lesion_chance_level": loc["chance_level"], "val_lesion_cases": loc["n_cases"],
                   "val_auc_visible": visible,
                   "attn_patches": int(pred.attention.shape[1]),
                   **attention_stats(pred.attention, pred.attention_logits, pred.targets),
                   "dead_relu": dead, "zero_activation": zero, "val_seconds": round(time.perf_counter() - t0, 3)})
    auc = roc_auc(pred.labels, pred.probs)
    now = {"auc": auc, "auc_visible": auc if visible is None else visible, "val_loss": pred.loss,
           "val_loss_classification": pred.loss_classification, "epoch": epoch + 1, "threshold": threshold}
    if _better(now, run.best, config.select):
        run.best = now


def _better(now: dict[str, Any], best: dict[str, Any], select: str) -> bool:
    """Whether the validated epoch ``now`` beats ``best`` under the ``select`` rule (TrainConfig.select)."""
    if select == "val_loss":
        return now["val_loss_classification"] < best.get("val_loss_classification", math.inf)
    key = ("auc_visible", "auc") if select == "val_auc_visible" else ("auc",)
    ours, theirs = tuple(now[k] for k in key), tuple(best.get(k, best["auc"]) for k in key)
    return ours > theirs or (ours == theirs and now["val_loss"] < best["val_loss"])


def _epoch_line(record: dict[str, Any], epochs: int) -> str:
    text = (f"epoch {record['epoch']}/{epochs}  lr {record['lr']:.2g}  train_loss {record['train_loss']:.4f}"
            f" (l_c {record['train_loss_classification']:.4f}, l_s {record['train_loss_structure']:.4f}")
    if "train_loss_instance" in record:
        text += f", l_i {record['train_loss_instance']:.4f}"
    text += ")"
    if "val_auc" in record:
        text += (f"  val_loss {record['val_loss']:.4f}  val_auc {record['val_auc']:.3f}"
                 f"  sens {record['val_sensitivity']:.2f}  spec {record['val_specificity']:.2f}")
    return text + f"  ({record['seconds']:.0f} s)"
