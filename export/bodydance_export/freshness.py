"""Keep a model repository's ONNX stages current: find stale exports, re-export them, or fill a new repository.

Torch-free to import: :func:`stale_onnx` only hashes sources, and the export
itself (:mod:`bodydance_export.pipeline`, the 'export' extra) is imported only
when something has to be exported.
"""

from __future__ import annotations

import json
from pathlib import Path

from bodydance.serving.model_configs import RESOLUTION, onnx_stage_names
from bodydance.serving.repository import expected_files
from bodydance_export.fingerprint import source_fingerprint


def stale_onnx(repository: Path) -> list:
    """ONNX stages that are missing, or were exported from other sources than the ones installed now."""
    current = source_fingerprint()
    stale = []
    for name in onnx_stage_names():
        version = repository / name / "1"
        report = version / "export_report.json"
        made_from = json.loads(report.read_text()).get("source_fingerprint") if report.exists() else None
        if not (version / "model.onnx").exists() or made_from != current:
            stale.append(name)
    return stale


def ensure_exported(repository: Path, log=print) -> None:
    """Export the ONNX stages into ``repository`` when any is missing or stale (needs the 'export' extra)."""
    stale = stale_onnx(repository)
    if not stale:
        return
    log(f"exporting {', '.join(stale)} (missing, or made from older sources)")
    from bodydance_export.pipeline import export_all

    export_all(repository, RESOLUTION["cpu"])


def build_cpu_repository(root: Path, resolution: int) -> Path:
    """A complete cpu repository at another working resolution (benchmarks): configs, shims, ONNX."""
    for rel, content in expected_files("cpu", resolution).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    from bodydance_export.pipeline import export_all

    export_all(root, resolution, fp16_check=False)
    return root
