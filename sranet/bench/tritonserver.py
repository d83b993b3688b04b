"""Start a real Triton Inference Server on 127.0.0.1 for a model repository (the Triton tests and benchmark).

The server is the ``tritonserver`` binary that the ``nvidia-pytriton`` wheel carries, with its Python backend (no
ONNX Runtime or TensorRT backend: those ship in NVIDIA's containers). It runs from a Python environment of its own,
the server environment (``$SRANET_TRITON_ENV``, default ``.triton/env`` of the repository, which ``make
triton-server`` creates): the wheel, numpy < 2, onnx, onnxruntime and sranet (editable, no other dependencies).

Why a second environment: the Python backend's stub embeds the interpreter and takes its environment from the first
``python3`` on ``PATH`` (``PYTHONPATH`` is not read), and the stub of this wheel (Triton 2.51) hands numpy 2 arrays
back as empty tensors ("output tensor shape does not match size of output"), which is why the wheel pins numpy < 2
while sranet's own environment has numpy 2. The server gets the environment's ``bin`` folder first on ``PATH``, the
wheel's libraries on ``LD_LIBRARY_PATH``, and a private backend folder with the stub for the environment's Python.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from sranet.errors import BackendError, DependencyMissingError

ENV_VAR = "SRANET_TRITON_ENV"
REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_HINT = ("Create the server environment with `make triton-server` (a venv in .triton/env with "
                "nvidia-pytriton, numpy<2, onnx, onnxruntime and sranet), or point $SRANET_TRITON_ENV at one.")


@dataclass(frozen=True)
class ServerEnv:
    """The server environment: its root (a venv), its Python version, and the wheel's server folder."""

    root: Path
    python_version: str
    tritonserver: Path  # holds bin/tritonserver, backends/python, python_backend_stubs

    @property
    def libs(self) -> Path:
        return self.tritonserver.parent.parent / "nvidia_pytriton.libs"


def find_server_env() -> ServerEnv:
    """``$SRANET_TRITON_ENV`` or ``.triton/env``, with the ``nvidia-pytriton`` wheel installed in it."""
    root = Path(os.environ.get(ENV_VAR) or REPO_ROOT / ".triton" / "env")
    for lib in sorted(root.glob("lib/python3.*/site-packages")):
        folder = lib / "pytriton" / "tritonserver"
        if (folder / "bin" / "tritonserver").is_file() and (root / "bin" / "python3").exists():
            return ServerEnv(root, lib.parent.name.removeprefix("python"), folder)
    raise DependencyMissingError(f"no Triton server environment at {root} (a venv with the nvidia-pytriton wheel).",
                                 hint=INSTALL_HINT)


def stub_problem(env: ServerEnv) -> str | None:
    """Why the Python backend's stub cannot run the environment's Python here, or None."""
    version = env.python_version
    stub = env.tritonserver / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        return f"the wheel has no Python backend stub for Python {version}"
    import ctypes.util

    if ctypes.util.find_library(f"python{version}") is None:
        return (f"the Python backend's stub needs the shared library libpython{version}.so.1.0 (Debian: "
                f"apt-get install libpython{version})")
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class TritonServer:
    """A running ``tritonserver`` (``start_tritonserver``); ``stop()`` ends it and removes its private folders."""

    process: subprocess.Popen
    http_port: int
    grpc_port: int
    log_path: Path
    workdir: Path
    extra: dict = field(default_factory=dict)

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_tritonserver(repo: str | os.PathLike, *, timeout_s: float = 180.0,
                       server_env: ServerEnv | None = None) -> TritonServer:
    """Start ``tritonserver`` on 127.0.0.1 (HTTP and gRPC on free ports, no metrics) for ``repo`` and wait until it is
    ready (every model loaded). BackendError with the server's log when it exits or is not ready in ``timeout_s``."""
    server_env = server_env or find_server_env()
    problem = stub_problem(server_env)
    if problem:
        raise DependencyMissingError(f"Triton's Python backend cannot run here: {problem}.", hint=INSTALL_HINT)
    folder = server_env.tritonserver
    workdir = Path(tempfile.mkdtemp(prefix="sranet_triton_"))
    backends = workdir / "backends" / "python"
    shutil.copytree(folder / "backends" / "python", backends, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(folder / "python_backend_stubs" / server_env.python_version / "triton_python_backend_stub", backends)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(server_env.libs), env.get("LD_LIBRARY_PATH", "")) if p)
    env["PATH"] = os.pathsep.join([str(server_env.root / "bin"), env.get("PATH", "")])  # the stub's Python
    http, grpc = free_port(), free_port()
    log_path = workdir / "tritonserver.log"
    cmd = [str(folder / "bin" / "tritonserver"), f"--model-repository={Path(repo).resolve()}",
           f"--backend-directory={workdir / 'backends'}", "--http-address=127.0.0.1", f"--http-port={http}",
           "--grpc-address=127.0.0.1", f"--grpc-port={grpc}", "--allow-metrics=false", "--exit-on-error=true",
           "--strict-readiness=true", "--disable-auto-complete-config"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir,
                                   start_new_session=True)
    server = TritonServer(process, http, grpc, log_path, workdir)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = server.log_tail()
            server.stop()
            raise BackendError(f"tritonserver exited with code {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"http://{server.http_url}/v2/health/ready", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(0.25)
    tail = server.log_tail()
    server.stop()
    raise BackendError(f"tritonserver was not ready within {timeout_s:.0f} s:\n{tail}")


__all__ = ["ENV_VAR", "INSTALL_HINT", "ServerEnv", "TritonServer", "find_server_env", "free_port",
           "start_tritonserver", "stub_problem"]
