"""Locating perf_analyzer from the tritonclient wheel and the environment it needs to start."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import perf_analyzer_env as pae  # noqa: E402


def test_the_wheels_perf_analyzer_is_found_and_starts():
    binary = pae.find_perf_analyzer()  # the tritonclient==2.50.0 wheel ships it; setup installs it
    lib_dir = pae.cuda_runtime_lib_dir()
    assert (lib_dir / "libcudart.so.12").is_file()
    env = pae.perf_analyzer_env({"LD_LIBRARY_PATH": "/opt/x"})
    assert env["LD_LIBRARY_PATH"].split(":") == [str(lib_dir), "/opt/x"]
    found, env = pae.perf_analyzer_command()  # runs `perf_analyzer --version` with that environment
    assert found == binary and str(lib_dir) in env["LD_LIBRARY_PATH"]


def test_an_explicit_binary_wins(tmp_path, monkeypatch):
    fake = tmp_path / "perf_analyzer"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PERF_ANALYZER", str(fake))
    assert pae.find_perf_analyzer() == fake


def test_loader_errors_name_their_fix():
    text = "perf_analyzer: error while loading shared libraries: libb64.so.0d: cannot open shared object file"
    assert "libb64-0d" in pae.explain_failure(text) and "install_system_deps" in pae.explain_failure(text)
    text = "perf_analyzer: error while loading shared libraries: libcudart.so.12: cannot open shared object file"
    assert "nvidia-cuda-runtime-cu12" in pae.explain_failure(text)
    assert pae.explain_failure("Perf Analyzer Version 2.50") is None
