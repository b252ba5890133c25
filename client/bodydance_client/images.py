"""Photo decoding for the client: any common file or array -> upright uint8 RGB ``[H, W, 3]``.

Pillow does the decoding (EXIF orientation applied, grey/RGBA/16-bit/palette
converted); everything that is not a usable picture raises BadImageError.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from bodydance_client.contract import MIN_PHOTO_SIDE
from bodydance_client.errors import BadImageError

# Photos are reduced to this side before upload: the models work at 256-512 px,
# so larger uploads only cost bandwidth and server memory.
UPLOAD_SIDE = 1024
MAX_FILE_BYTES = 50 * 2**20
MAX_DECODED_PIXELS = 100_000_000  # refuse decompression bombs before decoding

PhotoLike = Union[str, os.PathLike, bytes, np.ndarray, Image.Image]


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = max(float(array.max()), 1.0)
        image = Image.fromarray((array / top * 255.0).round().astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(canvas, rgba)
    return image.convert("RGB")


def _open(photo) -> Image.Image:
    if isinstance(photo, Image.Image):
        return photo
    if isinstance(photo, (bytes, bytearray)):
        data = bytes(photo)
    else:
        path = Path(photo)
        if not path.is_file():
            raise BadImageError(f"photo {path} does not exist or is not a file")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise BadImageError(f"photo {path} is {path.stat().st_size} bytes; the limit is {MAX_FILE_BYTES}")
        data = path.read_bytes()
    if not data:
        raise BadImageError("photo is empty (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_DECODED_PIXELS:
            raise BadImageError(f"photo is {image.width}x{image.height}; more than {MAX_DECODED_PIXELS} pixels is refused")
        image.load()
    except BadImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise BadImageError(f"photo could not be decoded as an image ({type(err).__name__}: {err})") from err
    return image


def load_photo(photo: PhotoLike, max_side: int = UPLOAD_SIDE) -> np.ndarray:
    """Decode, orient and convert; shrink so the longer side is at most ``max_side``."""
    if isinstance(photo, np.ndarray):
        array = photo
        if array.dtype != np.uint8:
            raise BadImageError(f"photo array must be uint8, got {array.dtype}")
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        if array.ndim != 3 or array.shape[2] not in (3, 4):
            raise BadImageError(f"photo array must be HxWx3 (RGB), got shape {array.shape}")
        image = Image.fromarray(np.ascontiguousarray(array[..., :3]), "RGB")
    else:
        image = ImageOps.exif_transpose(_open(photo))
        image = _to_rgb(image)
    if min(image.size) < MIN_PHOTO_SIDE:
        raise BadImageError(f"photo is {image.width}x{image.height}; each side must be at least {MIN_PHOTO_SIDE} px")
    if max(image.size) > max_side:
        scale = max_side / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8).copy()
