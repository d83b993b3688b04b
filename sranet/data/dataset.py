"""Read the prepared cache (``sranet prepare``; layout in docs/CONTRACTS.md) as a PyTorch dataset.

``read_cache(dir)`` parses ``cache.json`` and ``cases.csv`` (torch-free); ``CachedDataset`` yields one dict per case:

    volume   (1, S, S, S) float32   network input (augmented when an AugmentConfig is given)
    targets  (N,) float32           structure-regulariser targets f_n from the (augmented) bone mask
    label    () float32             1 = AVNFH present
    index    () int64               position in the split (to map predictions back to case ids)

This module imports torch (training only). Augmentation randomness is a function of (seed, epoch, index) only, so results do not depend on worker count.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sranet.config import PreprocessConfig
from sranet.data.augment import AugmentConfig, augment
from sranet.errors import TrainingError

CASE_COLUMNS = ("case_id", "label", "stage", "split", "volume", "mask", "lesion", "qc")


@dataclass(frozen=True)
class CachedCase:
    case_id: str
    label: int
    stage: int | None
    split: str
    volume: Path
    mask: Path
    lesion: Path | None
    qc: str = ""


@dataclass
class CacheIndex:
    root: Path
    preprocess: PreprocessConfig
    grid: int
    mask_params: dict[str, Any] = field(default_factory=dict)
    cases: list[CachedCase] = field(default_factory=list)

    def split(self, name: str) -> list[CachedCase]:
        return [c for c in self.cases if c.split == name]


def read_cache(cache_dir: str | Path) -> CacheIndex:
    """Parse CACHE/cache.json and CACHE/cases.csv. Raises TrainingError naming the file when either is unusable."""
    root = Path(cache_dir)
    hint = "Create it with `sranet prepare --manifest MANIFEST.csv --out CACHE`."
    if not root.is_dir():
        raise TrainingError("cache folder does not exist.", path=root, hint=hint)
    meta_path, cases_path = root / "cache.json", root / "cases.csv"
    for p in (meta_path, cases_path):
        if not p.is_file():
            raise TrainingError(f"is missing; {root} is not a prepared cache.", path=p, hint=hint)
    try:
        meta = json.loads(meta_path.read_text())
        preprocess = PreprocessConfig.from_dict(meta["preprocess"])
        grid = int(meta.get("grid", 4))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise TrainingError(f"is not a valid cache description ({exc}).", path=meta_path, hint=hint) from exc
    cases: list[CachedCase] = []
    with cases_path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("case_id", "label", "split", "volume", "mask") if c not in (reader.fieldnames or [])]
        if missing:
            raise TrainingError(f"lacks column(s) {', '.join(missing)}; expected {', '.join(CASE_COLUMNS)}.", path=cases_path)
        for line, row in enumerate(reader, start=2):
            try:
                label = int(row["label"])
                stage = int(row["stage"]) if row.get("stage") not in (None, "") else None
            except ValueError as exc:
                raise TrainingError(f"line {line}: label/stage is not an integer ({exc}).", path=cases_path) from exc
            if label not in (0, 1):
                raise TrainingError(f"line {line}: label must be 0 or 1, got {label}.", path=cases_path)
            lesion = row.get("lesion") or ""
            cases.append(
                CachedCase(
                    case_id=row["case_id"],
                    label=label,
                    stage=stage,
                    split=row["split"],
                    volume=root / row["volume"],
                    mask=root / row["mask"],
                    lesion=root / lesion if lesion else None,
                    qc=row.get("qc") or "",
                )
            )
    return CacheIndex(root, preprocess, grid, dict(meta.get("mask") or {}), cases)


def load_array(path: Path, shape: tuple[int, ...], what: str) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot read the cached {what} ({exc}).", path=path, hint="Run `sranet prepare` again.") from exc
    if array.shape != shape:
        raise TrainingError(f"cached {what} has shape {array.shape}, expected {shape}.", path=path, hint="Run `sranet prepare` again.")
    return array


class CachedDataset(Dataset):
    """One split of a prepared cache. ``set_epoch(e)`` changes the augmentation draw (call it before each epoch)."""

    def __init__(
        self,
        index: CacheIndex,
        split: str,
        *,
        augment_cfg: AugmentConfig | None = None,
        seed: int = 0,
        min_bone_fraction: float = 0.0,
    ):
        self.index = index
        self.split = split
        self.cases = index.split(split)
        self.augment_cfg = augment_cfg
        self.seed = int(seed)
        self.min_bone_fraction = float(min_bone_fraction)
        self.epoch = 0
        size = index.preprocess.output_size
        self.shape = (size, size, size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.cases)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Un-augmented (volume (S,S,S) float32, bone mask (S,S,S) uint8 0/255) of case i."""
        case = self.cases[i]
        volume = load_array(case.volume, self.shape, "volume").astype(np.float32, copy=False)
        mask = load_array(case.mask, self.shape, "bone mask").astype(np.uint8, copy=False)
        return volume, mask

    def load_lesion(self, i: int) -> np.ndarray | None:
        case = self.cases[i]
        return None if case.lesion is None else load_array(case.lesion, self.shape, "lesion mask")

    def __getitem__(self, i: int) -> dict[str, Any]:
        from sranet.data.masks import patch_targets

        volume, mask = self.load(i)
        if self.augment_cfg is not None:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            volume, mask = augment(volume, mask, self.augment_cfg, rng)
        targets = patch_targets(mask, self.index.grid, self.min_bone_fraction)
        return {
            "volume": torch.from_numpy(np.ascontiguousarray(volume))[None],  # (1, S, S, S)
            "targets": torch.as_tensor(np.asarray(targets, dtype=np.float32)),  # (N,)
            "label": torch.tensor(float(self.cases[i].label)),
            "index": torch.tensor(i, dtype=torch.int64),
        }


