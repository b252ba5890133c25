"""Stage 1 subject side, part 4: the working square, chosen around the person with room to dance.

The models see ``N x N`` pixels; spending them on the whole photo leaves a person standing in
a wide scene a hundred pixels tall. The square is instead the smallest one that holds the
person as seen and the space a dance can take from where they stand: the standing body with
its hands raised over the head and its arms held out, moved by the root motion the bundled
dances make. It never grows past the letterbox of the whole photo (a half-body portrait keeps
the whole photo), and stays within that letterbox.

Where the dance stands: the frames pose the body at its root, so a person photographed leaning
(the cameraman bent over his camera) is stood up over the pelvis, with the head far from where
the photo shows it and past the photo's edge. :func:`dance_offset_m` is the one root offset,
added to every frame's, that keeps the standing head in the photo; zero for a person standing
upright inside it.

Inputs are the fit in the letterbox's NDC (see :mod:`.fit`); the output is whole photo pixels.
"""

from __future__ import annotations

import numpy as np

from bodydance.skeleton import project, shaped_rest_joints
from bodydance.stages.reconstruction.landmarks import J
from bodydance_client import contract as C

HEAD_TOP_M = 0.15  # the top of the head (hair) above the head joint
SOLE_M = 0.03  # the soles below the foot joints
ROOM_ABOVE = 0.30  # of the body's height, over the head: hands raised above it reach about 0.26
ROOM_BELOW = 0.05  # of the body's height, under the feet
HALF_SPAN = 0.55  # of the body's height, each side of the pelvis: arms held out span about one height
ROOT_ROOM_M = 0.15  # the bundled dances move the root up to 0.12 m from where the person stands
ROOT_RISE_M = 0.05  # and lift it at most 0.05 m (jumping_jacks)
SEEN_MARGIN = 0.05  # of the square, around the person as seen
HEAD_HALF_WIDTH_M = 0.10  # the head and hair, each side of the head joint
# A person standing at ease carries the head within some centimetres of the line over the pelvis;
# only a lean past this moves where the dance stands.
LEAN_DEAD_ZONE_M = 0.10


def standing_extent(betas: np.ndarray) -> tuple:
    """(metres from the pelvis up to the top of the head, metres from the pelvis down to the soles)."""
    rest = shaped_rest_joints(betas).astype(np.float64)
    top = rest[J["head"], 1] + HEAD_TOP_M - rest[J["pelvis"], 1]
    bottom = rest[J["pelvis"], 1] - min(rest[J["left_foot"], 1], rest[J["right_foot"], 1]) + SOLE_M
    return float(top), float(bottom)


def dance_offset_m(photo_height: int, photo_width: int, resolution: int, camera: np.ndarray, joints: np.ndarray,
                   betas: np.ndarray) -> np.ndarray:
    """``[3]`` float32 metres (SMPL axes, +Y up): the root offset that keeps the dancing head in the photo.

    Sideways, the dance stands under the photo's head rather than over its pelvis once the lean
    passes :data:`LEAN_DEAD_ZONE_M`, then moves as far as needed for the head and the root's room
    to stay inside the photo's width. Vertically it only ever moves down, as far as needed for the
    standing head (lifted as far as the dances lift the root) to stay below the photo's top edge,
    and only when the photo shows the whole head (a portrait cut at the forehead has no hair to reveal).
    camera ``(s, tx, ty)`` and joints ``[24, 3]`` m: the fit, in the whole photo's letterbox NDC.
    """
    s = float(camera[0])
    joints = np.asarray(joints, np.float64)
    letterbox = C.PhotoSquare.letterbox(photo_height, photo_width, resolution)
    (left, top), (right, _) = letterbox.to_ndc([[0.0, 0.0], [photo_width, photo_height]])
    pelvis, head = project(joints[J["pelvis"]], camera), project(joints[J["head"]], camera)

    lean = head[0] - pelvis[0]
    dx = lean if abs(lean) > s * LEAN_DEAD_ZONE_M else 0.0
    half = s * (HEAD_HALF_WIDTH_M + ROOT_ROOM_M)
    if right - left >= 2 * half:
        centre = pelvis[0] + dx
        dx += float(np.clip(centre, left + half, right - half)) - centre

    dy = 0.0
    standing_top = pelvis[1] - s * (standing_extent(betas)[0] + ROOT_RISE_M)
    if head[1] - s * HEAD_TOP_M >= top:
        dy = max(0.0, top - standing_top)
    low, high = C.DANCE_OFFSET.valid_range
    return np.clip(np.array([dx / s, -dy / s, 0.0]), low, high).astype(np.float32)


def dance_box_ndc(camera: np.ndarray, joints: np.ndarray, betas: np.ndarray, offset_m=(0.0, 0.0, 0.0)) -> np.ndarray:
    """``(x0, y0, x1, y1)`` NDC of the space the person can dance in, standing where the pelvis is
    moved by ``offset_m`` (:func:`dance_offset_m`)."""
    s = float(camera[0])
    pelvis = project(np.asarray(joints, np.float64)[J["pelvis"]] + np.asarray(offset_m, np.float64), camera)
    top, bottom = standing_extent(betas)
    height = top + bottom
    half_width = HALF_SPAN * height + ROOT_ROOM_M
    return np.array([pelvis[0] - s * half_width, pelvis[1] - s * (top + ROOM_ABOVE * height + ROOT_ROOM_M),
                     pelvis[0] + s * half_width, pelvis[1] + s * (bottom + ROOM_BELOW * height + ROOT_ROOM_M)])


def choose_square(photo_height: int, photo_width: int, resolution: int, camera: np.ndarray, joints: np.ndarray,
                  betas: np.ndarray, seen_box_px=None, offset_m=(0.0, 0.0, 0.0)) -> C.PhotoSquare:
    """The working square (photo px) for a fit made in the letterbox's NDC.

    camera ``(s, tx, ty)`` and joints ``[24, 3]`` m: the fit; ``seen_box_px``: ``(x0, y0, x1, y1)``
    photo px of the person as the mask sees them (hair and clothes included), or None;
    ``offset_m``: where the dance stands (:func:`dance_offset_m`).
    """
    letterbox = C.PhotoSquare.letterbox(photo_height, photo_width, resolution)
    box = dance_box_ndc(camera, joints, betas, offset_m)
    x0, y0, x1, y1 = letterbox.to_photo(box.reshape(2, 2)).reshape(-1)
    seen = [letterbox.to_photo(project(np.asarray(joints, np.float64), camera))]
    if seen_box_px is not None:
        seen.append(np.asarray(seen_box_px, np.float64).reshape(2, 2))
    seen = np.concatenate(seen)
    sx0, sy0 = seen.min(0)
    sx1, sy1 = seen.max(0)
    x0, y0, x1, y1 = min(x0, sx0), min(y0, sy0), max(x1, sx1), max(y1, sy1)
    side = max(x1 - x0, y1 - y0) * (1 + 2 * SEEN_MARGIN)
    side = int(round(min(letterbox.side, max(side, min(letterbox.side, resolution / 2)))))
    left = int(round((x0 + x1 - side) / 2))
    top = int(round((y0 + y1 - side) / 2))
    # inside the letterbox: past it there is nothing of the photo to show
    left = int(np.clip(left, letterbox.left, letterbox.left + letterbox.side - side))
    top = int(np.clip(top, letterbox.top, letterbox.top + letterbox.side - side))
    return C.PhotoSquare(left, top, side, resolution)
