"""What every exported artifact carries so that it can be run alone: ``ArtifactInfo``.

ONNX models keep it in ``metadata_props`` under the keys below; TensorRT plans in a JSON sidecar; checkpoints in
the ``torch.save`` dict. ``Predictor.from_artifact(path)`` needs nothing else. Every artifact also carries a content
digest (and optionally a signature) over all of it, checked before it runs: ``sranet.runtime.integrity``.

The decision threshold must be a probability: a finite number in [0, 1] (``check_threshold``); anything else is
refused when the artifact is read.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field

from sranet.config import ModelConfig, PreprocessConfig
from sranet.errors import ArtifactError

FORMAT_VERSION = "1"
INPUT_NAME = "ct"
OUTPUT_NAMES = ("prob", "attention")
PRECISIONS = ("fp32", "fp16", "int8")  # what an exported artifact computes in (ArtifactInfo.precision)
# The batch range (min, opt, max) of a TensorRT optimisation profile, a Triton repository and ONNX Runtime's TensorRT
# provider when none is given; the max is also the default largest batch of GPU buffers.
DEFAULT_PROFILE = (1, 1, 8)
DEFAULT_MAX_BATCH = DEFAULT_PROFILE[2]

# metadata_props keys (ONNX) and sidecar keys (engine JSON), one list for both
KEY_FORMAT = "sranet.format_version"
KEY_MODEL = "sranet.model_config"
KEY_PREPROCESS = "sranet.preprocess_config"
KEY_THRESHOLD = "sranet.threshold"
KEY_SOURCE_SHA = "sranet.source_sha256"
KEY_PRECISION = "sranet.precision"
KEY_VERSION = "sranet.version"
KEY_CONV_IMPL = "sranet.conv_impl"  # "direct" (Conv nodes) or "spectral" (some Conv3d layers as DFT MatMuls)
KEY_SPECTRAL_LAYERS = "sranet.spectral_layers"  # "2": 1-based Conv3d layers in spectral form (spectral only)
# ONNX integrity entries (sranet.runtime.integrity): they belong to one file, not to the model it holds, so they are
# neither part of ArtifactInfo nor covered by the digest
KEY_DIGEST = "sranet.content_sha256"
KEY_SIGNATURE = "sranet.signature"
KEY_SIGNING_KEY = "sranet.signing_key"
INTEGRITY_KEYS = (KEY_DIGEST, KEY_SIGNATURE, KEY_SIGNING_KEY)


@dataclass
class ArtifactInfo:
    model: ModelConfig
    preprocess: PreprocessConfig
    threshold: float
    source_sha256: str = ""
    precision: str = "fp32"
    extra: dict[str, str] = field(default_factory=dict)

    def to_metadata(self) -> dict[str, str]:
        from sranet import __version__

        return {
            KEY_FORMAT: FORMAT_VERSION,
            KEY_MODEL: self.model.to_json(),
            KEY_PREPROCESS: self.preprocess.to_json(),
            KEY_THRESHOLD: repr(float(self.threshold)),
            KEY_SOURCE_SHA: self.source_sha256,
            KEY_PRECISION: self.precision,
            KEY_VERSION: __version__,
            **self.extra,
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, str], *, path: str | os.PathLike | None = None) -> ArtifactInfo:
        missing = [k for k in (KEY_MODEL, KEY_PREPROCESS, KEY_THRESHOLD) if k not in meta]
        if missing:
            raise ArtifactError(
                f"has no sranet metadata ({', '.join(missing)} missing); it was not written by `sranet export`.",
                path=path,
                hint="Export it again with `sranet export CHECKPOINT --out model.onnx`.",
            )
        threshold = check_threshold(meta[KEY_THRESHOLD], path=path, where=f"metadata {KEY_THRESHOLD}")
        known = {KEY_FORMAT, KEY_MODEL, KEY_PREPROCESS, KEY_THRESHOLD, KEY_SOURCE_SHA, KEY_PRECISION, KEY_VERSION,
                 *INTEGRITY_KEYS}
        return cls(
            model=ModelConfig.from_json(meta[KEY_MODEL]),
            preprocess=PreprocessConfig.from_json(meta[KEY_PREPROCESS]),
            threshold=threshold,
            source_sha256=meta.get(KEY_SOURCE_SHA, ""),
            precision=meta.get(KEY_PRECISION, "fp32"),
            extra={k: v for k, v in meta.items() if k not in known},
        )

    @property
    def spectral_layers(self) -> tuple[int, ...]:
        """1-based Conv3d layers this graph computes in the frequency domain (empty for direct graphs)."""
        text = self.extra.get(KEY_SPECTRAL_LAYERS, "")
        try:
            return tuple(int(part) for part in text.split(",") if part.strip())
        except ValueError:
            raise ArtifactError(f"metadata {KEY_SPECTRAL_LAYERS}={text!r} is not a comma-separated list of layer "
                                "numbers.") from None


def check_threshold(value, *, path: str | os.PathLike | None = None, where: str = "threshold") -> float:
    """``value`` as a float when it is a probability (finite, 0 <= t <= 1); ArtifactError naming ``where`` otherwise
    (a NaN threshold would make every decision false; 0 every decision true)."""
    try:
        threshold = float(value)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"{where}={value!r} is not a number.", path=path) from exc
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise ArtifactError(f"{where}={value!r} is not a probability in [0, 1]; it decides which cases are called "
                            "positive.", path=path,
                            hint="Export the artifact again from its checkpoint (its threshold comes from validation).")
    return threshold


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()
