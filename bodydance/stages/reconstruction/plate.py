"""Stage 1 subject side, part 6: the background plate, the photo with the whole person taken out.

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
objects (a second eye, half a cup); adding the fitted body's silhouette (:func:`body_silhouette`)
to the hole catches limbs the mask misses on synthetic scenes but, on the real video, where the
mask is good, the fit's own error makes it refill real background. Not sharp: a person-sized hole
comes out smooth; a learned inpainter is the next step.

Pure numpy and OpenCV (the python backend carries no torch). Images are ``[N, N, 3]`` uint8 RGB
of the working square; masks ``[N, N]``.
"""

from __future__ import annotations

import functools
from typing import Optional

import cv2
import numpy as np

from bodydance.kinematics import axis_angle_to_matrix, forward_kinematics
from bodydance_client.contract import JOINT_PARENTS

# Mask probability above which a pixel is taken out, and how far the hole then grows (a share of
# N, at least 2 px): the fringe of hair and limbs sits at low probability, a pixel or two wide at 256.
HOLE_PROBABILITY = 0.15
GROW_SHARE = 1 / 64


@functools.lru_cache(maxsize=1)
def _open_body():
    from bodydance.body import load_open_body_arrays

    arrays = load_open_body_arrays()
    return {k: np.asarray(arrays[k], np.float64) for k in ("v_template", "shapedirs", "J_regressor", "weights")}, \
        np.asarray(arrays["faces"], np.int64)


def body_silhouette(betas: np.ndarray, pose: np.ndarray, camera: np.ndarray, resolution: int) -> np.ndarray:
    """``[N, N]`` bool: pixels the open body covers, posed by ``betas [10]``, ``pose [24, 3]`` rad,
    seen by ``camera (s NDC/m, tx, ty NDC)`` (linear blend skinning; no pose blend shapes, which
    move the outline by well under a pixel)."""
    body, faces = _open_body()
    shaped = body["v_template"] + body["shapedirs"] @ np.asarray(betas, np.float64)
    rest = body["J_regressor"] @ shaped
    rotations, joints = forward_kinematics(axis_angle_to_matrix(np.asarray(pose, np.float64)), rest, JOINT_PARENTS)
    shifts = joints - np.einsum("jab,jb->ja", rotations, rest)
    blended = np.einsum("vj,jab->vab", body["weights"], rotations)
    vertices = np.einsum("vab,vb->va", blended, shaped) + body["weights"] @ shifts
    s, tx, ty = (float(c) for c in camera)
    n = resolution
    # in pixel-centre coordinates (pixel (u, v) is the point (u, v) to fillPoly), with 4 fractional bits
    px = np.stack([(s * vertices[:, 0] + tx + 1.0) * n / 2.0, (-s * vertices[:, 1] + ty + 1.0) * n / 2.0], -1)
    triangles = np.round((px[faces] - 0.5) * 16).astype(np.int32)
    covered = np.zeros((n, n), np.uint8)
    cv2.fillPoly(covered, list(triangles), 1, lineType=cv2.LINE_8, shift=4)
    return covered > 0


def person_hole(person_mask: np.ndarray, silhouette: Optional[np.ndarray] = None) -> np.ndarray:
    """``[N, N]`` bool: the mask above :data:`HOLE_PROBABILITY` (or ``silhouette``, when given),
    grown by :data:`GROW_SHARE` of N."""
    n = person_mask.shape[0]
    grow = max(2, int(round(n * GROW_SHARE)))
    hole = person_mask > HOLE_PROBABILITY
    if silhouette is not None:
        hole = hole | silhouette
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    return cv2.dilate(hole.astype(np.uint8), disc) > 0


def inpaint(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """``image [N, N, 3]`` uint8 RGB with ``hole [N, N]`` bool filled (Telea); unchanged outside the hole."""
    if not hole.any():
        return image.copy()
    if hole.all():  # nothing to fill from: the person fills the square
        return np.broadcast_to(np.median(image.reshape(-1, 3), axis=0).astype(np.uint8), image.shape).copy()
    radius = max(3, image.shape[0] // 50)  # the known ring each pixel is filled from, about 5 px at 256
    filled = cv2.inpaint(np.ascontiguousarray(image), hole.astype(np.uint8), radius, cv2.INPAINT_TELEA)
    return np.where(hole[..., None], filled, image)


def background_plate(image: np.ndarray, person_mask: np.ndarray) -> np.ndarray:
    """The working square without the person: ``image [N, N, 3]`` uint8, ``person_mask [N, N]`` in
    [0, 1] -> ``[N, N, 3]`` uint8."""
    return inpaint(image, person_hole(person_mask))
