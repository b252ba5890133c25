"""The embedded CPU Triton server: the ``tritonserver`` binary shipped in the nvidia-pytriton wheel.

Doing by hand what PyTriton does at start-up: the python backend needs the
``triton_python_backend_stub`` built for the running Python copied next to it,
and the binary needs ``nvidia_pytriton.libs`` on the library path. The stub
then runs inside this interpreter's environment, so python-backend models
import onnxruntime, mediapipe and this package.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import List, Optional

from bodydance_client.errors import ServerStartError

DEFAULT_HOST = "127.0.0.1"
_CACHE = Path(os.environ.get("BODYDANCE_CACHE", Path.home() / ".cache" / "bodydance"))


def _pytriton_dist() -> Path:
    try:
        import pytriton
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ServerStartError("nvidia-pytriton is not installed; install the 'server' extra "
                               "(pip install '.[server]')") from err
    dist = Path(pytriton.__file__).parent / "tritonserver"
    if not (dist / "bin" / "tritonserver").exists():
        raise ServerStartError(f"no tritonserver binary under {dist}")
    return dist


def prepare_server_dist() -> Path:
    """A runnable copy of the wheel's tritonserver with this Python's stub in place (cached)."""
    dist = _pytriton_dist()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise ServerStartError(f"the nvidia-pytriton wheel has no python backend stub for Python {version}")
    target = _CACHE / f"tritonserver-py{version}-{abs(hash(str(dist))) % 10**8}"
    marker = target / ".ready"
    if not marker.exists():
        _CACHE.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=_CACHE))
        shutil.copytree(dist, tmp / "dist", ignore=shutil.ignore_patterns("python_backend_stubs"))
        shutil.copy2(stub, tmp / "dist" / "backends" / "python" / "triton_python_backend_stub")
        (tmp / "dist" / ".ready").touch()
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp / "dist", target)
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def free_port(host: str = DEFAULT_HOST) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _server_env() -> dict:
    import pytriton

    env = os.environ.copy()
    libs = Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs"
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(libs), env.get("LD_LIBRARY_PATH")]))
    # The stub embeds libpython; it finds this environment's packages through PATH and PYTHONPATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    paths = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]] + [p for p in sys.path if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


_LOAD_ERROR = re.compile(r"(failed to load|error|Error|E\d{4} )")


class EmbeddedTritonServer:
    """Start, wait for and stop a local tritonserver; use as a context manager.

    Binds loopback unless ``host`` says otherwise. Ports default to free ones.
    A model that fails to load ends start-up with :class:`ServerStartError`
    carrying Triton's own message, not a timeout.
    """

    def __init__(self, repository: Path, *, host: str = DEFAULT_HOST, grpc_port: Optional[int] = None,
                 http_port: Optional[int] = None, metrics_port: Optional[int] = None,
                 log_path: Optional[Path] = None, startup_timeout_s: float = 180.0,
                 exit_timeout_s: int = 10, extra_args: Optional[List[str]] = None):
        self.repository = Path(repository).resolve()
        self.host = host
        self.grpc_port = grpc_port or free_port(host)
        self.http_port = http_port or free_port(host)
        self.metrics_port = metrics_port or free_port(host)
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkdtemp(prefix="bodydance-")) / "tritonserver.log"
        self.startup_timeout_s = startup_timeout_s
        self.exit_timeout_s = exit_timeout_s
        self.extra_args = list(extra_args or [])
        self.process: Optional[subprocess.Popen] = None

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def command(self, dist: Path) -> List[str]:
        return [
            str(dist / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={dist / 'backends'}",
            f"--cache-directory={dist / 'caches'}",
            f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
            f"--http-address={self.host}", f"--http-port={self.http_port}",
            f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
            "--allow-cpu-metrics=false", "--allow-gpu-metrics=false",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            "--strict-readiness=true", "--exit-on-error=true",
        ] + self.extra_args

    def start(self) -> "EmbeddedTritonServer":
        if not self.repository.is_dir():
            raise ServerStartError(f"model repository {self.repository} does not exist")
        dist = prepare_server_dist()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        try:
            self.process = subprocess.Popen(self.command(dist), stdout=log, stderr=subprocess.STDOUT,
                                            env=_server_env(), start_new_session=True)
        finally:
            log.close()
        self._wait_ready()
        return self

    def _log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        errors = [line for line in text if _LOAD_ERROR.search(line)]
        return "\n".join((errors or text)[-lines:])

    def _wait_ready(self) -> None:
        import tritonclient.grpc as grpcclient

        deadline = time.monotonic() + self.startup_timeout_s
        client = grpcclient.InferenceServerClient(self.grpc_url)
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise ServerStartError(
                        f"tritonserver exited with code {self.process.returncode} during start-up "
                        f"(log: {self.log_path}):\n{self._log_tail()}")
                try:
                    if client.is_server_ready():
                        return
                except Exception:  # not listening yet
                    pass
                time.sleep(0.25)
        finally:
            client.close()
        self.stop()
        raise ServerStartError(f"tritonserver not ready after {self.startup_timeout_s:.0f} s "
                               f"(log: {self.log_path}):\n{self._log_tail()}")

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM (Triton drains in-flight requests), then SIGKILL the whole process group."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=self.exit_timeout_s + 10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:  # python-backend stubs share the group; never leave them behind
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.process.poll() is None:
            self.process.wait(timeout=10)

    def kill(self) -> None:
        """Hard kill, for fault tests: no draining."""
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=10)

    def __enter__(self) -> "EmbeddedTritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
