"""The training loop: ``train(config, cache_dir, out_dir) -> TrainResult``.

Per epoch: shuffle the train split (seeded), augment, forward, loss (``sranet.model.loss``), AdamW step; StepLR at
the end of the epoch; then validation on the val split: AUC, the decision threshold (Youden's J, see
``sranet.train.metrics.youden_threshold``) and the metrics at that threshold. Rank 0 appends one JSON line per
epoch to RUN/metrics.jsonl, writes RUN/last.pt every epoch and RUN/best.pt whenever the validation AUC improves
(ties: lower validation loss wins). ``resume=True`` continues from RUN/last.pt with its optimizer, scheduler, epoch
and RNG state; data order and augmentation are functions of (seed, epoch), so a resumed run sees the same data.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from sranet.errors import ConfigError, TrainingError
from sranet.train.config import TrainConfig
from sranet.train.metrics import json_safe, roc_auc, summarize, youden_threshold


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

    Batch 8, lr 1e-3 for 40 epochs then 1e-4, 50 epochs, no augmentation, the other settings TrainConfig's
    defaults. With PyTorch's default initialisation the classification loss can sit at ~0.69 for 10-30 epochs,
    depending on the seed (docs/training.md: why, and the options that remove the stall). The val/test AUC is
    capped below 1 because stage-I lesions are invisible on CT by design. The metrics of the committed demo run
    are in benchmarks/results/demo/.
    """
    return TrainConfig(model="small", epochs=50, lr=1e-3, lr_step_epochs=40, batch_size=8, alpha=0.9,
                       augment=False, seed=0)


def _check_splits(index, cfg: TrainConfig) -> None:
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
RESUME_FIXED = ("model", "lr", "weight_decay", "lr_step_epochs", "lr_gamma", "batch_size", "alpha",
                "min_bone_fraction", "augment", "augment_mode", "seed", "init", "warmup_epochs", "grad_clip", "sampler",
                "alpha_start", "alpha_ramp_epochs", "select")


def _check_resume(stored: dict[str, Any], cfg: TrainConfig, path: Path) -> None:
    now = cfg.to_dict()
    changed = [k for k in RESUME_FIXED if k in stored and stored[k] != now[k]]
    if changed:
        was = ", ".join(f"{k}={stored[k]!r}" for k in changed)
        asked = ", ".join(f"{k}={now[k]!r}" for k in changed)
        raise TrainingError(
            f"was trained with {was}; cannot resume it with {asked}.", path=path,
            hint="Resume with the run's original settings (only --epochs, --device, --workers and --amp may change), "
                 "or start a new run in another --out folder.")


def _autocast(cfg: TrainConfig, device):
    import contextlib

    import torch

    if cfg.amp == "off":
        return contextlib.nullcontext()
    if cfg.amp == "fp16" and device.type != "cuda":
        raise ConfigError("--amp fp16 needs a CUDA device; on CPU use --amp bf16 or --amp off.")
    dtype = torch.bfloat16 if cfg.amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


class SplitPrediction(NamedTuple):
    labels: np.ndarray  # (n,) int64 0/1
    probs: np.ndarray  # (n,) p(AVNFH present)
    attention: np.ndarray  # (n, N) weights a_n
    attention_logits: np.ndarray  # (n, N) raw scores q_n
    targets: np.ndarray  # (n, N) regulariser targets f_n
    loss: float  # alpha * l_c + (1 - alpha) * l_s, NaN without a TrainConfig
    loss_classification: float  # l_c
    loss_structure: float  # l_s


def predict_split(model, dataset, device, cfg: TrainConfig | None = None, batch_size: int = 4) -> SplitPrediction:
    """Run ``model`` over a dataset without augmentation; losses at ``cfg.alpha`` when a TrainConfig is given."""
    import torch
    from torch.utils.data import DataLoader

    from sranet.model.loss import sranet_loss

    model.eval()
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("labels", "probs", "attention", "logits", "targets")}
    losses = np.zeros(3)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    with torch.no_grad():
        for batch in loader:
            x = batch["volume"].to(device)
            with _autocast(cfg, device) if cfg else torch.autocast(device.type, enabled=False):
                out = model(x)
            if cfg is not None:
                loss = sranet_loss(out, batch["label"].to(device), batch["targets"].to(device), cfg.alpha)
                losses += np.array([float(loss.total), float(loss.classification), float(loss.structure)]) * len(x)
            parts["labels"].append(batch["label"].numpy())
            parts["probs"].append(torch.sigmoid(out.logit.float()).cpu().numpy())
            parts["attention"].append(out.attention.float().cpu().numpy())
            parts["logits"].append(out.attention_logits.float().cpu().numpy())
            parts["targets"].append(batch["targets"].numpy())
    joined = {k: np.concatenate(v) for k, v in parts.items()}
    mean_losses = losses / len(dataset) if cfg is not None else np.full(3, math.nan)
    return SplitPrediction(joined["labels"].astype(np.int64), joined["probs"], joined["attention"], joined["logits"],
                           joined["targets"], *(float(v) for v in mean_losses))


