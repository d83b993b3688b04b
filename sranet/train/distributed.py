"""Multi-process training with ``torchrun`` and DistributedDataParallel.

    torchrun --nproc_per_node 2 -m sranet.cli.main train --cache CACHE --out RUN ...

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; ``setup`` reads them. The backend is NCCL
on CUDA and gloo on CPU (tested with two CPU processes). Each process trains on its shard of the training split
(DistributedSampler), so the effective batch is batch_size * world_size; validation, metrics and checkpoints are
done by rank 0 alone, and the other ranks wait at a barrier.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from sranet.errors import InputError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'cpu', 'cuda', 'cuda:N' or 'auto' -> torch.device. Refuses CUDA when none is available (never falls back)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {name!r} was asked for but this PyTorch sees no CUDA device.",
                             hint="Use --device cpu (or auto), or install a CUDA build of PyTorch.")
        return torch.device(f"cuda:{local_rank}" if name == "cuda" else name)
    raise InputError(f"--device {name!r} is not one of 'cpu', 'cuda', 'cuda:N', 'auto'.")


def setup(device_name: str) -> DistContext:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); otherwise a single-process context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world_size > 1 and device_name.startswith("cuda:"):
        raise InputError(
            f"--device {device_name!r} under torchrun would put all {world_size} processes on one GPU.",
            hint="Use --device cuda: each process takes the GPU of its LOCAL_RANK (limit GPUs with CUDA_VISIBLE_DEVICES).",
        )
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistContext(rank, world_size, local_rank, device)


def cleanup(ctx: DistContext) -> None:
    if ctx.distributed and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        torch.distributed.barrier()


def mean_across(value: float, count: int, ctx: DistContext) -> tuple[float, int]:
    """(weighted mean, total count) of per-process means ``value`` over ``count`` items, across all processes."""
    if not ctx.distributed:
        return value, count
    t = torch.tensor([value * count, float(count)], dtype=torch.float64, device=ctx.device)
    torch.distributed.all_reduce(t)
    return (float(t[0] / t[1]) if t[1] > 0 else float("nan")), int(t[1])
