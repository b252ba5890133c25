"""Write (or check) the model repository tree for a deployment profile.

``model_repository/<profile>/<model>/config.pbtxt`` plus the version folder
``1/``: a two-line ``model.py`` for python-backend models (the code lives in
this package), ``model.onnx`` / ``model.plan`` as build outputs.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Dict, Optional

import typer

from bodydance.serving.model_configs import PROFILES, describe_models, render, to_model_config

REPOSITORY_ROOT = Path(__file__).resolve().parents[2] / "model_repository"

_PYTHON_MODEL = {
    "onnx": "bodydance.serving.onnx_stage_model",
    "python": "bodydance.serving.reconstruction_model",
    "edge": "bodydance.serving.edge_model",
}


def expected_files(profile: str, resolution: Optional[int] = None) -> Dict[str, str]:
    """Relative path -> content of every generated file of ``profile`` (at another resolution if given)."""
    files = {}
    for desc in describe_models():
        cfg = to_model_config(desc, profile, resolution)
        name = desc.contract.name
        files[f"{name}/config.pbtxt"] = render(cfg)
        if cfg.backend == "python":
            module = _PYTHON_MODEL[desc.kind]
            files[f"{name}/1/model.py"] = (
                "# Generated: the model's code lives in the bodydance package.\n"
                f"from {module} import TritonPythonModel  # noqa: F401\n")
        else:
            files[f"{name}/1/.gitkeep"] = ""
    return files


def write(root: Path, profile: str) -> None:
    for rel, content in expected_files(profile).items():
        path = root / profile / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def drift(root: Path, profile: str) -> str:
    """Unified diff between the generator and the files under ``root`` ('' when in sync)."""
    out = []
    for rel, content in expected_files(profile).items():
        path = root / profile / rel
        have = path.read_text() if path.exists() else ""
        if have != content:
            out.extend(difflib.unified_diff(have.splitlines(True), content.splitlines(True),
                                            f"committed/{profile}/{rel}", f"generated/{profile}/{rel}"))
    return "".join(out)


def main(root: Path = typer.Option(REPOSITORY_ROOT), check: bool = typer.Option(False, help="fail if files drift")):
    """Generate every config.pbtxt of both profiles (or check that the committed ones match)."""
    for profile in PROFILES:
        if check:
            diff = drift(root, profile)
            if diff:
                sys.stdout.write(diff)
                raise typer.Exit(1)
        else:
            write(root, profile)


if __name__ == "__main__":
    typer.run(main)
