"""Stage 1 subject side, part 6: the fitted head tilted in the image plane to the face in the photo.

The fit keeps the head straight on the neck, and Pose's face landmarks are too coarse to say
otherwise (on the cameraman they put both ears in front of his real one). A person who bends
forward but looks ahead (the cameraman over his camera) then gets a head looking 18 degrees
further down than his face; the dance stands the body up, the head's one-piece map turns his
profile back by that and more (30 degrees against the photo), and a profile that far off its
photo's angle is one Face Mesh misreads (on the photo itself, merely turned by 30 degrees, its
landmark shape is 0.12 inter-ocular distances off).

So the head alone is turned about the camera's axis, by the angle between the face's line from
chin to forehead as MediaPipe Face Mesh finds it on the head and the same line on the fitted
mesh, projected, when that angle passes :data:`DEAD_ZONE_RAD`. Only the image-plane angle: a
full 3D turn from the face's lines cost 0.5 dB on the synthetic benchmark (README); the
in-plane angle is what a photo shows well from the front and in profile alike, and the dead
zone leaves a head the fit already has right alone.
"""

from __future__ import annotations

import functools
from typing import Optional, Tuple

import numpy as np

from bodydance.kinematics import axis_angle_to_matrix
from bodydance.skeleton import OPEN_BODY, PARENTS, REST_JOINTS, matrix_to_axis_angle, pose_skeleton, project, shaped_rest_joints
from bodydance.stages.reconstruction.landmarks import J
from bodydance_client import contract as C

# Face Mesh's landmarks at the top of the forehead and the bottom of the chin.
FOREHEAD_LANDMARK, CHIN_LANDMARK = 10, 152
# Below this the fit's head is left as it is (Face Mesh's line scatters by a few degrees).
DEAD_ZONE_RAD = np.radians(12.0)
# A gap wider than this is more likely a misread face than a head bent so far from its neck.
MAX_TILT_RAD = np.radians(60.0)
# The line must be seen at least this long, of its length facing the camera: a face seen from
# above or below shows its chin-forehead line too short for an angle.
MIN_FORESHORTENING = 0.5


@functools.lru_cache(maxsize=1)
def face_line_m() -> np.ndarray:
    """``[2, 3]`` metres from the head joint: the open body's chin and forehead at rest, read off
    the head's front profile along its middle (the points Face Mesh's 152 and 10 mark)."""
    with np.load(OPEN_BODY, allow_pickle=False) as body:
        v = body["v_template"].astype(np.float64)
        head = body["part_labels"] == C.PART_NAMES.index("head")
    centre_y = v[head][:, 1].mean()
    middle = head & (np.abs(v[:, 0]) < 0.006)

    def front_at(low: float, high: float) -> np.ndarray:
        band = middle & (v[:, 1] >= centre_y + low) & (v[:, 1] <= centre_y + high)
        return v[band][np.argmax(v[band][:, 2])]

    chin, forehead = front_at(-0.095, -0.075), front_at(0.065, 0.09)
    return np.stack([chin, forehead]) - REST_JOINTS[J["head"]].astype(np.float64)


def _projected_line(pose: np.ndarray, betas: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """``[2, 2]`` NDC: the fitted head's chin and forehead in the photo."""
    joints, rotations = pose_skeleton(pose, shaped_rest_joints(betas))
    head_joint, head_rot = joints[J["head"]].astype(np.float64), rotations[J["head"]].astype(np.float64)
    return project(head_joint + face_line_m() @ head_rot.T, np.asarray(camera, np.float64))


def _angle(line: np.ndarray) -> float:
    """Counter-clockwise as the viewer sees it (NDC's y points down), of chin -> forehead."""
    d = line[1] - line[0]
    return float(np.arctan2(-d[1], d[0]))


def tilt_gap_rad(pose: np.ndarray, betas: np.ndarray, camera: np.ndarray,
                 face_line_ndc: Optional[np.ndarray]) -> Optional[float]:
    """The image-plane angle (radians, counter-clockwise as the viewer sees it) from the fitted head's
    chin -> forehead line to the photo's (``[2, 2]`` NDC, chin then forehead, from Face Mesh), or None
    when either is seen too foreshortened to tell."""
    if face_line_ndc is None:
        return None
    observed = np.asarray(face_line_ndc, np.float64)
    predicted = _projected_line(pose, betas, camera)
    full = float(camera[0]) * np.linalg.norm(face_line_m()[1] - face_line_m()[0])
    if min(np.linalg.norm(np.diff(observed, axis=0)), np.linalg.norm(np.diff(predicted, axis=0))) < MIN_FORESHORTENING * full:
        return None
    return float(np.angle(np.exp(1j * (_angle(observed) - _angle(predicted)))))


def tilt_head(pose: np.ndarray, betas: np.ndarray, angle_rad: float) -> np.ndarray:
    """``pose`` ``[24, 3]`` rad with the head turned by ``angle_rad`` about the camera's axis (+Z, towards it)."""
    _, rotations = pose_skeleton(pose, shaped_rest_joints(betas))
    parent = rotations[PARENTS[J["head"]]].astype(np.float64)
    turn = axis_angle_to_matrix(np.array([0.0, 0.0, angle_rad]))
    world = turn @ rotations[J["head"]].astype(np.float64)
    out = np.array(pose, np.float32, copy=True)
    out[J["head"]] = matrix_to_axis_angle(parent.T @ world)
    return out


def level_head(pose: np.ndarray, betas: np.ndarray, camera: np.ndarray,
               face_line_ndc: Optional[np.ndarray]) -> Tuple[np.ndarray, float]:
    """(pose with the head tilted to the photo's face, the angle turned in radians: 0 inside the dead zone)."""
    gap = tilt_gap_rad(pose, betas, camera, face_line_ndc)
    if gap is None or abs(gap) <= DEAD_ZONE_RAD or abs(gap) > MAX_TILT_RAD:
        return pose, 0.0
    return tilt_head(pose, betas, gap), gap
