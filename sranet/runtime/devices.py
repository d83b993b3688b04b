"""Devices: the one parser of ``device`` strings every backend takes, the TensorRT import, and the GPU facts a
TensorRT plan is tied to (``device_env``). Nothing here imports torch, CuPy or TensorRT at module level.

Device strings: ``"cpu"``, or ``"cuda:N"`` for CUDA GPU N as this process numbers them (``"cuda"`` is
``"cuda:0"``). ``device_env`` works without CuPy (it asks ``nvidia-smi``), so a build machine with only TensorRT
still records the GPU in the sidecar.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from typing import NamedTuple

from sranet.errors import BackendError, DependencyMissingError, InputError
from sranet.runtime.cuda_buffers import CUPY_HINT
from sranet.runtime.sidecar import DeviceEnv

DEVICE_FORMS = "'cpu' or 'cuda:N' (N = GPU index, 'cuda' = 'cuda:0')"
TRT_INSTALL_HINT = "Install TensorRT on the GPU machine: pip install 'sranet[trt]' (NVIDIA's wheels), or use JetPack."


class Device(NamedTuple):
    """A parsed device string: ``kind`` "cpu" or "cuda"; ``index`` the GPU index (0 for the CPU)."""

    kind: str
    index: int = 0

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"


def parse_device(device: str) -> Device:
    """'cpu' -> Device("cpu"); 'cuda' / 'cuda:N' -> Device("cuda", N). Anything else: InputError naming the forms."""
    text = device.strip().lower() if isinstance(device, str) else None
    if text == "cpu":
        return Device("cpu")
    if text == "cuda":
        return Device("cuda", 0)
    if text is not None and text.startswith("cuda:") and text[5:].isdigit():
        return Device("cuda", int(text[5:]))
    raise InputError(f"device={device!r} is not {DEVICE_FORMS}.", hint="Example: --device cpu, or --device cuda:0.")


def import_tensorrt():
    """``import tensorrt``, or DependencyMissingError saying how to install it."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise DependencyMissingError(f"the tensorrt package is needed to build or run a TensorRT plan ({exc}).",
                                     hint=TRT_INSTALL_HINT) from exc
    return trt


def _cuda_version(v: int) -> str:
    return f"{v // 1000}.{(v % 1000) // 10}" if v else ""


def visible_gpu_id(device: int, environ: Mapping[str, str] = os.environ) -> str:
    """The ``nvidia-smi --id`` of this process's CUDA device ``device``. CUDA numbers only the GPUs listed in
    CUDA_VISIBLE_DEVICES (indices or UUIDs); nvidia-smi numbers all of them, so device 0 may be GPU 3 to it."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return str(device)
    ids = [part.strip() for part in visible.split(",") if part.strip()]
    if not 0 <= device < len(ids):
        raise BackendError(f"CUDA device {device} is not visible: CUDA_VISIBLE_DEVICES={visible!r} lists "
                           f"{len(ids)} GPU(s).", hint="Pick a device below that count, or widen CUDA_VISIBLE_DEVICES.")
    return ids[device]


def current_cuda_device() -> int:
    """The CUDA device this process is on (the one a TensorRT builder uses): CuPy's current device, else 0."""
    try:
        import cupy
    except ImportError:
        return 0  # nothing in this process can have changed it from the default
    try:
        return int(cupy.cuda.runtime.getDevice())
    except cupy.cuda.runtime.CUDARuntimeError:
        return 0


def device_env(trt_version: str, device: int = 0) -> DeviceEnv:
    """TensorRT version + name/compute capability of GPU ``device`` + CUDA runtime/driver versions."""
    try:
        import cupy
    except ImportError:
        cupy = None
    if cupy is not None:
        try:
            props = cupy.cuda.runtime.getDeviceProperties(device)
            runtime_version = cupy.cuda.runtime.runtimeGetVersion()
            driver_version = cupy.cuda.runtime.driverGetVersion()
        except cupy.cuda.runtime.CUDARuntimeError as exc:  # no driver, or no GPU with that index
            raise BackendError(f"cannot read the properties of GPU {device} ({exc}).",
                               hint="Pick a GPU index that `nvidia-smi -L` lists, e.g. device=0.") from exc
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        return DeviceEnv(
            tensorrt=str(trt_version), gpu_name=name, compute_capability=f"{props['major']}.{props['minor']}",
            cuda_runtime=_cuda_version(runtime_version), cuda_driver=_cuda_version(driver_version),
        )
    smi = shutil.which("nvidia-smi")
    if smi is None:
        raise BackendError("cannot find the GPU: neither CuPy nor nvidia-smi is available.", hint=CUPY_HINT)
    out = subprocess.run([smi, f"--id={visible_gpu_id(device)}", "--query-gpu=name,compute_cap,driver_version",
                          "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0 or not out.stdout.strip():
        raise BackendError(f"nvidia-smi could not describe GPU {device}: {out.stderr.strip() or out.stdout.strip()}")
    name, cc, driver = (s.strip() for s in out.stdout.strip().splitlines()[0].split(","))
    return DeviceEnv(tensorrt=str(trt_version), gpu_name=name, compute_capability=cc, cuda_driver=driver)


__all__ = ["DEVICE_FORMS", "TRT_INSTALL_HINT", "Device", "current_cuda_device", "device_env", "import_tensorrt",
           "parse_device", "visible_gpu_id"]