class BalancedSampler(torch.utils.data.Sampler):
    """Class-balanced order for a binary-labelled split: every epoch yields ``len(labels)`` indices (rounded up to
    even), half of each class, as pairs (one of each class, in random order). So every batch of even size holds as
    many positives as negatives, and the minority class is repeated rather than the majority one left out for long.

    Within a class, indices come from successive shuffles (no case repeats before all of its class was drawn).
    The order is a function of (seed, epoch) only; under torchrun each rank takes every world_size-th pair (the
    pair count is rounded up so that every rank gets as many).
    ``set_epoch(e)`` must be called before each epoch, as with DistributedSampler.
    """

    def __init__(self, labels, seed: int = 0, rank: int = 0, world_size: int = 1):
        labels = np.asarray(labels)
        self.classes = [np.flatnonzero(labels == c) for c in (0, 1)]
        if any(len(c) == 0 for c in self.classes):
            raise TrainingError(f"balanced sampling needs both labels in the training split; it has only label "
                                f"{int(labels[0]) if labels.size else 'none'}.",
                                hint="Use --sampler random, or add cases of the missing class.")
        pairs = (labels.size + 1) // 2
        self.pairs = -(-pairs // world_size) * world_size  # every rank gets as many pairs (DDP steps in lockstep)
        self.seed, self.rank, self.world_size, self.epoch = int(seed), int(rank), int(world_size), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _draw(self, members: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        rounds = -(-count // members.size)
        return np.concatenate([rng.permutation(members) for _ in range(rounds)])[:count]

    def epoch_pairs(self) -> np.ndarray:
        """(pairs, 2) indices of this epoch for all ranks: column order random per pair."""
        rng = np.random.default_rng([self.seed, self.epoch, 7919])
        neg, pos = (self._draw(c, self.pairs, rng) for c in self.classes)
        pairs = np.stack([neg, pos], axis=1)
        swap = rng.random(self.pairs) < 0.5
        pairs[swap] = pairs[swap][:, ::-1]
        return pairs

    def __iter__(self):
        pairs = self.epoch_pairs()[self.rank::self.world_size]
        return iter(pairs.reshape(-1).tolist())

    def __len__(self) -> int:
        return 2 * (self.pairs // self.world_size)
