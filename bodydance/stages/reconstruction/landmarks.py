"""Stage 1 subject side, part 1: MediaPipe's 33 pose landmarks -> the 24 SMPL joints.

The map is one fixed linear one (:data:`LANDMARK_TO_JOINT`), used for the 3D and the
2D landmarks alike: pelvis, spine, neck and collars are placed along the torso at the
heights and widths the rest skeleton has them, hands between index and pinky, feet
mostly at the toes. A joint's confidence is the lowest visibility among the landmarks
it is made of; the three spine joints always count as unseen (MediaPipe does not see
the spine's curve). Joints below :data:`VISIBLE` never drive the fit.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from bodydance.skeleton import REST_JOINTS
from bodydance_client import contract as C
from bodydance_client.errors import NoPersonError, PhotoNotUprightError

NUM_LANDMARKS = 33
# MediaPipe Pose landmark indices (the person's own left/right, as in SMPL).
LANDMARKS = dict(
    nose=0, left_eye=2, right_eye=5, left_ear=7, right_ear=8, mouth_left=9, mouth_right=10,
    left_shoulder=11, right_shoulder=12, left_elbow=13, right_elbow=14,
    left_wrist=15, right_wrist=16, left_pinky=17, right_pinky=18, left_index=19, right_index=20,
    left_hip=23, right_hip=24, left_knee=25, right_knee=26, left_ankle=27, right_ankle=28,
    left_heel=29, right_heel=30, left_foot_index=31, right_foot_index=32,
)
J = {name: i for i, name in enumerate(C.JOINT_NAMES)}

VISIBLE = 0.5  # joint confidence below which a joint does not drive the fit
MIN_PERSON_SIZE = 0.08  # of the letterboxed square: smaller people are refused

SPINE = (J["spine1"], J["spine2"], J["spine3"])


def _landmark_to_joint_map() -> np.ndarray:
    """``[24, 33]`` weights: SMPL joint = weights @ landmarks (works for 3D and 2D alike)."""
    m = np.zeros((C.NUM_JOINTS, NUM_LANDMARKS))

    def put(joint: str, weights: Dict[str, float]) -> None:
        for name, w in weights.items():
            m[J[joint], LANDMARKS[name]] += w

    rest = REST_JOINTS.astype(np.float64)
    mid_hip_y = (rest[J["left_hip"], 1] + rest[J["right_hip"], 1]) / 2
    mid_shoulder_y = (rest[J["left_shoulder"], 1] + rest[J["right_shoulder"], 1]) / 2
    hips = {"left_hip": 0.5, "right_hip": 0.5}
    shoulders = {"left_shoulder": 0.5, "right_shoulder": 0.5}
    # Pelvis and spine: along mid-hip -> mid-shoulder, at the rest skeleton's heights.
    for joint in ("pelvis", "spine1", "spine2", "spine3"):
        f = (rest[J[joint], 1] - mid_hip_y) / (mid_shoulder_y - mid_hip_y)
        put(joint, {k: (1 - f) * v for k, v in hips.items()})
        put(joint, {k: f * v for k, v in shoulders.items()})
    # Head: between the ears. Neck: from mid-shoulder towards the head, as far as at rest.
    ears = {"left_ear": 0.5, "right_ear": 0.5}
    put("head", ears)
    head_rise = rest[J["head"], 1] - mid_shoulder_y
    g = (rest[J["neck"], 1] - mid_shoulder_y) / head_rise
    put("neck", {k: (1 - g) * v for k, v in shoulders.items()})
    put("neck", {k: g * v for k, v in ears.items()})
    # Collars: on the shoulder line, as far out as at rest.
    for side in ("left", "right"):
        f = abs(rest[J[f"{side}_collar"], 0]) / abs(rest[J[f"{side}_shoulder"], 0])
        put(f"{side}_collar", {k: (1 - f) * v for k, v in shoulders.items()})
        put(f"{side}_collar", {f"{side}_shoulder": f})
        for part in ("hip", "shoulder", "elbow", "wrist", "knee", "ankle"):
            put(f"{side}_{part}", {f"{side}_{part}": 1.0})
        put(f"{side}_hand", {f"{side}_index": 0.5, f"{side}_pinky": 0.5})
        put(f"{side}_foot", {f"{side}_foot_index": 0.75, f"{side}_heel": 0.25})
    assert np.allclose(m.sum(1), 1.0)
    return m


LANDMARK_TO_JOINT = _landmark_to_joint_map()


def landmarks_to_joints(points: np.ndarray, visibility: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``[33, D]`` landmarks + ``[33]`` visibility -> ``[24, D]`` SMPL joints + ``[24]`` confidence.

    The spine joints are placed on the straight line from mid-hip to mid-shoulder (for display) but
    get confidence 0: MediaPipe does not see the spine's curve, so they must not drive the fit.
    """
    joints = LANDMARK_TO_JOINT @ points
    used = LANDMARK_TO_JOINT > 0
    confidence = np.where(used, visibility[None, :], np.inf).min(axis=1)
    confidence[list(SPINE)] = 0.0
    return joints, confidence


