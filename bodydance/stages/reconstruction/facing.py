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

A video has more evidence than one frame: the template builder decides for whole stretches of
frames (``facing_through_video``) and hands each frame's decision back in (``front=``), because
a small or backlit face is missed in many frames where it is there.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Sequence, Tuple

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
# A stretch of video between profiles faces front when a face is found in at least this share of its
# frames that could show one. Measured (benchmarks/facing_evidence.py): a face is found on 15 % of
# rendered backs of heads and on 82 % of the backlit Sports2D dancer's frames facing the camera.
FACE_SHARE = 0.4


@dataclasses.dataclass(frozen=True)
class FacingEvidence:
    """What one image says about which way the person faces."""

    shoulders_front: Optional[bool]  # the left shoulder on the image's right; None: a profile or unseen
    face_seen: Optional[bool]  # a face detector found a face on the head; None: not looked for


def levels_stretched(crop: np.ndarray) -> np.ndarray:
    """``crop`` (uint8) with its 2nd to 98th percentile of levels spread over 0-255: a face dark against
    a bright sky, which the face detectors miss, as they find it in a well exposed photo."""
    low, high = np.percentile(crop, (2, 98))
    spread = (crop.astype(np.float32) - low) * (255.0 / max(float(high - low), 1.0))
    return np.ascontiguousarray(np.clip(spread, 0, 255).astype(np.uint8))


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
                  face_found, front: Optional[bool] = None) -> Tuple[np.ndarray, np.ndarray, str, FacingEvidence]:
    """Landmarks turned the way the evidence says the person faces, the verdict and the evidence.

    image_lm: ``[33, 3]`` with x, y normalised to the image; ``face_found(box) -> bool`` runs a face
    detector on the ``(x0, y0, x1, y1)`` px crop. ``front``, when given, is a decision already made
    from more evidence (a video's): it replaces the face detector. Returns (image_lm, world_lm,
    verdict, evidence) with verdict one of "front", "back", "profile" or "unknown" (nothing to
    decide from).
    """
    xy = image_lm[:, :2] * [width, height]
    visibility = image_lm[:, 2]
    shoulders = shoulders_say_front(xy, visibility)
    if shoulders is None:
        verdict = "profile" if visibility[[11, 12]].min() >= VISIBLE else "unknown"
        return image_lm, world_lm, verdict, FacingEvidence(None, None)
    face = None
    if front is None:
        box = head_box(xy, visibility, width, height)
        if box is None:
            return image_lm, world_lm, "front" if shoulders else "back", FacingEvidence(shoulders, None)
        face = front = bool(face_found(box))
    evidence = FacingEvidence(shoulders, face)
    if front == shoulders:
        return image_lm, world_lm, "front" if front else "back", evidence
    mirrored_image, mirrored_world = mirror_front_to_back(image_lm, world_lm)
    return mirrored_image, mirrored_world, "front" if front else "back", evidence


def facing_through_video(evidence: Sequence[Optional[FacingEvidence]],
                         face_share: float = FACE_SHARE) -> List[Optional[bool]]:
    """Per frame: True (front), False (back) or None (keep the frame's own verdict).

    ``evidence`` holds one entry per frame, None where the person was not found. A person turns from
    front to back only through a profile, so the frames between two profiles (or gaps) face one way:
    the front when a face was found in at least ``face_share`` of those that could show one, else the
    back. A stretch with no frame that could show a face is left to its frames.
    """
    decided: List[Optional[bool]] = [None] * len(evidence)
    start = 0
    for end in range(len(evidence) + 1):
        if end < len(evidence) and evidence[end] is not None and evidence[end].shoulders_front is not None:
            continue
        looked = [evidence[k].face_seen for k in range(start, end) if evidence[k].face_seen is not None]
        if looked:
            front = sum(looked) >= face_share * len(looked)
            decided[start:end] = [front] * (end - start)
        start = end + 1
    return decided
