"""The SMPL-format kinematic skeleton shared by fitting (numpy) and geometry (torch).

Tensor contract
---------------
* ``REST_JOINTS``: ``[24, 3]`` float32, metres, SMPL T-pose (arms along +/-X,
  +Y up, +Z forward), pelvis at the origin. Values approximate the SMPL
  neutral body; the derived open body replaces them once it lands.
* ``pose``: ``[..., 24, 3]`` axis-angle radians, parent-relative.
* ``betas``: ``[..., 10]``. Until the open body lands only ``betas[0]``
  (overall height, +1 = 6 % taller) and ``betas[1]`` (girth, +1 = 10 % wider
  limbs) act on the skeleton.
"""

from __future__ import annotations

import numpy as np

from bodydance_client.contract import JOINT_NAMES, JOINT_PARENTS, NUM_JOINTS, PART_NAMES

PARENTS = np.asarray(JOINT_PARENTS, dtype=np.int64)

_REST = {
    "pelvis": (0.0, 0.0, 0.0),
    "left_hip": (0.06, -0.09, 0.0), "right_hip": (-0.06, -0.09, 0.0),
    "spine1": (0.0, 0.11, -0.02),
    "left_knee": (0.11, -0.46, 0.0), "right_knee": (-0.11, -0.46, 0.0),
    "spine2": (0.0, 0.24, -0.01),
    "left_ankle": (0.09, -0.86, -0.04), "right_ankle": (-0.09, -0.86, -0.04),
    "spine3": (0.0, 0.29, 0.0),
    "left_foot": (0.12, -0.92, 0.09), "right_foot": (-0.12, -0.92, 0.09),
    "neck": (0.0, 0.50, -0.02),
    "left_collar": (0.08, 0.41, -0.01), "right_collar": (-0.08, 0.41, -0.01),
    "head": (0.0, 0.58, 0.02),
    "left_shoulder": (0.18, 0.43, -0.02), "right_shoulder": (-0.18, 0.43, -0.02),
    "left_elbow": (0.44, 0.42, -0.03), "right_elbow": (-0.44, 0.42, -0.03),
    "left_wrist": (0.69, 0.43, -0.02), "right_wrist": (-0.69, 0.43, -0.02),
    "left_hand": (0.78, 0.42, -0.02), "right_hand": (-0.78, 0.42, -0.02),
}
REST_JOINTS = np.asarray([_REST[n] for n in JOINT_NAMES], dtype=np.float32)
assert REST_JOINTS.shape == (NUM_JOINTS, 3)


def _part(name: str) -> int:
    return PART_NAMES.index(name)


# Capsules that stand in for the body surface until the mesh lands:
# (joint a, joint b, radius at rest in metres, part label). The head capsule
# ends at a point 0.2 m above the head joint, encoded as joint b = -1.
CAPSULES = (
    (0, 3, 0.13, _part("torso")), (3, 6, 0.14, _part("torso")), (6, 9, 0.15, _part("torso")),
    (9, 12, 0.08, _part("torso")), (1, 2, 0.11, _part("torso")),
    (13, 16, 0.07, _part("torso")), (14, 17, 0.07, _part("torso")),
    (12, 15, 0.055, _part("head")), (15, -1, 0.1, _part("head")),
    (16, 18, 0.055, _part("upper_arm")), (17, 19, 0.055, _part("upper_arm")),
    (18, 20, 0.045, _part("forearm")), (19, 21, 0.045, _part("forearm")),
    (20, 22, 0.045, _part("hand")), (21, 23, 0.045, _part("hand")),
    (1, 4, 0.085, _part("thigh")), (2, 5, 0.085, _part("thigh")),
    (4, 7, 0.06, _part("shin_foot")), (5, 8, 0.06, _part("shin_foot")),
    (7, 10, 0.045, _part("shin_foot")), (8, 11, 0.045, _part("shin_foot")),
)
HEAD_TOP_OFFSET = np.asarray([0.0, 0.16, 0.0], dtype=np.float32)


def shaped_rest_joints(betas: np.ndarray) -> np.ndarray:
    """``[10]`` betas -> ``[24, 3]`` rest joints in metres."""
    return REST_JOINTS * (1.0 + 0.06 * float(betas[0]))


def axis_angle_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """``[..., 3]`` radians -> ``[..., 3, 3]`` rotation matrices (Rodrigues)."""
    angle = np.linalg.norm(rotvec, axis=-1, keepdims=True)
    axis = rotvec / np.maximum(angle, 1e-8)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(rotvec.shape[:-1] + (3, 3))
    s, c = np.sin(angle)[..., None], np.cos(angle)[..., None]
    eye = np.broadcast_to(np.eye(3, dtype=rotvec.dtype), k.shape)
    return eye + s * k + (1 - c) * (k @ k)


def matrix_to_axis_angle(matrix: np.ndarray) -> np.ndarray:
    """``[..., 3, 3]`` -> ``[..., 3]`` radians (angles below pi)."""
    cos = np.clip((np.trace(matrix, axis1=-2, axis2=-1) - 1) / 2, -1.0, 1.0)
    angle = np.arccos(cos)
    vec = np.stack([matrix[..., 2, 1] - matrix[..., 1, 2],
                    matrix[..., 0, 2] - matrix[..., 2, 0],
                    matrix[..., 1, 0] - matrix[..., 0, 1]], axis=-1)
    sin = np.sin(angle)
    scale = np.where(sin > 1e-6, angle / (2 * np.maximum(sin, 1e-6)), 0.5)
    return vec * scale[..., None]


def forward_kinematics(pose: np.ndarray, rest_joints: np.ndarray):
    """Pose ``[24, 3]`` rad + rest joints ``[24, 3]`` m -> (posed joints ``[24, 3]`` m, global rotations ``[24, 3, 3]``)."""
    local = axis_angle_to_matrix(pose.astype(np.float64))
    rotations = np.zeros((NUM_JOINTS, 3, 3))
    joints = np.zeros((NUM_JOINTS, 3))
    for j in range(NUM_JOINTS):
        p = PARENTS[j]
        if p < 0:
            rotations[j], joints[j] = local[j], rest_joints[j]
        else:
            rotations[j] = rotations[p] @ local[j]
            joints[j] = joints[p] + rotations[p] @ (rest_joints[j] - rest_joints[p])
    return joints.astype(np.float32), rotations.astype(np.float32)


def project(points: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """Weak perspective: ``[..., 3]`` metres + camera ``(s, tx, ty)`` -> ``[..., 2]`` NDC."""
    s, tx, ty = camera
    return np.stack([s * points[..., 0] + tx, -s * points[..., 1] + ty], axis=-1)