def seen_box(points: np.ndarray, confidence: np.ndarray) -> Tuple[float, float, float, float]:
    """(x0, y0, x1, y1), in the units of ``points`` ``[K, 2]``, around those seen (``confidence`` ``[K]``
    >= :data:`VISIBLE`); around all of them when fewer than four are."""
    seen = confidence >= VISIBLE
    kept = points[seen if seen.sum() >= 4 else slice(None)]
    return (*kept.min(0), *kept.max(0))


def check_person_size(ndc: np.ndarray, confidence: np.ndarray) -> None:
    """NoPersonError unless the confident landmarks span at least MIN_PERSON_SIZE of the square."""
    seen = ndc[confidence >= VISIBLE]
    if len(seen) < 4:
        raise NoPersonError(f"no person found in the photo (only {len(seen)} body landmarks are clearly visible)")
    extent = float(np.ptp(seen, axis=0).max()) / 2.0
    if extent < MIN_PERSON_SIZE:
        raise NoPersonError(
            f"the person is too small: {extent:.1%} of the photo; at least {MIN_PERSON_SIZE:.0%} is needed")




UPRIGHT_TOLERANCE_DEG = 45.0  # the person's up may lean this far from the image's up
CLEAR_TURN_DEG = 25.0  # within this of a quarter turn, the photo is turned rather than refused


def body_up_angle(xy: np.ndarray, visibility: np.ndarray) -> Optional[float]:
    """Degrees clockwise from the image's up to the person's up, from ``[33, 2]`` landmarks (x right,
    y down, any units with square pixels): mid-hip -> mid-shoulder and mid-shoulder -> mid-ear, the
    lines the photo shows clearly, averaged. None when neither is seen."""
    seen = visibility >= VISIBLE
    mid = {pair: (xy[LANDMARKS[f"left_{pair}"]] + xy[LANDMARKS[f"right_{pair}"]]) / 2 for pair in ("hip", "shoulder", "ear")}
    both = {pair: seen[LANDMARKS[f"left_{pair}"]] and seen[LANDMARKS[f"right_{pair}"]] for pair in mid}
    ups = [mid[top] - mid[bottom] for bottom, top in (("hip", "shoulder"), ("shoulder", "ear"))
           if both[bottom] and both[top]]
    if not ups:
        return None
    up = sum(u / max(float(np.linalg.norm(u)), 1e-9) for u in ups)
    return float(np.degrees(np.arctan2(up[0], -up[1])))


def check_upright(xy: np.ndarray, visibility: np.ndarray) -> None:
    """PhotoNotUprightError (saying how to turn the photo, when that is clear) unless the person stands upright."""
    angle = body_up_angle(xy, visibility)
    if angle is None or abs(angle) <= UPRIGHT_TOLERANCE_DEG:
        return
    turns = int(round(angle / 90.0))
    what = "upside down" if abs(turns) == 2 else "lying sideways"
    sense = "clockwise" if angle > 0 else "anticlockwise"
    message = f"the person in the photo is {what}: their head points {abs(angle):.0f} degrees {sense} from up"
    if abs(angle - 90.0 * turns) > CLEAR_TURN_DEG:
        raise PhotoNotUprightError(message + "; use a photo in which they stand upright")
    how = {1: "a quarter turn anticlockwise", 2: "half a turn", 3: "a quarter turn clockwise"}[turns % 4]
    raise PhotoNotUprightError(f"{message}; turn the photo {how} (quarter_turns={turns % 4})", turns % 4)
