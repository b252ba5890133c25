"""What an exported ONNX file was made from, so a stale export is noticed (no torch here).

The fingerprint hashes every file the stage modules are built from: the
``bodydance`` package's model code (``stages/`` included, ``serving/`` not) and its data (body asset, trained
weights), which generator and plate the export builds (``BODYDANCE_GENERATOR``, ``BODYDANCE_PLATE``), the tensor contract, the
bundled dances (the raster windows are sized by them) and this export package
(its subpackages included).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import bodydance
import bodydance_client
import bodydance_export


def export_sources() -> list:
    package = Path(bodydance.__file__).parent
    client = Path(bodydance_client.__file__).parent
    # The model code (stages/ and the modules they build on), not the serving code beside it.
    model_code = [p for p in package.rglob("*.py") if "serving" not in p.relative_to(package).parts]
    files = [*model_code, *(package / "data").glob("*.npz"), *(package / "data").glob("*.safetensors"),
             client / "contract.py",
             *(client / "data" / "templates").glob("*.npz"), *Path(bodydance_export.__file__).parent.rglob("*.py")]
    return sorted(files)


def source_fingerprint() -> str:
    """sha256 over the generator and plate choices and the names and bytes of :func:`export_sources`."""
    from bodydance.stages.generator_switch import generator_choice, plate_choice

    digest = hashlib.sha256(generator_choice().encode() + b"\0" + plate_choice().encode() + b"\0")
    for path in export_sources():
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
