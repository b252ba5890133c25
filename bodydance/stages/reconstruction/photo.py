"""Stage 1 subject side, part 2: photo checks and the working square cut out of the photo.

``source_image`` is the working square (:class:`contract.PhotoSquare`) of the photo at
``N x N``; where the square reaches past the photo, the pixels are flat mid grey
(127/255), a neutral colour that neither the mask nor the parsing mistakes for skin or
clothes. Landmarks and the segmentation go through the same square.
"""

from __future__ import annotations

import cv2
import numpy as np

from bodydance_client import contract as C
from bodydance_client.errors import BadImageError

PAD_VALUE = 127  # source_image where the square reaches past the photo, uint8 grey


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


def crop_square(image: np.ndarray, square: C.PhotoSquare, fill=PAD_VALUE) -> np.ndarray:
    """``[H, W(, C)]`` photo -> ``[N, N(, C)]``: the square's pixels (``fill`` past the photo's edges), resized."""
    h, w = image.shape[:2]
    n, side = square.resolution, square.side
    canvas = np.full((side, side) + image.shape[2:], fill, dtype=image.dtype)
    x0, y0 = max(0, square.left), max(0, square.top)
    x1, y1 = min(w, square.left + side), min(h, square.top + side)
    if x1 > x0 and y1 > y0:
        canvas[y0 - square.top:y1 - square.top, x0 - square.left:x1 - square.left] = image[y0:y1, x0:x1]
    interp = cv2.INTER_AREA if side > n else cv2.INTER_LINEAR
    return cv2.resize(canvas, (n, n), interpolation=interp).reshape((n, n) + image.shape[2:])

