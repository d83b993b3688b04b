"""Checkpoints: one ``torch.save`` dict that carries everything needed to use or resume the weights.

Training writes them (``save_checkpoint``); training, evaluation, export and the PyTorch backend read them
(``load_checkpoint``). Keys (docs/CONTRACTS.md): ``format="sranet-checkpoint/1"``, ``model_state``, ``model_config`` (dict),
``preprocess_config`` (dict), ``threshold`` (float, chosen on validation by Youden's J), ``epoch`` (epochs completed),
``metrics`` (validation metrics of that epoch), ``train_config`` (dict), ``optimizer_state``, ``scheduler_state``;
and for exact resume ``rng_state`` (torch CPU generator) and ``best`` ({"auc", "epoch"} so far).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sranet.config import ModelConfig, PreprocessConfig
from sranet.errors import ArtifactError, SranetError
from sranet.model.sranet import SRANet
from sranet.runtime.artifact import ArtifactInfo
from sranet.runtime.files import atomic_write

FORMAT = "sranet-checkpoint/1"
REQUIRED = ("format", "model_state", "model_config", "preprocess_config", "threshold")


@dataclass
class Checkpoint:
    path: Path
    model_state: dict[str, torch.Tensor]
    model_config: ModelConfig
    preprocess_config: PreprocessConfig
    threshold: float
    epoch: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    optimizer_state: dict[str, Any] | None = None
    scheduler_state: dict[str, Any] | None = None
    rng_state: torch.Tensor | None = None
    best: dict[str, Any] = field(default_factory=dict)

    def build_model(self, device: str | torch.device = "cpu") -> SRANet:
        """The SRANet these weights belong to, in eval mode, on ``device``."""
        model = SRANet(self.model_config)
        try:
            model.load_state_dict(self.model_state)
        except RuntimeError as exc:
            raise ArtifactError(
                f"weights do not fit the stored model config ({str(exc).splitlines()[0]}).", path=self.path
            ) from exc
        return model.to(device).eval()

    def artifact_info(self, *, precision: str = "fp32") -> ArtifactInfo:
        """What a runtime needs from these weights: model and preprocessing configs, threshold, ``precision``."""
        return ArtifactInfo(model=self.model_config, preprocess=self.preprocess_config, threshold=self.threshold,
                            precision=precision)


def save_checkpoint(path: str | os.PathLike, *, model: torch.nn.Module, preprocess_config: PreprocessConfig,
                    threshold: float, epoch: int, metrics: dict[str, Any], train_config: dict[str, Any],
                    optimizer=None, scheduler=None, best: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically (``atomic_write``: a crash never leaves half a best.pt)."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    path = Path(path)
    data = {
        "format": FORMAT,
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_config": model.cfg.to_dict(),
        "preprocess_config": preprocess_config.to_dict(),
        "threshold": float(threshold),
        "epoch": int(epoch),
        "metrics": dict(metrics),
        "train_config": dict(train_config),
        "optimizer_state": None if optimizer is None else optimizer.state_dict(),
        "scheduler_state": None if scheduler is None else scheduler.state_dict(),
        "rng_state": torch.get_rng_state(),
        "best": dict(best or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda f: torch.save(data, f))


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint``. Raises ArtifactError naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError("checkpoint file does not exist.", path=path, hint="Train one with `sranet train`.")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file (pickle, zip, EOF)
        raise ArtifactError(f"is not a readable PyTorch checkpoint ({type(exc).__name__}: {exc}).", path=path) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ArtifactError(f"is not an sranet checkpoint (format {found!r}, expected {FORMAT!r}).", path=path,
                            hint="Use a best.pt or last.pt written by `sranet train`.")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise ArtifactError(f"checkpoint lacks {', '.join(missing)}.", path=path)
    try:
        model_config = ModelConfig.from_dict(data["model_config"])
        preprocess_config = PreprocessConfig.from_dict(data["preprocess_config"])
    except SranetError as exc:
        raise ArtifactError(f"stored config is invalid: {exc}", path=path) from exc
    return Checkpoint(
        path=path,
        model_state=data["model_state"],
        model_config=model_config,
        preprocess_config=preprocess_config,
        threshold=float(data["threshold"]),
        epoch=int(data.get("epoch", 0)),
        metrics=data.get("metrics") or {},
        train_config=data.get("train_config") or {},
        optimizer_state=data.get("optimizer_state"),
        scheduler_state=data.get("scheduler_state"),
        rng_state=data.get("rng_state"),
        best=data.get("best") or {},
    )
