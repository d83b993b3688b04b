"""Typed errors. Library code raises these; only the CLI turns them into one ``Error: ...`` line and exit code 1.

Every message says what came in, what was expected, and how to fix it. Errors about a file carry its path, which
is put at the front of the message so a batch log says which case failed.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable


class SranetError(Exception):
    """Base of every error sranet raises on purpose."""

    def __init__(self, message: str, *, path: str | os.PathLike | None = None, hint: str | None = None):
        super().__init__(message)  # first: ImportError.__init__ would reset a ``path`` attribute set before it
        self.message = message
        self.path = None if path is None else os.fspath(path)
        self.hint = hint
        self.args = (str(self),)

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        if self.hint:
            text = f"{text} {self.hint}"
        return text

    def __reduce__(self):  # keep pickling (multiprocessing workers) working with keyword-only arguments
        return (_rebuild, (type(self), self.message, self.path, self.hint))


def _rebuild(cls, message, path, hint):
    return cls(message, path=path, hint=hint)


# -- configuration and user input -------------------------------------------------------------------------------
class ConfigError(SranetError, ValueError):
    """A configuration value (model, preprocessing, training, export) is invalid."""


class InputError(SranetError, ValueError):
    """A value given by the user (CLI option, function argument) is invalid."""


class ManifestError(InputError):
    """A manifest CSV is missing, malformed, or names a column or value that is not understood."""


class DependencyMissingError(SranetError, ImportError):
    """An optional package needed for this operation is not installed. The message names the pip extra."""


# -- reading volumes ------------------------------------------------------------------------------------------------
class VolumeError(SranetError):
    """A case could not be turned into a usable CT volume."""


class UnreadableFileError(VolumeError):
    """The file or folder does not exist or cannot be read."""


class NotDicomError(VolumeError):
    """The file is not DICOM (and not another supported format)."""


class UnsupportedFormatError(VolumeError):
    """The path has a format sranet does not read."""


class NoPixelDataError(VolumeError):
    """A DICOM object has no pixel data (a structured report, a presentation state, ...)."""


class CorruptPixelDataError(VolumeError):
    """Pixel data is truncated, cannot be decoded, or decodes to implausible values."""


class WrongModalityError(VolumeError):
    """The object is not CT (MR, RTDOSE, SEG, ...)."""


class NoUsableSeriesError(VolumeError):
    """No series in the input can be stacked into a CT volume, or several can and none was chosen."""


class GeometryError(VolumeError):
    """Slice geometry is inconsistent (mixed orientations, duplicate positions, gaps, tilt) and policy says refuse."""


class EmptyRoiError(VolumeError):
    """The region of interest is empty or lies outside the volume."""


class NoFemoralHeadError(VolumeError):
    """The localiser found no femoral head on a side of a study (or in the whole study): nothing is predicted there."""


class MetalNearHeadError(VolumeError):
    """Metal (a prosthesis, screws) lies in or next to a femoral head: that side is skipped unless asked for."""


class VolumeTooLargeError(VolumeError):
    """Reading the case would take more memory than its budget (``sranet.runtime.limits``)."""


# -- artifacts, export and backends ---------------------------------------------------------------------------------
class ArtifactError(SranetError):
    """A checkpoint, ONNX model or engine is missing, malformed, or lacks sranet metadata."""


class IntegrityError(ArtifactError):
    """An artifact's content does not match its recorded digest, or its signature is missing or not trusted."""


class ParityGateError(ArtifactError):
    """An exported model disagrees with the PyTorch reference beyond the precision's tolerances."""


class EngineCompatibilityError(ArtifactError):
    """A TensorRT plan was built for another GPU or TensorRT version; it must be rebuilt on this machine."""


class BackendError(SranetError):
    """A backend could not be created or failed to run."""


class TrainingError(SranetError):
    """Training cannot start or continue (empty split, one class only, diverged loss, ...)."""


def suggest(value: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean 'x'?' for the closest choice, or '' if none is close. Never auto-corrects."""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def check_choice(name: str, value: str, choices: Iterable[str], error: type[SranetError] = ConfigError) -> str:
    """Raise ``error`` naming the valid choices (and the nearest one) unless ``value`` is one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise error(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}.{suggest(value, choices)}")
    return value
