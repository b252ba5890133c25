"""docker-compose.yml (GPU profile), validated and normalised offline by Debian's docker-compose 1.29.

No Docker engine runs here: ``docker-compose config`` parses, validates and
interpolates the file without one, and prints the normalised YAML (1.29 has
no ``--format json``), which these tests read with PyYAML.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML (the dev extra) reads docker-compose's normalised output")

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
BINARY = shutil.which("docker-compose")
pytestmark = pytest.mark.skipif(
    BINARY is None, reason="the docker-compose binary is absent (scripts/install_system_deps.sh installs it)")


def _config(*args, env=None):
    environ = {k: v for k, v in os.environ.items() if k != "BODYDANCE_ONNX_REPOSITORY"}
    environ.update(env or {})
    return subprocess.run([BINARY, "-f", str(COMPOSE_FILE), "config", *args], capture_output=True, text=True,
                          cwd=ROOT, env=environ, timeout=120)


@pytest.fixture(scope="module")
def services():
    run = _config()
    assert run.returncode == 0, run.stderr
    return yaml.safe_load(run.stdout)["services"]


def _ports(service):
    """{container port: host ip ('' = all interfaces)} from either of compose's port syntaxes."""
    found = {}
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            found[int(entry["target"])] = entry.get("host_ip", "")
        else:
            parts = str(entry).split("/")[0].split(":")
            found[int(parts[-1])] = parts[0] if len(parts) == 3 else ""
    return found


def _has_gpu(service):
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    return any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)


def test_quiet_validation_passes_without_an_engine():
    run = _config("-q")
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""


def test_both_services_reserve_an_nvidia_gpu(services):
    assert set(services) == {"engine-builder", "triton"}
    assert _has_gpu(services["engine-builder"]) and _has_gpu(services["triton"])


def test_triton_starts_only_after_the_engines_are_built(services):
    triton, builder = services["triton"], services["engine-builder"]
    assert triton["depends_on"]["engine-builder"]["condition"] == "service_completed_successfully"
    command = " ".join(builder["command"])
    assert "python -m bodydance_export.tensorrt_build" in command
    assert "--gpu-repository model_repository/gpu" in command
    assert builder["image"].startswith("nvcr.io/nvidia/tensorrt:")
    assert "/workspace/bodydance/export" in builder["environment"]["PYTHONPATH"]
    assert builder.get("restart") == "no"


def test_the_onnx_source_defaults_to_a_512_export_and_can_be_overridden():
    default = yaml.safe_load(_config().stdout)["services"]["engine-builder"]["command"]
    assert "--cpu-repository build/onnx-512" in " ".join(default)
    run = _config(env={"BODYDANCE_ONNX_REPOSITORY": "elsewhere/onnx"})
    assert run.returncode == 0, run.stderr
    assert "--cpu-repository elsewhere/onnx" in " ".join(yaml.safe_load(run.stdout)["services"]["engine-builder"]["command"])


def test_triton_serves_the_gpu_repository_from_its_own_image(services):
    triton = services["triton"]
    assert triton["build"]["dockerfile"] == "docker/triton.Dockerfile"
    assert "--model-repository=/models" in triton["command"]
    assert any(v.endswith("model_repository/gpu:/models:ro") for v in triton["volumes"])
    dockerfile = (ROOT / "docker" / "triton.Dockerfile").read_text()
    assert "FROM nvcr.io/nvidia/tritonserver:" in dockerfile and ".[server]" in dockerfile
    assert "curl" in dockerfile  # the health check runs curl inside this image


def test_health_check_asks_triton_for_readiness(services):
    health = services["triton"]["healthcheck"]
    test = health["test"]
    assert test[0] in ("CMD", "CMD-SHELL")
    assert "curl -fsS http://localhost:8000/v2/health/ready" in " ".join(test[1:])
    assert services["triton"]["restart"] == "unless-stopped"


def test_metrics_stay_on_this_host_while_grpc_and_http_are_published(services):
    ports = _ports(services["triton"])
    assert ports[8002] == "127.0.0.1"
    assert ports[8000] in ("", "0.0.0.0") and ports[8001] in ("", "0.0.0.0")


def test_shared_memory_is_sized_for_the_python_backend(services):
    shm = str(services["triton"]["shm_size"]).lower()
    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    size = int(shm.rstrip("bkmg")) * units.get(shm.rstrip("b")[-1], 1)
    assert size >= 1 * 2**30
