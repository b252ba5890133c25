"""docker-compose.yml for the GPU profile, validated offline by Debian's docker-compose 1.29 (no engine)."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose():
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: scripts/install_system_deps.sh installs it"
    run = subprocess.run([binary, "-f", str(ROOT / "docker-compose.yml"), "config"], capture_output=True,
                         text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    return yaml.safe_load(run.stdout)


def _port(entry):
    """(container port, host ip or '') from either compose port syntax."""
    if isinstance(entry, dict):
        return int(entry["target"]), entry.get("host_ip", "")
    parts = str(entry).split("/")[0].split(":")
    return int(parts[-1]), parts[0] if len(parts) == 3 else ""


def _gpu(service):
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    return any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)


def test_engines_are_built_before_triton_starts(compose):
    builder, triton = compose["services"]["engine-builder"], compose["services"]["triton"]
    assert triton["depends_on"]["engine-builder"]["condition"] == "service_completed_successfully"
    assert "tensorrt_build" in builder["command"]
    assert _gpu(builder) and _gpu(triton)
    assert "model_repository/gpu" in triton["command"]


def test_triton_ports_health_and_shared_memory(compose):
    triton = compose["services"]["triton"]
    assert "/v2/health/ready" in " ".join(triton["healthcheck"]["test"])
    ports = dict(_port(p) for p in triton["ports"])
    assert {8000, 8001, 8002} <= set(ports)
    assert ports[8002] == "127.0.0.1"  # metrics never beyond this host
    shm = str(triton["shm_size"]).lower()
    assert shm.endswith("gb") or int(shm) >= 2**30
