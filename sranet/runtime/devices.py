"""Devices: the one parser of ``device`` strings every backend takes, the TensorRT / TensorRT-RTX import, and the GPU
facts a plan is tied to (``device_env``). Nothing here imports torch, CuPy or TensorRT at module level.

Device strings: ``"cpu"``, or ``"cuda:N"`` for CUDA GPU N as this process numbers them (``"cuda"`` is
``"cuda:0"``). ``device_env`` asks CuPy where it is installed, else the CUDA driver itself (``libcuda.so.1``, through
ctypes): the driver numbers GPUs exactly as the CUDA runtime that TensorRT uses does (``CUDA_VISIBLE_DEVICES`` with
indices, GPU or MIG UUIDs, and ``CUDA_DEVICE_ORDER``), which ``nvidia-smi``'s PCI-order indices do not. So a build
machine with only TensorRT still records the right GPU, and a machine without an NVIDIA driver is told so before any
plan is read.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import platform
import re
from pathlib import Path
from typing import NamedTuple

from sranet.errors import BackendError, DependencyMissingError, InputError
from sranet.runtime.sidecar import FLAVOUR_MODULES, DeviceEnv

DEVICE_FORMS = "'cpu' or 'cuda:N' (N = GPU index, 'cuda' = 'cuda:0')"
TRT_INSTALL_HINT = ("Install TensorRT on the GPU machine: pip install 'sranet[gpu-cu12]' (CUDA 12 driver) or "
                    "'sranet[gpu-cu13]' (CUDA 13), or use JetPack's TensorRT on a Jetson.")
TRT_RTX_INSTALL_HINT = "Install TensorRT-RTX: pip install 'sranet[trt-rtx]' (tensorrt-rtx-cu12)."
DRIVER_HINT = ("A TensorRT plan runs on an NVIDIA GPU with its driver installed (nvidia-smi lists the GPUs); on a "
               "machine without one, run the .onnx artifact with --device cpu.")
TEGRA_RELEASE = Path("/etc/nv_tegra_release")  # written by JetPack (Linux for Tegra)

# CUdevice_attribute values (CUDA driver API, cuda.h)
_CU_ATTR_CC_MAJOR, _CU_ATTR_CC_MINOR = 75, 76


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


def import_tensorrt(flavour: str = "tensorrt"):
    """``import tensorrt`` (flavour "tensorrt") or ``import tensorrt_rtx`` ("tensorrt-rtx"), or
    DependencyMissingError saying how to install it."""
    module = FLAVOUR_MODULES[flavour]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = "TensorRT-RTX" if flavour == "tensorrt-rtx" else "TensorRT"
        raise DependencyMissingError(f"the {module} package is needed to build or run a {what} plan ({exc}).",
                                     hint=TRT_RTX_INSTALL_HINT if flavour == "tensorrt-rtx" else TRT_INSTALL_HINT
                                     ) from exc


def tensorrt_cuda(module: str) -> str:
    """The CUDA major version an installed TensorRT wheel is built for, from its distribution's name
    (``tensorrt-cu12``, ``tensorrt_rtx_cu12`` -> "12"); "" where the name does not say (JetPack, tar installs)."""
    from importlib import metadata

    for dist in metadata.packages_distributions().get(module, []):
        m = re.search(r"cu(\d+)", dist)
        if m:
            return m.group(1)
    return ""


def _cuda_version(v: int) -> str:
    return f"{v // 1000}.{(v % 1000) // 10}" if v else ""


def is_jetson() -> bool:
    """A Jetson (Linux for Tegra): aarch64 with JetPack's release file. DGX Spark and other aarch64 servers are not."""
    return platform.machine() == "aarch64" and TEGRA_RELEASE.exists()


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


class DriverGpu(NamedTuple):
    """What the CUDA driver says about one GPU (numbered as the CUDA runtime numbers it)."""

    name: str
    compute_capability: str
    pci_bus_id: str
    driver_cuda: str  # the newest CUDA version the driver supports, e.g. "12.8"


