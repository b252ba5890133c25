"""Stage 1 subject side, part 2: photo checks and the letterboxed working square.

``source_image`` is the photo letterboxed into ``N x N`` (:class:`contract.Letterbox`);
the bars are flat mid grey (127/255), a neutral colour that neither the mask nor the
parsing mistakes for skin or clothes. Landmarks and the segmentation go through the
same letterbox.
"""

from __future__ import annotations

import cv2
import numpy as np

from bodydance_client import contract as C
from bodydance_client.errors import BadImageError

PAD_VALUE = 127  # letterbox bars of source_image, uint8 grey


def check_photo(photo: np.ndarray) -> None:
    """Raise :class:`BadImageError` saying what is wrong unless ``photo`` is a usable uint8 RGB image."""
    if not isinstance(photo, np.ndarray):
        raise BadImageError(f"photo must be a numpy array, got {type(photo).__name__}")
    if photo.dtype != np.uint8:
        raise BadImageError(f"photo must be uint8 RGB, got dtype {photo.dtype}")
    if photo.ndim != 3 or photo.shape[2] != 3:
        raise BadImageError(f"photo must be H x W x 3 (RGB), got shape {tuple(photo.shape)}")
    h, w = photo.shape[:2]
    if min(h, w) < C.MIN_PHOTO_SIDE or max(h, w) > C.MAX_PHOTO_SIDE:
        raise BadImageError(
            f"photo is {w}x{h} px; each side must be {C.MIN_PHOTO_SIDE} to {C.MAX_PHOTO_SIDE} px")


def letterbox(image: np.ndarray, resolution: int, fill=PAD_VALUE) -> np.ndarray:
    """``[H, W(, C)]`` -> ``[N, N(, C)]`` centred, bars = ``fill``, placed by :class:`contract.Letterbox`."""
    h, w = image.shape[:2]
    box = C.Letterbox.fit(h, w, resolution)
    interp = cv2.INTER_AREA if box.width < w else cv2.INTER_LINEAR
    resized = cv2.resize(image, (box.width, box.height), interpolation=interp)
    out = np.full((resolution, resolution) + image.shape[2:], fill, dtype=image.dtype)
    box.crop(out)[...] = resized.reshape((box.height, box.width) + image.shape[2:])
    return out
