"""The environment recorded with every benchmark result: machine, libraries, threads, artifacts, command, date.

Reading it never imports torch: library versions come from package metadata, and CUDA facts from ``nvidia-smi``
when it is on PATH. Nothing identifying a patient is recorded (artifact paths are the user's, not tag-derived).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "ORT_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
)
LIBRARIES = ("sranet", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino", "torch", "cupy-cuda12x",
             "tensorrt", "opencv-python-headless", "pydicom", "scipy")


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The SIMD flags that matter for fp32/fp16/int8 kernels (avx2, avx512*, fma, amx*, f16c, vnni, neon...)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line.split(":", 1)[1].split()
                keep = ("avx", "fma", "amx", "f16c", "vnni", "neon", "asimd", "sve")
                return sorted({f for f in flags if f.startswith(keep) or "vnni" in f})
    except OSError:
        pass
    return []


def gpu_info() -> list[dict[str, str]]:
    """One dict per GPU from ``nvidia-smi`` (name, driver, memory); empty without an NVIDIA GPU."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,driver_version,memory.total,compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3:
            gpus.append({"name": parts[0], "driver": parts[1], "memory_total": parts[2],
                         "compute_capability": parts[3] if len(parts) > 3 else ""})
    return gpus


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that change benchmark numbers (absent ones omitted)."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def memory_total_gib() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 2)
    except Exception:  # psutil missing or unsupported platform
        return None


def physical_cores() -> int | None:
    try:
        import psutil

        return psutil.cpu_count(logical=False)
    except Exception:
        return None


def collect_environment(*, threads: int | None = None, argv: list[str] | None = None) -> dict[str, Any]:
    """Everything a reader needs to know what machine and software produced a result."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(argv if argv is not None else sys.argv),
        "hostname_hash": _short_hash(platform.node()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": {
            "model": cpu_model(),
            "logical_cores": os.cpu_count(),
            "physical_cores": physical_cores(),
            "usable_cores": affinity,
            "flags": cpu_flags(),
        },
        "memory_total_gib": memory_total_gib(),
        "gpus": gpu_info(),
        "libraries": library_versions(),
        "threads": {"requested": threads, **{k: os.environ[k] for k in THREAD_ENV_VARS if k in os.environ}},
    }


def machine_label(env: dict[str, Any], *, gpu: bool = True) -> str:
    """Short human label, e.g. 'AMD EPYC, 2 cores' or 'NVIDIA H100 80GB HBM3 (driver 550.54)'; ``gpu=False`` names
    the CPU even on a machine with a GPU (CPU-only benchmarks)."""
    if gpu and env.get("gpus"):
        g = env["gpus"][0]
        return f"{g['name']} (driver {g['driver']})"
    cpu = env.get("cpu", {})
    return f"{cpu.get('model', '?')}, {cpu.get('usable_cores') or cpu.get('logical_cores')} cores"


def _short_hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:12]
