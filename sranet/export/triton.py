"""A Triton Inference Server model repository for an exported ONNX model or TensorRT / TensorRT-RTX plan.

    REPO/<model_name>/config.pbtxt
    REPO/<model_name>/README.md        how to start the server for this model (and what to watch for)
    REPO/<model_name>/1/model.onnx     (platform onnxruntime_onnx)   or
    REPO/<model_name>/1/model.plan     (platform tensorrt_plan; its sidecar is copied next to it for provenance)  or
    REPO/<model_name>/1/model.py       (backend python: ``sranet/export/triton_model.py``, running the artifact next
                                        to it, any of the three, through sranet.runtime; the only way to serve a
                                        TensorRT-RTX plan, which Triton's TensorRT backend does not load)

The batch dimension is implicit in Triton (``max_batch_size`` > 0), so ``ct`` is declared [1, S, S, S],
``attention`` [N], and ``prob`` -- (B,) in the model, i.e. no dimension left after the batch -- is declared [1]
with ``reshape { shape: [ ] }``, the form Triton documents for per-sample scalars. Dynamic batching prefers the
optimisation profile's batch sizes; a zero-filled warm-up request is sent when the model loads; one instance per GPU.
The sranet ArtifactInfo (threshold, preprocessing) is in ``parameters`` so a client can read it from the server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from sranet.errors import ArtifactError, InputError, check_choice
from sranet.runtime.artifact import INPUT_NAME, ArtifactInfo

MAX_QUEUE_DELAY_US = 100  # latency first: wait at most 0.1 ms to fill a batch
TRITON_BACKENDS = ("native", "python")  # Triton's onnxruntime/tensorrt backends, or a Python-backend model
PYTHON_MODEL = Path(__file__).with_name("triton_model.py")


def _artifact(artifact_path: Path) -> tuple[str, ArtifactInfo, tuple[int, int, int] | None, dict | None]:
    """(platform, info, (min, opt, max) batch profile or None, sidecar or None) of an .onnx or a plan."""
    suffix = artifact_path.suffix.lower()
    if suffix == ".onnx":
        from sranet.export.tensorrt import inspect_onnx

        return "onnxruntime_onnx", inspect_onnx(artifact_path).info, None, None
    if suffix in (".engine", ".plan"):
        from sranet.runtime.sidecar import read_sidecar, sidecar_info

        sidecar = read_sidecar(artifact_path)
        shapes = sidecar["profile"][INPUT_NAME]
        return ("tensorrt_plan", sidecar_info(sidecar, path=artifact_path), tuple(int(s[0]) for s in shapes),
                sidecar)
    raise ArtifactError(f"has suffix {suffix!r}; a Triton repository is made from an .onnx, .engine or .plan.",
                        path=artifact_path)


def _pb_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid protobuf text-format string (ASCII, \" escapes)


def render_config(*, model_name: str, platform: str, info: ArtifactInfo, max_batch: int,
                  preferred: list[int], instance_kind: str = "KIND_GPU", artifact: str | None = None) -> str:
    """config.pbtxt text for ``ct`` (B,1,S,S,S) -> ``prob`` (B,), ``attention`` (B,N).

    ``platform`` "onnxruntime_onnx" or "tensorrt_plan" (Triton's own backends), or "python" for the Python-backend
    model, which then runs ``artifact`` (a file name in the version folder) and returns ``prob`` as (b, 1) itself.
    """
    S, N = info.model.input_size, info.model.num_patches
    params = {"sranet.threshold": repr(float(info.threshold)), "sranet.precision": info.precision,
              "sranet.preprocess_config": info.preprocess.to_json(), "sranet.model_config": info.model.to_json()}
    python = platform == "python"
    if python:
        params["sranet.artifact"] = str(artifact)
    prob_reshape = "" if python else " reshape: { shape: [ ] }"
    lines = [
        f"name: {_pb_string(model_name)}",
        'backend: "python"' if python else f'platform: "{platform}"',
        f"max_batch_size: {max_batch}",
        "input [",
        f'  {{ name: "{INPUT_NAME}" data_type: TYPE_FP32 dims: [ 1, {S}, {S}, {S} ] }}',
        "]",
        "output [",
        f'  {{ name: "prob" data_type: TYPE_FP32 dims: [ 1 ]{prob_reshape} }},',
        f'  {{ name: "attention" data_type: TYPE_FP32 dims: [ {N} ] }}',
        "]",
        "dynamic_batching {",
        f"  preferred_batch_size: [ {', '.join(str(b) for b in preferred)} ]",
        f"  max_queue_delay_microseconds: {MAX_QUEUE_DELAY_US}",
        "}",
        f"instance_group [ {{ count: 1 kind: {instance_kind} }} ]",
        "model_warmup [",
        "  {",
        '    name: "zero_ct"',
        "    batch_size: 1",
        f'    inputs {{ key: "{INPUT_NAME}" value: {{ data_type: TYPE_FP32 dims: [ 1, {S}, {S}, {S} ] zero_data: true }} }}',
        "  }",
        "]",
    ]
    for key, value in params.items():
        lines.append(f'parameters {{ key: "{key}" value: {{ string_value: {_pb_string(value)} }} }}')
    return "\n".join(lines) + "\n"


def write_triton_repo(artifact_path: str | os.PathLike, repo_dir: str | os.PathLike, *, max_batch: int,
                      model_name: str = "sranet", device: str = "gpu", backend: str = "native") -> Path:
    """Write REPO/<model_name>/{config.pbtxt, README.md, 1/...}; returns the model folder.

    backend: "native" (Triton's onnxruntime_onnx or tensorrt_plan backend) or "python" (``triton_model.py`` runs the
    artifact through sranet.runtime; needed for TensorRT-RTX plans).
    device: "gpu" (instance group KIND_GPU) or, for an ONNX model only, "cpu" (KIND_CPU: a Triton server without
    GPUs can load it). A TensorRT plan runs on a GPU only.

    max_batch: Triton's max_batch_size. For a plan it must lie inside the plan's profile, whose min must be 1
    (Triton sends any batch from 1 to max_batch_size).
    """
    artifact_path = Path(artifact_path)
    _check_repo_args(artifact_path, model_name=model_name, max_batch=max_batch, device=device, backend=backend)
    platform, info, profile, sidecar = _artifact(artifact_path)
    _check_servable(artifact_path, profile=profile, sidecar=sidecar, device=device, backend=backend)
    preferred, filename = _batching(profile, max_batch)

    model_dir = Path(repo_dir) / model_name
    _copy_version(artifact_path, model_dir / "1", filename=filename, plan=profile is not None, backend=backend)
    config = render_config(model_name=model_name, platform="python" if backend == "python" else platform, info=info,
                           max_batch=max_batch, preferred=preferred,
                           instance_kind="KIND_CPU" if device == "cpu" else "KIND_GPU", artifact=filename)
    (model_dir / "config.pbtxt").write_text(config)
    (model_dir / "README.md").write_text(repo_readme(model_name, backend=backend, sidecar=sidecar))
    return model_dir


def _check_repo_args(artifact_path: Path, *, model_name: str, max_batch: int, device: str, backend: str) -> None:
    """Refuse a missing artifact, a model name Triton cannot use, a bad max_batch, device or backend."""
    if not artifact_path.is_file():
        raise ArtifactError("does not exist; export it first with `sranet export`.", path=artifact_path)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", model_name) or model_name in (".", ".."):
        raise InputError(f"Triton model name {model_name!r} must be letters, digits, '_', '-' or '.', e.g. 'sranet'.")
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise InputError(f"max_batch={max_batch!r} must be an integer >= 1 (Triton's max_batch_size).")
    check_choice("Triton device", device, ("gpu", "cpu"), InputError)
    check_choice("Triton backend", backend, TRITON_BACKENDS, InputError)


def _check_servable(artifact_path: Path, *, profile, sidecar: dict | None, device: str, backend: str) -> None:
    """Refuse a plan on CPUs, and a TensorRT-RTX plan on Triton's TensorRT backend (it cannot load one)."""
    if profile is not None and device == "cpu":
        raise InputError("a TensorRT plan runs on a GPU only; use device='gpu', or serve the ONNX model on CPUs.")
    rtx = sidecar is not None and sidecar.get("flavour") == "tensorrt-rtx"
    if rtx and backend == "native":
        raise InputError("Triton's tensorrt_plan backend is TensorRT's and does not load a TensorRT-RTX plan.",
                         path=artifact_path, hint="Write the repository with backend='python' (--triton-backend "
                                                  "python): its model.py runs the plan through sranet.runtime.")


def _batching(profile: tuple[int, int, int] | None, max_batch: int) -> tuple[list[int], str]:
    """(preferred batch sizes, file name in the version folder); a plan's profile must start at 1 and reach
    max_batch."""
    if profile is None:
        return sorted({b for b in (4, 8, max_batch) if b <= max_batch}), "model.onnx"
    bmin, bopt, bmax = profile
    if bmin != 1:
        raise InputError(f"the plan's batch profile starts at {bmin}, but Triton may send a batch of 1. Rebuild the "
                         f"engine with --profile 1:{bopt}:{bmax}.")
    if max_batch > bmax:
        raise InputError(f"max_batch={max_batch} exceeds the plan's profile max {bmax}. Use max_batch {bmax} or "
                         f"less, or rebuild the engine with --profile 1:{bopt}:{max_batch}.")
    return sorted({b for b in (bopt, max_batch) if b <= max_batch}), "model.plan"


def _copy_version(artifact_path: Path, version_dir: Path, *, filename: str, plan: bool, backend: str) -> None:
    """Copy the artifact into the version folder as ``filename``, with a plan's sidecar or an ONNX's external
    weights, and ``model.py`` for the Python backend."""
    version_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(artifact_path, version_dir / filename)
    if plan:
        from sranet.runtime.sidecar import sidecar_path

        shutil.copyfile(sidecar_path(artifact_path), version_dir / (filename + ".json"))
    else:
        external = artifact_path.with_name(artifact_path.name + ".data")  # weights stored beside the graph, if any
        if external.is_file():
            shutil.copyfile(external, version_dir / external.name)
    if backend == "python":
        shutil.copyfile(PYTHON_MODEL, version_dir / "model.py")


def triton_notes(sidecar: dict | None) -> list[str]:
    """What a Triton server needs to be told for this plan: a version-compatible plan loads only with
    ``--backend-config=tensorrt,version-compatible=true`` (Triton's TensorRT backend refuses its lean runtime
    otherwise)."""
    notes = []
    if sidecar is not None and (sidecar.get("options") or {}).get("version_compatible"):
        notes.append("This plan is version-compatible: start tritonserver with "
                     "--backend-config=tensorrt,version-compatible=true, or Triton refuses to load it.")
    return notes


def repo_readme(model_name: str, *, backend: str, sidecar: dict | None) -> str:
    """README.md of the model folder: how to start the server, and the notes of ``triton_notes``."""
    lines = [f"# Triton model `{model_name}` (written by `sranet export --triton`)", ""]
    if backend == "python":
        lines += [
            "The Python-backend model `1/model.py` runs the artifact next to it through `sranet.runtime`. Triton's",
            "Python stub embeds the interpreter and takes its packages from the environment of the first `python3`",
            "on the server's `PATH` (`PYTHONPATH` is not read). Give the server an environment with sranet, onnx,",
            "onnxruntime (or tensorrt / tensorrt_rtx and cupy for a plan) and the numpy your Triton's stub was built",
            "for (numpy < 2 up to Triton 2.51 at least: a newer numpy makes its outputs arrive empty), of the same",
            "Python version as the stub:",
            "",
            "```bash",
            'python3 -m venv triton-env && triton-env/bin/pip install "numpy<2" sranet',
            'PATH="$PWD/triton-env/bin:$PATH" tritonserver --model-repository REPO',
            "```",
            "",
            "The model answers `prob` as (B, 1) and `attention` as (B, N); a malformed request (shape, dtype,",
            "non-finite values) gets its own error response and does not fail the others of its batch.",
        ]
    else:
        lines += ["```bash", "tritonserver --model-repository REPO", "```"]
    notes = triton_notes(sidecar)
    if notes:
        lines += ["", "Notes:", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"


__all__ = ["PYTHON_MODEL", "TRITON_BACKENDS", "render_config", "repo_readme", "triton_notes",
           "write_triton_repo"]
