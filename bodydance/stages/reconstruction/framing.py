"""Stage 1 subject side, part 4: the working square, chosen around the person with room to dance.

The models see ``N x N`` pixels; spending them on the whole photo leaves a person standing in
a wide scene a hundred pixels tall. The square is instead the smallest one that holds the
person as seen and the space a dance can take from where they stand: the standing body with
its hands raised over the head and its arms held out, moved by the root motion the bundled
dances make. It never grows past the letterbox of the whole photo (a half-body portrait keeps
the whole photo), and stays within that letterbox.

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
SEEN_MARGIN = 0.05  # of the square, around the person as seen


def standing_extent(betas: np.ndarray) -> tuple:
    """(metres from the pelvis up to the top of the head, metres from the pelvis down to the soles)."""
    rest = shaped_rest_joints(betas).astype(np.float64)
    top = rest[J["head"], 1] + HEAD_TOP_M - rest[J["pelvis"], 1]
    bottom = rest[J["pelvis"], 1] - min(rest[J["left_foot"], 1], rest[J["right_foot"], 1]) + SOLE_M
    return float(top), float(bottom)


def dance_box_ndc(camera: np.ndarray, joints: np.ndarray, betas: np.ndarray) -> np.ndarray:
    """``(x0, y0, x1, y1)`` NDC of the space the person can dance in, standing where the pelvis is."""
    s = float(camera[0])
    pelvis = project(np.asarray(joints, np.float64)[J["pelvis"]], camera)
    top, bottom = standing_extent(betas)
    height = top + bottom
    half_width = HALF_SPAN * height + ROOT_ROOM_M
    return np.array([pelvis[0] - s * half_width, pelvis[1] - s * (top + ROOM_ABOVE * height + ROOT_ROOM_M),
                     pelvis[0] + s * half_width, pelvis[1] + s * (bottom + ROOM_BELOW * height + ROOT_ROOM_M)])


def choose_square(photo_height: int, photo_width: int, resolution: int, camera: np.ndarray, joints: np.ndarray,
                  betas: np.ndarray, seen_box_px=None) -> C.PhotoSquare:
    """The working square (photo px) for a fit made in the letterbox's NDC.

    camera ``(s, tx, ty)`` and joints ``[24, 3]`` m: the fit; ``seen_box_px``: ``(x0, y0, x1, y1)``
    photo px of the person as the mask sees them (hair and clothes included), or None.
    """
    letterbox = C.PhotoSquare.letterbox(photo_height, photo_width, resolution)
    x0, y0, x1, y1 = letterbox.to_photo(dance_box_ndc(camera, joints, betas).reshape(2, 2)).reshape(-1)
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
