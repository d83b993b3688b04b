"""Shared pieces of the CLI: error handling and ``Annotated`` option aliases (each option's help written once)."""

from __future__ import annotations

import functools
import math
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from sranet.errors import SranetError

DEBUG_ENV = "SRANET_DEBUG"


def cli_errors(func):
    """Turn a SranetError into one ``Error: ...`` line on stderr and exit code 1 (traceback with SRANET_DEBUG=1).

    What the operating system refuses (OSError: a full disk, a read-only or unwritable path) and running out of
    memory get the same one line, naming the path where there is one: the library's own checks come first, this
    is the net under them.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except SranetError as exc:
            _fail(str(exc))
        except OSError as exc:
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            _fail(f"{where}{exc.strerror or type(exc).__name__} ({type(exc).__name__}).")
        except MemoryError:
            _fail("out of memory. Give --roi (only the femoral head's box is read) or fewer cases per --batch.")
        except KeyboardInterrupt:
            typer.echo("Interrupted.", err=True)
            raise typer.Exit(130) from None

    return wrapper


def _fail(message: str):
    if os.environ.get(DEBUG_ENV):
        raise  # the exception being handled, with its traceback
    text = " ".join(message.split())  # one line, whatever the message holds
    typer.echo(f"Error: {text}", err=True)
    typer.echo(f"(set {DEBUG_ENV}=1 for the traceback)", err=True)
    raise typer.Exit(1) from None


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
MaxVolumeOpt = Annotated[float | None, typer.Option("--max-volume-gib", help="Memory budget per case: the float32 "
                                                    "volume read (the ROI's box, or the whole series without --roi), "
                                                    "in GiB (default 4). A larger case is refused with its size.")]
TrustedKeyOpt = Annotated[list[Path] | None, typer.Option("--trusted-key", help="Ed25519 public key (PEM) whose "
                                                          "signature an artifact must carry (repeat for several); "
                                                          "unsigned or otherwise signed artifacts are refused.")]


def parse_spacing(text: str | None) -> tuple[float, float, float] | None:
    """``--spacing-mm`` 'sD,sH,sW' -> three positive floats (mm); None stays None."""
    from sranet.errors import InputError

    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(f"--spacing-mm {text!r} must be three positive numbers 'sD,sH,sW' (mm), e.g. 1.0,0.7,0.7.")
    return values  # type: ignore[return-value]


def check_output_folder(path: Path, option: str) -> None:
    """An output folder: it may not exist yet; when it does, a folder (InputError naming ``option``)."""
    from sranet.errors import InputError

    if path.exists() and not path.is_dir():
        raise InputError(f"{option} {path} is not a folder; it names the folder to write into.",
                         hint="Give a folder path (it is created if missing).")
