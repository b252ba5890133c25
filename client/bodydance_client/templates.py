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
import math
import numbers
import os
import tempfile
import zipfile
import zlib
from importlib import resources
from pathlib import Path
from typing import Dict, Union

import numpy as np
from numpy.lib import format as fmt

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
# Bounds what a crafted file can make the loader allocate: each member's declared
# (uncompressed) size and the array size its .npy header claims.
MAX_MEMBER_BYTES = 64 * 2**20
MAX_MEMBERS = 32
_KEYS = ("format", "version", "name", "fps", "poses", "translations")
_ZIP_MAGIC = b"PK\x03\x04"


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

    if not isinstance(template.name, str):
        bad(f"name must be text, not {type(template.name).__name__}")
    if not template.name or len(template.name) > MAX_NAME:
        bad(f"name is {len(template.name)} characters long; it must be 1-{MAX_NAME}")
    if not template.name.isprintable():
        bad("name contains control characters")
    fps = template.fps
    if isinstance(fps, np.ndarray) and fps.shape == ():
        fps = fps.item()
    if isinstance(fps, (bool, np.bool_)) or not isinstance(fps, (numbers.Real, np.integer, np.floating)):
        bad(f"fps {template.fps!r} is not a number")
    fps = float(fps)
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
    angles = np.linalg.norm(poses.astype(np.float64), axis=-1)
    if angles.max() > MAX_ANGLE_RAD:
        frame, joint = np.unravel_index(int(angles.argmax()), angles.shape)
        bad(f"poses contain absurd joint angles ({angles.max():.3g} rad at frame {frame}, joint {joint}; "
            f"the limit is {MAX_ANGLE_RAD:.2f} rad)")
    offsets = np.linalg.norm(translations.astype(np.float64), axis=-1)
    if offsets.max() > MAX_TRANSLATION_M:
        bad(f"translations move the body {offsets.max():.3g} m; the limit is {MAX_TRANSLATION_M:g} m")
    return Template(template.name, fps, poses.astype(np.float32), translations.astype(np.float32))


def _scalar(data, key: str, source: str):
    value = data[key]
    if value.shape != ():
        raise BadTemplateError(f"{source}: {key} must be a single value")
    return value.item()


def _member(names, key: str):
    """The archive member np.load reads for ``key`` (``key`` itself or ``key.npy``), or None."""
    if key in names:
        return key
    return key + ".npy" if key + ".npy" in names else None


def _preflight(path: Path, source: str) -> None:
    """Check the zip structure and every .npy header before np.load allocates anything.

    np.load allocates the array a header claims before reading its data, so a
    tiny file claiming a [10**12, 24, 3] array would exhaust memory.
    """
    with open(path, "rb") as f:
        if f.read(len(_ZIP_MAGIC)) != _ZIP_MAGIC:
            raise BadTemplateError(f"{source}: not a .npz template (not a zip archive)")
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise BadTemplateError(f"{source}: archive has {len(infos)} members; a template has {len(_KEYS)}")
        for info in infos:
            if info.file_size > MAX_MEMBER_BYTES:
                raise BadTemplateError(f"{source}: member {info.filename!r} unpacks to {info.file_size} bytes; "
                                       f"the limit is {MAX_MEMBER_BYTES}")
        names = set(archive.namelist())
        missing = [key for key in _KEYS if _member(names, key) is None]
        if missing:
            raise BadTemplateError(f"{source}: missing key(s) {', '.join(missing)}; is this a BodyDance template?")
        for key in _KEYS:
            with archive.open(_member(names, key)) as member:
                try:
                    version = fmt.read_magic(member)
                except ValueError as err:
                    raise BadTemplateError(f"{source}: {key} is not a .npy array") from err
                if version == (1, 0):
                    shape, _, dtype = fmt.read_array_header_1_0(member)
                elif version == (2, 0):
                    shape, _, dtype = fmt.read_array_header_2_0(member)
                else:
                    raise BadTemplateError(f"{source}: {key} uses unsupported .npy version {version}")
            if dtype.hasobject:
                raise BadTemplateError(f"{source}: {key} contains pickled objects, which are refused")
            if dtype.itemsize <= 0 and dtype.kind not in "US":
                raise BadTemplateError(f"{source}: {key} has an unusable dtype {dtype}")
            if dtype.itemsize < 0 or any(d < 0 for d in shape):
                raise BadTemplateError(f"{source}: {key} has a negative size ({dtype}, {list(shape)})")
            claimed = math.prod(shape) * dtype.itemsize
            if claimed > MAX_MEMBER_BYTES:
                raise BadTemplateError(f"{source}: {key} claims a {list(shape)} array of {claimed} bytes; "
                                       f"the limit is {MAX_MEMBER_BYTES}")


def load_template(path: Union[str, os.PathLike]) -> Template:
    """Read and validate a template file; any problem is a BadTemplateError naming the file."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise BadTemplateError(f"{source}: no such template file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise BadTemplateError(f"{source}: file is {size} bytes; the limit is {MAX_FILE_BYTES}")
    try:
        _preflight(path, source)
        with np.load(path, allow_pickle=False) as data:
            if _scalar(data, "format", source) != FORMAT:
                raise BadTemplateError(f"{source}: format marker is not {FORMAT!r}; is this a BodyDance template?")
            version = _scalar(data, "version", source)
            if isinstance(version, bool) or not isinstance(version, int):
                raise BadTemplateError(f"{source}: version must be an integer, not {version!r}")
            if version != VERSION:
                raise BadTemplateError(f"{source}: unknown version {version!r}; this SDK reads version {VERSION}")
            name = _scalar(data, "name", source)
            if not isinstance(name, str):
                raise BadTemplateError(f"{source}: name must be a text string, not {type(name).__name__}")
            template = Template(name, _scalar(data, "fps", source), data["poses"], data["translations"])
    except BadTemplateError:
        raise
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise BadTemplateError(f"{source}: contains pickled objects, which are refused") from err
        raise BadTemplateError(f"{source}: not a valid .npz template, damaged or truncated ({err})") from err
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, TypeError, NotImplementedError,
            RuntimeError, SyntaxError, MemoryError) as err:
        # zipfile raises NotImplementedError (unknown compression) and RuntimeError (encrypted member)
        # on crafted files; the fuzz test found both. Header parsing can raise SyntaxError.
        raise BadTemplateError(
            f"{source}: not a valid .npz template, damaged or truncated ({type(err).__name__}: {err})") from err
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
                                fps=np.array(template.fps, np.float64), poses=template.poses,
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