def driver_gpu(device: int = 0, *, library: str = "libcuda.so.1") -> DriverGpu:
    """GPU ``device`` as the CUDA driver API sees it (``cuInit``, ``cuDeviceGet``, ...), through ctypes.

    BackendError when there is no driver (``libcuda.so.1`` cannot be loaded), the driver finds no usable GPU, or the
    index is not one of the GPUs this process sees.
    """
    try:
        cuda = ctypes.CDLL(library)
    except OSError as exc:
        raise BackendError(f"no NVIDIA GPU driver on this machine: {library} cannot be loaded ({exc}).",
                           hint=DRIVER_HINT) from exc
    rc = cuda.cuInit(0)
    if rc != 0:
        raise BackendError(f"the NVIDIA driver finds no usable GPU (cuInit returned CUDA error {rc}).",
                           hint=DRIVER_HINT)
    count = ctypes.c_int(0)
    cuda.cuDeviceGetCount(ctypes.byref(count))
    if not 0 <= device < count.value:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise BackendError(f"CUDA device {device} does not exist: this process sees {count.value} GPU(s)"
                           + (f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else "") + ".",
                           hint="Pick a device below that count, e.g. --device cuda:0.")
    handle = ctypes.c_int(0)
    cuda.cuDeviceGet(ctypes.byref(handle), device)
    name = ctypes.create_string_buffer(256)
    cuda.cuDeviceGetName(name, 256, handle)
    major, minor, version = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
    cuda.cuDeviceGetAttribute(ctypes.byref(major), _CU_ATTR_CC_MAJOR, handle)
    cuda.cuDeviceGetAttribute(ctypes.byref(minor), _CU_ATTR_CC_MINOR, handle)
    bus = ctypes.create_string_buffer(64)
    cuda.cuDeviceGetPCIBusId(bus, 64, handle)
    cuda.cuDriverGetVersion(ctypes.byref(version))
    return DriverGpu(name.value.decode(errors="replace"), f"{major.value}.{minor.value}",
                     bus.value.decode(errors="replace"), _cuda_version(version.value))


def device_env(trt_version: str, device: int = 0, *, flavour: str = "tensorrt") -> DeviceEnv:
    """The runtime's flavour and version + name/compute capability of GPU ``device`` + the CUDA version the TensorRT
    build targets and the driver's + the platform. BackendError where there is no such GPU."""
    common = {"tensorrt": str(trt_version), "flavour": flavour, "cuda_runtime": tensorrt_cuda(FLAVOUR_MODULES[flavour]),
              "machine": platform.machine(), "system": platform.system(), "jetson": is_jetson()}
    try:
        import cupy
    except ImportError:
        cupy = None
    if cupy is not None:
        try:
            props = cupy.cuda.runtime.getDeviceProperties(device)
            driver_version = cupy.cuda.runtime.driverGetVersion()
        except cupy.cuda.runtime.CUDARuntimeError as exc:  # no driver, or no GPU with that index
            raise BackendError(f"cannot read the properties of GPU {device} ({exc}).",
                               hint="Pick a GPU index that `nvidia-smi -L` lists, e.g. device=0.") from exc
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        return DeviceEnv(gpu_name=name, compute_capability=f"{props['major']}.{props['minor']}",
                         cuda_driver=_cuda_version(driver_version), **common)
    gpu = driver_gpu(device)
    return DeviceEnv(gpu_name=gpu.name, compute_capability=gpu.compute_capability, cuda_driver=gpu.driver_cuda,
                     **common)


def build_env(trt_version: str, *, flavour: str) -> DeviceEnv:
    """The builder's side of a sidecar. TensorRT builds on (and for) the current GPU; TensorRT-RTX builds ahead of
    time without one, so its sidecar names no GPU (its targets are recorded instead)."""
    if flavour == "tensorrt-rtx":
        return DeviceEnv(tensorrt=str(trt_version), gpu_name="", compute_capability="", flavour=flavour,
                         cuda_runtime=tensorrt_cuda(FLAVOUR_MODULES[flavour]), jetson=is_jetson())
    return device_env(trt_version, current_cuda_device(), flavour=flavour)


__all__ = ["DEVICE_FORMS", "DRIVER_HINT", "TRT_INSTALL_HINT", "TRT_RTX_INSTALL_HINT", "Device", "DriverGpu",
           "build_env", "current_cuda_device", "device_env", "driver_gpu", "import_tensorrt", "is_jetson",
           "parse_device", "tensorrt_cuda"]
