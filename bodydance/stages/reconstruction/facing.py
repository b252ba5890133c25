"""Stage 1 subject side, part 5: which way the person faces, decided from evidence before the fit.

MediaPipe Pose mostly sees people from the front; shown a back, it can still answer with a
front (the person's left shoulder on the image's right, the nose towards the camera), and the
fit then dances a faceless front. Two pieces of evidence decide instead:

* the order of the shoulders in the image: a person facing the camera has their left shoulder
  on the image's right;
* face detectors (MediaPipe's bundled short- and full-range face detection) on a crop of
  the head: a face found by either
  means the front or a profile is towards the camera; none found on a head big enough to show
  one means the back is.

When they disagree, the face wins: the landmarks are mirrored front to back (left and right
swapped, depth negated), which keeps every point where the photo shows it. A profile (the
shoulders nearly on one line) is left as Pose saw it.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from bodydance.stages.reconstruction.landmarks import LANDMARKS, VISIBLE

# MediaPipe Pose's left/right landmark pairs: eyes (inner, centre, outer), ears, mouth, and the limbs.
_PAIRS = ((1, 4), (2, 5), (3, 6), (7, 8), (9, 10)) + tuple((k, k + 1) for k in range(11, 33, 2))
MIRROR = np.arange(33)
for _a, _b in _PAIRS:
    MIRROR[_a], MIRROR[_b] = _b, _a

MIN_HEAD_PX = 8.0  # a smaller head cannot tell a face from a back
PROFILE_SHARE = 0.25  # shoulders closer in the image than this share of the torso's length: a profile
HEAD = tuple(range(11))  # nose, eyes, ears, mouth


def mirror_front_to_back(image_lm: np.ndarray, world_lm: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The same image points seen as the other side of the body: left and right swapped, depth negated.

    image_lm ``[33, 3]`` (x, y, visibility), world_lm ``[33, 3]`` MediaPipe world (z away from the camera).
    """
    world = world_lm[MIRROR].copy()
    world[:, 2] = 2 * world[:, 2].mean() - world[:, 2]
    return image_lm[MIRROR].copy(), world


def shoulders_say_front(xy_px: np.ndarray, visibility: np.ndarray) -> Optional[bool]:
    """True when the left shoulder is on the image's right, False when on its left, None for a
    profile (shoulders close together against the torso's length) or when they are not seen."""
    left, right = LANDMARKS["left_shoulder"], LANDMARKS["right_shoulder"]
    if min(visibility[left], visibility[right]) < VISIBLE:
        return None
    mid_shoulder = (xy_px[left] + xy_px[right]) / 2
    hips = [LANDMARKS["left_hip"], LANDMARKS["right_hip"]]
    if visibility[hips].min() >= VISIBLE:
        torso = float(np.linalg.norm(xy_px[hips].mean(0) - mid_shoulder))
    else:  # half-body photo: the neck's length, twice, stands in for the torso
        torso = 2.0 * float(np.linalg.norm(xy_px[LANDMARKS["nose"]] - mid_shoulder))
    across = xy_px[left, 0] - xy_px[right, 0]
    if abs(across) < PROFILE_SHARE * torso:
        return None
    return bool(across > 0)


def head_box(xy_px: np.ndarray, visibility: np.ndarray, width: int, height: int):
    """A square ``(x0, y0, x1, y1)`` px around the head, or None when the head is too small or out of view."""
    head = xy_px[list(HEAD)]
    span = float(np.ptp(head, axis=0).max())  # ear to ear from the front, ear to nose in profile
    if span < MIN_HEAD_PX or not ((head >= 0).all() and (head[:, 0] < width).all() and (head[:, 1] < height).all()):
        return None
    centre = head.mean(0)
    half = 1.6 * span
    x0, y0 = int(max(0, centre[0] - half)), int(max(0, centre[1] - half))
    x1, y1 = int(min(width, centre[0] + half)), int(min(height, centre[1] + half))
    return (x0, y0, x1, y1) if x1 - x0 >= 16 and y1 - y0 >= 16 else None


def decide_facing(image_lm: np.ndarray, world_lm: np.ndarray, width: int, height: int,
                  face_found) -> Tuple[np.ndarray, np.ndarray, str]:
    """Landmarks turned the way the evidence says the person faces, and why.

    image_lm: ``[33, 3]`` with x, y normalised to the image; ``face_found(box) -> bool`` runs a face
    detector on the ``(x0, y0, x1, y1)`` px crop. Returns (image_lm, world_lm, verdict) with verdict one
    of "front", "back", "profile" or "unknown" (nothing to decide from).
    """
    xy = image_lm[:, :2] * [width, height]
    visibility = image_lm[:, 2]
    front = shoulders_say_front(xy, visibility)
    if front is None:
        return image_lm, world_lm, "profile" if visibility[[11, 12]].min() >= VISIBLE else "unknown"
    box = head_box(xy, visibility, width, height)
    if box is None:
        return image_lm, world_lm, "front" if front else "back"
    face = bool(face_found(box))
    if face == front:
        return image_lm, world_lm, "front" if front else "back"
    mirrored_image, mirrored_world = mirror_front_to_back(image_lm, world_lm)
    return mirrored_image, mirrored_world, "front" if face else "back"
