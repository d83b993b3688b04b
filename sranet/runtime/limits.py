"""Bounds on the work one call may ask for: memory per case, CPU threads, cases per batch, ROI values.

Each bound is a documented default; crossing it is a clear error that gives the number, never a swap storm, a hang or
a crash. Torch-free.

- Memory per case: ``DEFAULT_MAX_VOLUME_GIB`` (4 GiB) of float32 HU, the array ``load_volume`` returns: the whole
  series without a ROI, only the ROI's box with one (a femoral-head box of 64 slices x 140 x 140 voxels is 5 MiB; a
  512 x 512 x 4000-slice series is 4 GiB). It is checked from the header (array shape, slice count) before any
  pixel is read. Peak memory while reading is about twice the budget (a decoded slice or the on-disk integers are
  converted as they arrive); preprocessing adds little. ``load_volume(max_gib=...)``, CLI ``--max-volume-gib``.
- CPU threads: at most ``THREADS_PER_CPU`` (4) per CPU the machine reports (``os.cpu_count()``); more threads only
  wait for the same cores. It bounds ``threads`` of every backend and ``--workers`` of ``sranet prepare``.
- Cases per backend call: at most ``MAX_BATCH`` (256); each holds an (S, S, S) float32 input until its batch runs
  (8 MiB at S = 128).
- Inputs read ahead by batch prediction (``--prefetch``): at most ``MAX_PREFETCH`` (8); each holds its volume (a
  whole study: all of it) until its hips are inferred.
- ROI values: at most ``ROI_LIMIT`` (1e5) in magnitude, voxels or millimetres (100 m); larger is not a box on a CT.
"""

from __future__ import annotations

import math
import os

from sranet.errors import InputError, VolumeTooLargeError

DEFAULT_MAX_VOLUME_GIB = 4.0
THREADS_PER_CPU = 4
MAX_BATCH = 256
MAX_PREFETCH = 8
ROI_LIMIT = 1e5
GIB = 1 << 30


def max_threads() -> int:
    """The most CPU threads (or worker processes) sranet accepts on this machine: THREADS_PER_CPU per CPU."""
    return THREADS_PER_CPU * (os.cpu_count() or 1)


def check_threads(value, what: str = "threads", hint: str = "Pass --threads N with N >= 1, or leave it out.") -> None:
    """``value`` is None or a positive integer up to ``max_threads()``; else InputError naming ``what``."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{what}={value!r} must be a positive integer.", hint=hint)
    if value > max_threads():
        raise InputError(f"{what}={value} is more than {THREADS_PER_CPU} per CPU on this machine "
                         f"({os.cpu_count() or 1} CPUs, so at most {max_threads()}); more only wait for the same cores.",
                         hint=f"Use at most {max_threads()} (the number of CPUs is usually best).")


def check_batch(value) -> int:
    """Cases per backend call: a positive integer up to MAX_BATCH."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"batch={value!r} must be a positive integer.")
    if value > MAX_BATCH:
        raise InputError(f"batch={value} is more than {MAX_BATCH} cases per backend call; every case of a batch holds "
                         "its preprocessed input in memory until the batch runs.", hint=f"Use --batch {MAX_BATCH} or less.")
    return value


def check_prefetch(value) -> int:
    """Inputs read ahead: an integer from 0 (none) to MAX_PREFETCH."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PREFETCH:
        raise InputError(f"prefetch={value!r} must be an integer from 0 to {MAX_PREFETCH}; each input read ahead holds "
                         "its volume in memory until its hips are inferred.",
                         hint=f"Use --prefetch 0 (none) to {MAX_PREFETCH}.")
    return value


def volume_budget_gib(max_gib: float | None) -> float:
    """``max_gib`` checked (a positive, finite number of GiB), or DEFAULT_MAX_VOLUME_GIB for None."""
    if max_gib is None:
        return DEFAULT_MAX_VOLUME_GIB
    if isinstance(max_gib, bool) or not isinstance(max_gib, (int, float)) or not (math.isfinite(max_gib) and max_gib > 0):
        raise InputError(f"max_gib={max_gib!r} must be a positive number of GiB (--max-volume-gib), e.g. "
                         f"{DEFAULT_MAX_VOLUME_GIB:g}.")
    return float(max_gib)


def check_volume_bytes(shape: tuple[int, ...], max_gib: float | None, *, path=None, what: str = "the volume",
                       extra_bytes: int = 0) -> None:
    """Refuse (VolumeTooLargeError, with both numbers) when ``shape`` as float32, plus ``extra_bytes`` held at the
    same time, is more than the budget ``max_gib`` (None: DEFAULT_MAX_VOLUME_GIB)."""
    budget = volume_budget_gib(max_gib)
    need = 4 * math.prod(int(n) for n in shape) + int(extra_bytes)
    if need > budget * GIB:
        raise VolumeTooLargeError(
            f"{what} is {'x'.join(str(int(n)) for n in shape)} voxels, {need / GIB:.2f} GiB as float32 HU, over this "
            f"case's memory budget of {budget:g} GiB.", path=path,
            hint="Give --roi (only the box around the femoral head is read), or raise the budget with "
                 "--max-volume-gib (load_volume(max_gib=...)) where the machine has the memory.")


__all__ = ["DEFAULT_MAX_VOLUME_GIB", "MAX_BATCH", "ROI_LIMIT", "THREADS_PER_CPU", "check_batch", "check_threads",
           "check_volume_bytes", "max_threads", "volume_budget_gib"]
