"""Shared pieces of the CLI: error handling and ``Annotated`` option aliases (each option's help written once)."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from sranet.errors import SranetError

DEBUG_ENV = "SRANET_DEBUG"


def cli_errors(func):
    """Turn a SranetError into one ``Error: ...`` line on stderr and exit code 1 (traceback with SRANET_DEBUG=1)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except SranetError as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            typer.echo(f"Error: {exc}", err=True)
            typer.echo(f"(set {DEBUG_ENV}=1 for the traceback)", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("Interrupted.", err=True)
            raise typer.Exit(130) from None

    return wrapper


def progress_enabled() -> bool:
    """Progress bars on a terminal, quiet otherwise (CI logs, pipes)."""
    return sys.stderr.isatty() and not os.environ.get("CI")


# -- option aliases ---------------------------------------------------------------------------------------------------
ManifestOpt = Annotated[Path, typer.Option("--manifest", "-m", help="Manifest CSV (case_id, path, label or stage, split, roi).")]
CacheDirOpt = Annotated[Path, typer.Option("--cache", help="Folder of preprocessed volumes written by `sranet prepare`.")]
OutDirOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (data order, augmentation, initialisation).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when available).")]
BackendDeviceOpt = Annotated[str, typer.Option("--device", help="Where artifacts run: 'cpu' or 'cuda:N' (GPU N). A "
                                               "TensorRT plan needs cuda:N.")]
ProviderOpt = Annotated[str | None, typer.Option("--provider", help=".onnx on --device cuda:N: ONNX Runtime's "
                                                 "'tensorrt' or 'cuda' execution provider (default: TensorRT where "
                                                 "installed, else CUDA).")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads for inference (default: the "
                                                "library's own choice).")]
SpacingOpt = Annotated[str | None, typer.Option("--spacing-mm", help="Voxel spacing 'sD,sH,sW' in mm for .npy inputs "
                                                "without a JSON sidecar, e.g. 1.0,0.7,0.7.")]


def parse_spacing(text: str | None) -> tuple[float, float, float] | None:
    """``--spacing-mm`` 'sD,sH,sW' -> three positive floats (mm); None stays None."""
    from sranet.errors import InputError

    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(v > 0 for v in values):
        raise InputError(f"--spacing-mm {text!r} must be three positive numbers 'sD,sH,sW' (mm), e.g. 1.0,0.7,0.7.")
    return values  # type: ignore[return-value]
