"""Stage 1 subject side, part 6: the plate fill, the photo with the whole person taken out and the hole filled.

The hole is every pixel MediaPipe's mask gives even a small chance of being the person
(probability above :data:`HOLE_PROBABILITY`, not 0.5), grown a little: the 0.5 contour runs
inside the person's soft fringe, which used to stay in the plate as pale ghosts of arms and legs.
The hole is filled by OpenCV's fast-marching inpainting (Telea 2004: from the hole's edge
inwards, each pixel from the known pixels around it, along the image's level lines), which
carries the colours and edges that meet the hole into it instead of blending the whole ring.

Measured against truth (``benchmarks/background_plate.py``, 24 synthetic scenes on real photos
and 4 frames of the real Sports2D video): on the real video this fill on this hole is the best
of those tried. Frequency-selective reconstruction (``cv2.xphoto`` FSR) scores higher on the
synthetic scenes but paints sky-white blobs into the real one; shift-map pastes whole wrong
objects (a second eye, half a cup); adding the fitted body's silhouette to the hole catches limbs the mask misses on synthetic scenes but, on the real video, where the
mask is good, the fit's own error makes it refill real background. Not sharp: a person-sized hole
comes out smooth. This fill is the reconstruction's ``plate_fill``, which ``style_encoder`` serves as
the ``background``; with ``BODYDANCE_PLATE=learned`` it first refines the hole with a network trained
here (:mod:`bodydance.stages.plate_inpainter`).

Pure numpy and OpenCV (the python backend carries no torch). Images are ``[N, N, 3]`` uint8 RGB
of the working square; masks ``[N, N]``.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

# Mask probability above which a pixel is taken out, and how far the hole then grows (a share of
# N, at least 2 px): the fringe of hair and limbs sits at low probability, a pixel or two wide at 256.
HOLE_PROBABILITY = 0.15
GROW_SHARE = 1 / 64


def person_hole(person_mask: np.ndarray, silhouette: Optional[np.ndarray] = None) -> np.ndarray:
    """``[N, N]`` bool: the mask above :data:`HOLE_PROBABILITY` (or ``silhouette``, when given: the
    benchmark's ablation), grown by :data:`GROW_SHARE` of N."""
    n = person_mask.shape[0]
    grow = max(2, int(round(n * GROW_SHARE)))
    hole = person_mask > HOLE_PROBABILITY
    if silhouette is not None:
        hole = hole | silhouette
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    return cv2.dilate(hole.astype(np.uint8), disc) > 0


def inpaint(image: np.ndarray, hole: np.ndarray, inside: Optional[np.ndarray] = None) -> np.ndarray:
    """``image [N, N, 3]`` uint8 RGB with ``hole [N, N]`` bool filled (Telea) from the pixels ``inside
    [N, N]`` bool (all, when None) that are not the hole; unchanged outside the hole."""
    known = ~hole if inside is None else inside & ~hole
    if not hole.any():
        return image.copy()
    if not known.any():  # nothing to fill from: the person fills the square
        source = image[inside] if inside is not None and inside.any() else image.reshape(-1, 3)
        return np.where(hole[..., None], np.median(source, axis=0).astype(np.uint8), image)
    radius = max(3, image.shape[0] // 50)  # the known ring each pixel is filled from, about 5 px at 256
    filled = cv2.inpaint(np.ascontiguousarray(image), (~known).astype(np.uint8), radius, cv2.INPAINT_TELEA)
    return np.where(hole[..., None], filled, image)


def background_plate(image: np.ndarray, person_mask: np.ndarray, inside: Optional[np.ndarray] = None) -> np.ndarray:
    """The working square without the person: ``image [N, N, 3]`` uint8, ``person_mask [N, N]`` in
    [0, 1] -> ``[N, N, 3]`` uint8. ``inside [N, N]`` bool: the square's pixels wholly inside the photo;
    the padding past its edges is no source for the fill (it used to run into the hole as a grey wedge)."""
    return inpaint(image, person_hole(person_mask), inside)
