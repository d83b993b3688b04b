"""Checkpoints: one ``torch.save`` dict that carries everything needed to use or resume the weights.

Training writes them (``save_checkpoint``); training, evaluation, export and the PyTorch backend read them
(``load_checkpoint``). Keys (docs/CONTRACTS.md): ``format="sranet-checkpoint/1"``, ``model_state``, ``model_config`` (dict),
``preprocess_config`` (dict), ``threshold`` (float, chosen on validation by Youden's J), ``epoch`` (epochs completed),
``metrics`` (validation metrics of that epoch), ``train_config`` (dict), ``optimizer_state``, ``scheduler_state``;
and for exact resume ``rng_state`` (torch CPU generator) and ``best`` ({"auc", "epoch"} so far).

``integrity`` ({"content_sha256"[, "signature", "key_id"]}) guards what a prediction depends on: format, model and
preprocessing configs, threshold and every tensor of ``model_state`` (``checkpoint_digest``). ``load_checkpoint``
refuses a checkpoint without it or whose content does not match it (IntegrityError), and with ``trusted_keys`` one
that is not signed by a trusted key (``sranet.runtime.integrity``). Training state (optimizer, metrics, ...) is
outside the digest: it never changes a prediction.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sranet.config import ModelConfig, PreprocessConfig
from sranet.errors import ArtifactError, IntegrityError, SranetError
from sranet.model.sranet import SRANet
from sranet.runtime.artifact import ArtifactInfo, check_threshold
from sranet.runtime.files import atomic_write
from sranet.runtime.signing import check_signature, load_trusted_keys, signature_fields

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
    threshold = check_threshold(threshold, path=path, where="threshold")
    data = {
        "format": FORMAT,
        "model_state": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},  # any training layout
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
    data["integrity"] = {"content_sha256": checkpoint_digest(data)}
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda f: torch.save(data, f))


def checkpoint_digest(data: dict[str, Any]) -> str:
    """SHA-256 (hex) of what a prediction depends on: format, model and preprocessing configs, threshold (canonical
    JSON) and each ``model_state`` tensor in name order (name, dtype, shape, raw bytes)."""
    import hashlib
    import json

    digest = hashlib.sha256()
    head = {k: data.get(k) for k in ("format", "model_config", "preprocess_config", "threshold")}
    digest.update(json.dumps(head, sort_keys=True, separators=(",", ":"), allow_nan=True, default=str).encode())
    state = data.get("model_state")
    if not isinstance(state, dict):
        raise ArtifactError("checkpoint's model_state is not a dict of tensors.")
    for name in sorted(state):
        tensor = state[name]
        if not isinstance(tensor, torch.Tensor):
            raise ArtifactError(f"checkpoint's model_state[{name!r}] is a {type(tensor).__name__}, not a tensor.")
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"\n{name}\n{tensor.dtype}\n{list(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _read(path: Path) -> dict[str, Any]:
    """The checkpoint dict, read without executing code (``weights_only``); ArtifactError in one line otherwise."""
    if not path.is_file():
        raise ArtifactError("checkpoint file does not exist.", path=path, hint="Train one with `sranet train`.")
    import re
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about the pickle protocol of files it then refuses
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file (pickle, zip, EOF), with multi-line messages
        text = str(exc)
        found = re.search(r"unsupported GLOBAL (\S+)", text, flags=re.IGNORECASE)
        if found:
            raise ArtifactError(
                f"holds a Python object ({found.group(1).rstrip('.,')}) besides tensors and plain values; sranet "
                "loads checkpoints without executing code (torch.load weights_only=True) and refuses it.", path=path,
                hint="Use a best.pt or last.pt written by `sranet train`.") from None
        if "Unsupported operand" in text or "invalid load key" in text:
            why = "not a torch.save file, or damaged"
        else:
            why = next((line.strip() for line in text.splitlines() if line.strip()), "")[:160]
        raise ArtifactError(f"is not a readable PyTorch checkpoint ({type(exc).__name__}: {why}).", path=path,
                            hint="Use a best.pt or last.pt written by `sranet train`.") from None
    return data


def verify_checkpoint_data(data: dict[str, Any], path: Path, trusted_keys=None) -> str:
    """The checkpoint dict's digest checked (and its signature, with ``trusted_keys``); returns the digest."""
    integrity = data.get("integrity")
    if not isinstance(integrity, dict) or not integrity.get("content_sha256"):
        raise IntegrityError("checkpoint has no content digest (integrity.content_sha256): nothing shows whether its "
                             "weights, configs or threshold were changed.", path=path,
                             hint="Use a checkpoint written by `sranet train` (save_checkpoint).")
    recorded = str(integrity["content_sha256"])
    actual = checkpoint_digest(data)
    if actual != recorded:
        raise IntegrityError(
            f"its content (SHA-256 {actual[:16]}...) does not match the digest recorded when it was saved "
            f"({recorded[:16]}...): the weights, configs or threshold were changed after training.", path=path,
            hint="Use the checkpoint as `sranet train` wrote it.")
    check_signature("checkpoint", recorded, integrity.get("signature"), integrity.get("key_id"),
                    load_trusted_keys(trusted_keys), path=path)
    return recorded


def verify_checkpoint(path: str | os.PathLike, trusted_keys=None) -> str:
    """``sranet.runtime.integrity.verify_artifact`` for ``.pt``: a checkpoint's digest and, with ``trusted_keys``,
    its signature (and that its threshold is a probability). Returns the digest."""
    path = Path(path)
    data = _read(path)
    _check_format(data, path)
    digest = verify_checkpoint_data(data, path, trusted_keys)
    check_threshold(data["threshold"], path=path, where="checkpoint threshold")
    return digest


def sign_checkpoint(path: str | os.PathLike, signing_key) -> str:
    """Sign a checkpoint in place (atomically) with ``signing_key`` (an Ed25519 PEM path or key), after checking its
    digest. Returns the digest."""
    path = Path(path)
    data = _read(path)
    _check_format(data, path)
    digest = verify_checkpoint_data(data, path)
    data["integrity"] = {"content_sha256": digest, **signature_fields("checkpoint", digest, signing_key)}
    atomic_write(path, lambda f: torch.save(data, f))
    return digest


def _check_format(data: Any, path: Path) -> None:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ArtifactError(f"is not an sranet checkpoint (format {found!r}, expected {FORMAT!r}).", path=path,
                            hint="Use a best.pt or last.pt written by `sranet train`.")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise ArtifactError(f"checkpoint lacks {', '.join(missing)}.", path=path)


def load_checkpoint(path: str | os.PathLike, *, trusted_keys=None) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint``: ArtifactError naming the file when it is not one,
    IntegrityError when its content does not match its digest or (with ``trusted_keys``, Ed25519 public keys or PEM
    paths) it is not signed by a trusted key."""
    path = Path(path)
    data = _read(path)
    _check_format(data, path)
    verify_checkpoint_data(data, path, trusted_keys)
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
        threshold=check_threshold(data["threshold"], path=path, where="checkpoint threshold"),
        epoch=int(data.get("epoch", 0)),
        metrics=data.get("metrics") or {},
        train_config=data.get("train_config") or {},
        optimizer_state=data.get("optimizer_state"),
        scheduler_state=data.get("scheduler_state"),
        rng_state=data.get("rng_state"),
        best=data.get("best") or {},
    )
