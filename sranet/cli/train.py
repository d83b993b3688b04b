"""``sranet train``: train SRANet on a prepared cache (multi-GPU: ``torchrun --nproc_per_node N -m sranet.cli.main train``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sranet.cli._common import CacheDirOpt, DeviceOpt, OutDirOpt, SeedOpt, cli_errors, progress_enabled


@cli_errors
def train(
    cache: CacheDirOpt,
    out: OutDirOpt,
    model: Annotated[str, typer.Option("--model", help="Model preset: paper (128^3), small (64^3) or tiny (48^3).")] = "paper",
    epochs: Annotated[int, typer.Option("--epochs", help="Total epochs (a resumed run continues up to this many).")] = 200,
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate; divided by 10 every --lr-step epochs.")] = 1e-4,
    lr_step: Annotated[int, typer.Option("--lr-step", help="StepLR period in epochs.")] = 50,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Volumes per step (per process under torchrun).")] = 2,
    alpha: Annotated[float, typer.Option("--alpha", help="loss = alpha * classification + (1 - alpha) * structure regulariser.")] = 0.9,
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help="Random crop-zoom and axis flips on training volumes.")] = True,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/last.pt (weights, optimizer, scheduler, epoch, RNG).")] = False,
    device: DeviceOpt = "cpu",
    seed: SeedOpt = 0,
    workers: Annotated[int, typer.Option("--workers", help="DataLoader worker processes (0 = main process).")] = 0,
    amp: Annotated[str, typer.Option("--amp", help="Mixed precision: off, bf16 or fp16 (fp16 needs CUDA).")] = "off",
    channels_last: Annotated[bool, typer.Option("--channels-last/--no-channels-last", help="Train in the channels-last-3d memory layout (faster convolutions on CPU and GPU; same network and checkpoint).")] = False,
    init: Annotated[str | None, typer.Option("--init", help="Weight initialisation: kaiming or torch (PyTorch's default). Default: TrainConfig's (docs/training.md).")] = None,
    warmup: Annotated[int | None, typer.Option("--warmup-epochs", help="Linear lr warm-up over this many epochs (0: off). Default: TrainConfig's (docs/training.md).")] = None,
    grad_clip: Annotated[float | None, typer.Option("--grad-clip", help="Clip the gradient norm per step to this (0: off). Default: TrainConfig's (docs/training.md).")] = None,
    sampler: Annotated[str | None, typer.Option("--sampler", help="random, or balanced (as many positives as negatives per batch). Default: TrainConfig's (docs/training.md).")] = None,
    select: Annotated[str | None, typer.Option("--select", help="best.pt is the epoch with the highest val_auc, val_auc_visible (without ARCO stage I positives) or the lowest val_loss (classification). Default: TrainConfig's (docs/training.md).")] = None,
    instance_weight: Annotated[float | None, typer.Option("--instance-weight", help="Weight beta of the instance term (the top patch's own logit must give the label; training only, same network; 0: off). Default: TrainConfig's (docs/training.md).")] = None,
    augment_mode: Annotated[str | None, typer.Option("--augment-mode", help="head_crop_zoom (keeps the femoral head), crop_zoom, affine or none (flips only). Default: TrainConfig's (docs/training.md).")] = None,
) -> None:
    """Train SRANet; writes OUT/best.pt (the best validated epoch, by --select), OUT/last.pt, OUT/metrics.jsonl (one
    line per epoch, with diagnostics) and OUT/plots/diagnostics.png. The options are described in docs/training.md."""
    from sranet.train.config import TrainConfig
    from sranet.train.loop import train as run_training

    recipe = {"init": init, "warmup_epochs": warmup, "grad_clip": grad_clip, "sampler": sampler,
              "augment_mode": augment_mode, "select": select, "instance_weight": instance_weight}
    config = TrainConfig(model=model, epochs=epochs, lr=lr, lr_step_epochs=lr_step, batch_size=batch_size,
                         alpha=alpha, augment=augment, seed=seed, workers=workers, device=device, amp=amp,
                         channels_last=channels_last,
                         **{k: v for k, v in recipe.items() if v is not None})
    if resume and not (Path(out) / "last.pt").is_file():
        from sranet.errors import InputError

        raise InputError(f"--resume needs {Path(out) / 'last.pt'}, which does not exist.",
                         hint="Drop --resume to start a new run, or point --out at an earlier run.")
    result = run_training(config, cache, out, resume=resume, progress=progress_enabled(), log=typer.echo)
    if result.rank != 0:
        return
    typer.echo(f"best epoch {result.best_epoch}: val AUC {result.best_val_auc:.3f}, threshold {result.threshold:.3f}; "
               f"wrote {result.best_path} and {result.last_path} ({result.seconds:.0f} s)")