def _progress(iterable, enabled: bool, **kwargs):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, leave=False, dynamic_ncols=True, **kwargs)


@dataclass
class _Run:
    """What one training run carries from step to step (built by ``_open_run``)."""

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
    start_time: float = 0.0
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
    _check_splits(index, config)
    ctx = dist.setup(config.device)
    try:
        run = _open_run(config, index, ctx, Path(out_dir), resume, start_time)
        for epoch in range(run.start_epoch, config.epochs):
            record = _train_epoch(run, epoch, progress and ctx.is_main)
            if ctx.is_main:
                validated = (epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs
                if validated:
                    _validate(run, epoch, record)
                record["seconds"] = round(time.perf_counter() - start_time, 2)
                _write_epoch(run, epoch, record, validated)
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


def _open_run(config: TrainConfig, index, ctx, out_dir: Path, resume: bool, start_time: float) -> _Run:
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
    model = initialize(SRANet(config.model_config), config.init).to(ctx.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step_epochs, gamma=config.lr_gamma)
    run = _Run(config, ctx, index, out_dir, model, optimizer, scheduler, start_time=start_time)
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


def _restore(run: _Run) -> None:
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


def _epoch_loader(run: _Run, epoch: int):
    """The training DataLoader of ``epoch``: order and augmentation are functions of (seed, epoch)."""
    from torch.utils.data import DataLoader

    run.train_set.set_epoch(epoch)
    if hasattr(run.sampler, "set_epoch"):
        run.sampler.set_epoch(epoch)
    else:
        run.sampler.generator.manual_seed(run.config.seed * 100_003 + epoch)
    return DataLoader(run.train_set, batch_size=run.config.batch_size, sampler=run.sampler,
                      num_workers=run.config.workers, drop_last=False, pin_memory=run.ctx.device.type == "cuda")


def _train_epoch(run: _Run, epoch: int, bar: bool) -> dict[str, Any]:
    """One pass over the training split; returns the epoch's record so far: lr, alpha, mean losses, volumes seen,
    the share of regulariser targets that are 1, gradient norms per block and the epoch's training time."""
    import torch

    from sranet.train import distributed as dist

    config, ctx = run.config, run.ctx
    t0 = time.perf_counter()
    run.model.train()
    run.gradients.reset()
    sums = torch.zeros(5, dtype=torch.float64)  # total, l_c, l_s, volumes, targets that are 1
    n_targets = 0
    lr, alpha = run.optimizer.param_groups[0]["lr"], config.alpha_at(epoch)
    loader = _epoch_loader(run, epoch)
    warmup_steps = config.warmup_epochs * len(loader)
    for step, batch in enumerate(_progress(loader, bar, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch")):
        warm = min(1.0, (epoch * len(loader) + step + 1) / warmup_steps) if warmup_steps else 1.0
        loss, n = _train_step(run, batch, epoch, lr, alpha, warm)
        sums += torch.tensor([float(loss.total.detach()) * n, float(loss.classification.detach()) * n,
                              float(loss.structure.detach()) * n, n, float(batch["targets"].sum())], dtype=torch.float64)
        n_targets += batch["targets"].numel()
    run.scheduler.step()
    count = int(sums[3])
    train_loss, train_volumes = dist.mean_across(float(sums[0]) / max(count, 1), count, ctx)
    train_l_c, _ = dist.mean_across(float(sums[1]) / max(count, 1), count, ctx)
    train_l_s, _ = dist.mean_across(float(sums[2]) / max(count, 1), count, ctx)
    target_share, _ = dist.mean_across(float(sums[4]) / max(n_targets, 1), n_targets, ctx)
    return {"epoch": epoch + 1, "lr": lr, "alpha": alpha, "train_loss": train_loss,
            "train_loss_classification": train_l_c, "train_loss_structure": train_l_s, "train_volumes": train_volumes,
            "world_size": ctx.world_size, "train_target_share": target_share, **run.gradients.result(),
            "train_seconds": round(time.perf_counter() - t0, 3)}


def _train_step(run: _Run, batch: dict[str, Any], epoch: int, lr: float, alpha: float, warm: float = 1.0):
    """Forward, loss at ``alpha``, a finite-loss check on every rank, backward, gradient norms (and clipping),
    optimizer step at ``warm`` times the scheduler's lr. Returns (LossParts, batch size)."""
    import torch

    from sranet.model.loss import sranet_loss

    config, ctx = run.config, run.ctx
    x = batch["volume"].to(ctx.device, non_blocking=True)
    with _autocast(config, ctx.device):
        out = run.model(x)
    loss = sranet_loss(out, batch["label"].to(ctx.device), batch["targets"].to(ctx.device), alpha)
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


def _validate(run: _Run, epoch: int, record: dict[str, Any]) -> None:
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
    record.update({"val_loss": pred.loss, "val_loss_classification": pred.loss_classification,
                   "val_loss_structure": pred.loss_structure, **{f"val_{k}": v for k, v in val.items()},
                   "val_top_patch_hit_rate": loc["top_patch_hit_rate"],
                   "val_lesion_attention_mass": loc["lesion_attention_mass"],
                   "val_lesion_chance_level": loc["chance_level"], "val_lesion_cases": loc["n_cases"],
                   "val_auc_visible": _auc_visible(pred.labels, pred.probs, run.val_set.cases),
                   "attn_patches": int(pred.attention.shape[1]),
                   **attention_stats(pred.attention, pred.attention_logits, pred.targets),
                   "dead_relu": dead, "zero_activation": zero, "val_seconds": round(time.perf_counter() - t0, 3)})
    auc = roc_auc(pred.labels, pred.probs)
    best = run.best
    if config.select == "val_loss":
        improved = pred.loss_classification < best.get("val_loss_classification", math.inf)
    else:
        improved = auc > best["auc"] or (auc == best["auc"] and pred.loss < best["val_loss"])
    if improved:
        run.best = {"auc": auc, "val_loss": pred.loss, "val_loss_classification": pred.loss_classification,
                    "epoch": epoch + 1, "threshold": threshold}


def _auc_visible(labels: np.ndarray, probs: np.ndarray, cases) -> float | None:
    """AUC of the negatives against the positives whose ARCO stage is known and not I (stage I is invisible on CT
    by definition, so it caps the AUC below 1). None when a positive has no stage."""
    stages = [c.stage for c in cases]
    if any(s is None for s, y in zip(stages, labels, strict=True) if y == 1):
        return None
    keep = np.array([y == 0 or s != 1 for s, y in zip(stages, labels, strict=True)])
    return roc_auc(labels[keep], probs[keep])


def _write_epoch(run: _Run, epoch: int, record: dict[str, Any], validated: bool) -> None:
    """Append the record to metrics.jsonl; write best.pt when this epoch is the best, then last.pt."""
    from sranet.model import checkpoint

    run.history.append(record)
    with run.metrics_path.open("a") as f:
        f.write(json.dumps(json_safe(record)) + "\n")
    common = {"model": run.raw_model, "preprocess_config": run.index.preprocess,
              "train_config": run.config.to_dict(), "optimizer": run.optimizer, "scheduler": run.scheduler,
              "best": run.best, "epoch": epoch + 1, "metrics": json_safe(record)}
    threshold_now = record.get("val_threshold", run.best["threshold"])
    # best.pt first: last.pt marks the epoch as done, so a crash in between must redo the epoch on resume
    if validated and run.best["epoch"] == epoch + 1:
        checkpoint.save_checkpoint(run.best_path, threshold=run.best["threshold"], **common)
    checkpoint.save_checkpoint(run.last_path, threshold=threshold_now, **common)
    _write_plots(run)


def _write_plots(run: _Run) -> None:
    """RUN/plots/diagnostics.png from the history so far (rewritten every epoch, so a stopped run has it too)."""
    from sranet.train.diagnostics import diagnostics_png

    cfg = run.config
    title = (f"{cfg.model} seed {cfg.seed}: lr {cfg.lr:g}, batch {cfg.batch_size}, alpha {cfg.alpha:g}, "
             f"augment {cfg.augment}  ({run.out_dir.name})")
    diagnostics_png(run.history, run.out_dir / "plots" / "diagnostics.png", title=title)


def _epoch_line(record: dict[str, Any], epochs: int) -> str:
    text = (f"epoch {record['epoch']}/{epochs}  lr {record['lr']:.2g}  train_loss {record['train_loss']:.4f}"
            f" (l_c {record['train_loss_classification']:.4f}, l_s {record['train_loss_structure']:.4f})")
    if "val_auc" in record:
        text += (f"  val_loss {record['val_loss']:.4f}  val_auc {record['val_auc']:.3f}"
                 f"  sens {record['val_sensitivity']:.2f}  spec {record['val_specificity']:.2f}")
    return text + f"  ({record['seconds']:.0f} s)"
