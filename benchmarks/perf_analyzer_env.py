"""Find the perf_analyzer that ships in the tritonclient wheel and the environment it needs to run.

``tritonclient==2.50.0``'s manylinux wheel carries a ``perf_analyzer``
binary (installed as a wheel data script, i.e. into the venv's ``bin/``;
other builds put it under ``site-packages/tritonclient/bin``). It links
against Debian's ``libb64-0d`` (``scripts/install_system_deps.sh``) and
``libcudart.so.12``, which the ``nvidia-cuda-runtime-cu12`` wheel provides
(``site-packages/nvidia/cuda_runtime/lib``, added to ``LD_LIBRARY_PATH``
here). No GPU is needed for gRPC/HTTP benchmarking.

    python benchmarks/perf_analyzer_env.py      # prints where things are and checks that it runs
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Dict, List, Optional, Tuple

BINARY_NAME = "perf_analyzer"


class PerfAnalyzerUnavailable(RuntimeError):
    """perf_analyzer (or a library it needs) is missing; the message says what to install."""


def _site_packages() -> List[Path]:
    roots = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    roots += [p for p in sys.path if p.endswith("site-packages")]
    seen, found = set(), []
    for root in roots:
        path = Path(root)
        if path.is_dir() and path.resolve() not in seen:
            seen.add(path.resolve())
            found.append(path)
    return found


def _from_wheel_record() -> Optional[Path]:
    """Where pip put the ``perf_analyzer`` file listed in tritonclient's RECORD, if anywhere."""
    try:
        dist = importlib.metadata.distribution("tritonclient")
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if entry.name == BINARY_NAME:
            path = Path(dist.locate_file(entry)).resolve()
            if path.is_file():
                return path
    return None


def candidate_binaries() -> List[Path]:
    """Places to look, best first: $PERF_ANALYZER, the wheel's RECORD, tritonclient/bin, the venv, PATH."""
    found: List[Path] = []
    if os.environ.get("PERF_ANALYZER"):
        found.append(Path(os.environ["PERF_ANALYZER"]))
    record = _from_wheel_record()
    if record:
        found.append(record)
    found += [sp / "tritonclient" / "bin" / BINARY_NAME for sp in _site_packages()]
    found.append(Path(sys.executable).parent / BINARY_NAME)
    on_path = shutil.which(BINARY_NAME)
    if on_path:
        found.append(Path(on_path))
    return found


def find_perf_analyzer() -> Path:
    for path in candidate_binaries():
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise PerfAnalyzerUnavailable(
        "perf_analyzer not found: it ships in the manylinux wheel of tritonclient==2.50.0 "
        "(pip install 'tritonclient[grpc]==2.50.0'; newer wheels need glibc 2.38), or set $PERF_ANALYZER. "
        f"Looked in: {', '.join(str(p) for p in candidate_binaries()) or 'nowhere'}")


def cuda_runtime_lib_dir() -> Path:
    """``.../site-packages/nvidia/cuda_runtime/lib`` holding ``libcudart.so.12``."""
    dirs = []
    try:
        spec = importlib.util.find_spec("nvidia.cuda_runtime")
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        dirs += [Path(p) / "lib" for p in (spec.submodule_search_locations or [])]
    dirs += [sp / "nvidia" / "cuda_runtime" / "lib" for sp in _site_packages()]
    for lib_dir in dirs:
        if (lib_dir / "libcudart.so.12").is_file():
            return lib_dir
    raise PerfAnalyzerUnavailable(
        "libcudart.so.12 not found: perf_analyzer links against it even without a GPU; "
        "pip install nvidia-cuda-runtime-cu12 (in the project's dev extra)")


def perf_analyzer_env(base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """``base`` (default: this process's environment) with the CUDA runtime wheel's lib dir first on LD_LIBRARY_PATH."""
    env = dict(os.environ if base is None else base)
    lib_dir = str(cuda_runtime_lib_dir())
    rest = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and p != lib_dir]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([lib_dir] + rest)
    return env


_MISSING_LIB = re.compile(r"error while loading shared libraries: (\S+?):")
_FIXES = {
    "libb64": "install Debian's libb64-0d (scripts/install_system_deps.sh)",
    "libcudart": "pip install nvidia-cuda-runtime-cu12",
}


def explain_failure(output: str) -> Optional[str]:
    """A sentence naming the missing shared library and its fix, if ``output`` is a loader error."""
    m = _MISSING_LIB.search(output)
    if not m:
        return None
    lib = m.group(1)
    fix = next((text for prefix, text in _FIXES.items() if lib.startswith(prefix)), "install the package providing it")
    return f"perf_analyzer cannot start: {lib} is missing; {fix}"


def perf_analyzer_command() -> Tuple[Path, Dict[str, str]]:
    """The binary and the environment to run it with; raises :class:`PerfAnalyzerUnavailable` if it cannot start."""
    binary, env = find_perf_analyzer(), perf_analyzer_env()
    run = subprocess.run([str(binary), "--version"], capture_output=True, text=True, env=env, timeout=60)
    output = run.stdout + run.stderr
    if run.returncode != 0 or "Perf Analyzer Version" not in output:
        raise PerfAnalyzerUnavailable(explain_failure(output) or f"{binary} --version failed: {output.strip()[-500:]}")
    return binary, env


def main() -> int:
    try:
        binary, env = perf_analyzer_command()
    except PerfAnalyzerUnavailable as err:
        print(f"perf_analyzer_env: {err}", file=sys.stderr)
        return 1
    print(f"perf_analyzer   {binary}")
    print(f"LD_LIBRARY_PATH {env['LD_LIBRARY_PATH']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
