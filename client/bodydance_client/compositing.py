"""Frames of the working square, composited onto the photo at the photo's own resolution.

The server generates each frame at ``N x N`` for the working square (``contract.PhotoSquare``)
and says where the frame differs from the photo (``frame_alpha``). The client scales the
frame up to the square's size in the full-resolution photo and blends it in there, so the
video keeps the photo's resolution and aspect ratio while no full-resolution tensor crosses
the wire per frame. The alpha is softened by one working pixel so the seam does not show.
"""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np
from PIL import Image, ImageFilter

DEFAULT_MAX_SIDE = 1920  # longest side of the video, px; larger photos are scaled down to it


def square_in(square_px: Tuple[float, float, float], uploaded_size: Tuple[int, int],
              canvas_size: Tuple[int, int]) -> Tuple[float, float, float]:
    """The square ``(left, top, side)`` in the uploaded photo's px -> the same square in the canvas's px.

    Sizes are ``(height, width)``; the canvas is the same photo at another resolution.
    """
    factor = canvas_size[1] / uploaded_size[1]
    return tuple(float(v) * factor for v in square_px)


def composite(canvas: np.ndarray, square_px: Tuple[float, float, float], frame: np.ndarray,
              alpha: np.ndarray) -> np.ndarray:
    """Blend one generated frame into a copy of the canvas.

    canvas ``[H, W, 3]`` uint8 (the photo); square_px ``(left, top, side)`` canvas px; frame
    ``[N, N, 3]`` uint8 and alpha ``[N, N, 1]`` uint8 of the square -> ``[H, W, 3]`` uint8.
    """
    n = frame.shape[0]
    left, top, side = square_px
    h, w = canvas.shape[:2]
    x0, y0 = max(0, math.floor(left)), max(0, math.floor(top))
    x1, y1 = min(w, math.ceil(left + side)), min(h, math.ceil(top + side))
    out = canvas.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    per_px = n / side  # square px per canvas px
    # (clipped to the frame: the canvas pixels at the square's edges are only partly inside it)
    box = tuple(min(max(v * per_px, 0.0), float(n)) for v in (x0 - left, y0 - top, x1 - left, y1 - top))
    size = (x1 - x0, y1 - y0)
    rgb = np.asarray(Image.fromarray(np.ascontiguousarray(frame)).resize(size, Image.Resampling.BICUBIC, box=box))
    soft = Image.fromarray(np.ascontiguousarray(alpha[..., 0])).filter(ImageFilter.BoxBlur(1))
    a = np.asarray(soft.resize(size, Image.Resampling.BILINEAR, box=box)).astype(np.uint16)[..., None]
    region = out[y0:y1, x0:x1].astype(np.uint16)
    out[y0:y1, x0:x1] = ((region * (255 - a) + rgb.astype(np.uint16) * a + 127) // 255).astype(np.uint8)
    return out
