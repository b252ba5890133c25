"""Dance templates: per-frame SMPL poses, root motion and fps in a small ``.npz`` (never pickled).

File format (version 1), all arrays, read with ``allow_pickle=False``:

* ``format``: the string ``"bodydance-template"``
* ``version``: int, 1
* ``name``: str, at most 64 characters
* ``fps``: float in [1, 240]
* ``poses``: float32 ``[T, 24, 3]`` axis-angle radians, SMPL joint order, joint 0 global
* ``translations``: float32 ``[T, 3]`` metres, root offset from the first frame
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import zipfile
import zlib
from importlib import resources
from pathlib import Path
from typing import Dict, Union

import numpy as np

from bodydance_client.contract import NUM_JOINTS
from bodydance_client.errors import BadTemplateError

FORMAT = "bodydance-template"
VERSION = 1
MAX_FILE_BYTES = 64 * 2**20
MAX_FRAMES = 18_000  # ten minutes at 30 fps
FPS_RANGE = (1.0, 240.0)
MAX_ANGLE_RAD = 2 * np.pi
MAX_TRANSLATION_M = 10.0
MAX_NAME = 64
_KEYS = ("format", "version", "name", "fps", "poses", "translations")


@dataclasses.dataclass(frozen=True)
class Template:
    name: str
    fps: float
    poses: np.ndarray  # [T, 24, 3] float32 radians
    translations: np.ndarray  # [T, 3] float32 metres

    @property
    def num_frames(self) -> int:
        return int(self.poses.shape[0])

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps


def validate(template: Template, source: str = "template") -> Template:
    """Raise BadTemplateError naming the first problem; return the template with float32 arrays."""
    def bad(problem: str):
        raise BadTemplateError(f"{source}: {problem}")

    if not isinstance(template.name, str) or not template.name or len(template.name) > MAX_NAME:
        bad(f"name must be 1-{MAX_NAME} characters")
    try:
        fps = float(template.fps)
    except (TypeError, ValueError):
        bad(f"fps {template.fps!r} is not a number")
    if not (FPS_RANGE[0] <= fps <= FPS_RANGE[1]):
        bad(f"fps {fps:g} is outside {FPS_RANGE[0]:g}-{FPS_RANGE[1]:g}")
    poses, translations = np.asarray(template.poses), np.asarray(template.translations)
    for key, array in (("poses", poses), ("translations", translations)):
        if not np.issubdtype(array.dtype, np.floating):
            bad(f"{key} must hold floating-point numbers, not {array.dtype}")
    if poses.ndim != 3 or poses.shape[1:] != (NUM_JOINTS, 3):
        bad(f"poses must be [frames, {NUM_JOINTS}, 3] (SMPL joints, axis-angle); got {list(poses.shape)}")
    frames = poses.shape[0]
    if frames == 0:
        bad("has zero frames")
    if frames > MAX_FRAMES:
        bad(f"has {frames} frames; the limit is {MAX_FRAMES}")
    if translations.shape != (frames, 3):
        bad(f"translations must be [{frames}, 3] to match poses; got {list(translations.shape)}")
    for key, array in (("poses", poses), ("translations", translations)):
        if not np.isfinite(array).all():
            bad(f"{key} contains NaN or infinite values")
    if np.abs(poses).max() > MAX_ANGLE_RAD:
        bad(f"poses contain joint angles beyond {MAX_ANGLE_RAD:.2f} rad")
    if np.abs(translations).max() > MAX_TRANSLATION_M:
        bad(f"translations move the body more than {MAX_TRANSLATION_M:g} m")
    return Template(template.name, fps, poses.astype(np.float32), translations.astype(np.float32))


def _scalar(data, key: str, source: str):
    value = data[key]
    if value.shape != ():
        raise BadTemplateError(f"{source}: {key} must be a single value")
    return value.item()


def load_template(path: Union[str, os.PathLike]) -> Template:
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise BadTemplateError(f"{source}: no such template file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise BadTemplateError(f"{source}: file is {size} bytes; the limit is {MAX_FILE_BYTES}")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in _KEYS if k not in data.files]
            if missing:
                raise BadTemplateError(f"{source}: missing {', '.join(missing)}; is this a BodyDance template?")
            if _scalar(data, "format", source) != FORMAT:
                raise BadTemplateError(f"{source}: format marker is not {FORMAT!r}")
            version = _scalar(data, "version", source)
            if not isinstance(version, int) or version != VERSION:
                raise BadTemplateError(f"{source}: unknown version {version!r}; this SDK reads version {VERSION}")
            template = Template(str(_scalar(data, "name", source)), _scalar(data, "fps", source),
                                data["poses"], data["translations"])
    except BadTemplateError:
        raise
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise BadTemplateError(f"{source}: contains pickled objects, which are refused") from err
        raise BadTemplateError(f"{source}: not a readable template ({err})") from err
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, TypeError, NotImplementedError,
            RuntimeError) as err:
        # zipfile raises NotImplementedError (unknown compression) and RuntimeError (encrypted member)
        # on crafted files; the fuzz test found both.
        raise BadTemplateError(f"{source}: not a valid .npz file or truncated ({type(err).__name__}: {err})") from err
    return validate(template, source)


def save_template(template: Template, path: Union[str, os.PathLike]) -> Path:
    """Validate and write atomically (a temp file renamed into place)."""
    template = validate(template)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.partial")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, format=np.array(FORMAT), version=np.array(VERSION), name=np.array(template.name),
                                fps=np.array(template.fps, np.float32), poses=template.poses,
                                translations=template.translations)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def bundled_templates() -> Dict[str, Path]:
    folder = resources.files("bodydance_client") / "data" / "templates"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".npz")}


def load_bundled(name: str) -> Template:
    available = bundled_templates()
    if name not in available:
        raise BadTemplateError(f"no bundled template {name!r}; available: {', '.join(sorted(available))}")
    return load_template(available[name])


def resolve_template(name_or_path: Union[str, os.PathLike, Template]) -> Template:
    """A Template, a bundled template's name, or a path to a ``.npz`` file."""
    if isinstance(name_or_path, Template):
        return name_or_path
    text = str(name_or_path)
    if text.endswith(".npz") or os.sep in text:
        return load_template(text)
    return load_bundled(text)
