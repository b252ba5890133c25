"""What an exported ONNX file was made from, so a stale export is noticed (no torch here).

The fingerprint hashes every file the stage modules are built from: the
``bodydance`` package and its data (body asset), the tensor contract, the
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
    files = [*package.glob("*.py"), *(package / "data").glob("*.npz"), client / "contract.py",
             *(client / "data" / "templates").glob("*.npz"), *Path(bodydance_export.__file__).parent.rglob("*.py")]
    return sorted(files)


def source_fingerprint() -> str:
    """sha256 over the names and bytes of :func:`export_sources`."""
    digest = hashlib.sha256()
    for path in export_sources():
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
