"""The SMPL-format kinematic skeleton shared by fitting (numpy) and geometry (torch).

Everything here is read off the open SMPL-format body (``data/open_body.npz``,
see :mod:`bodydance.body`), so the fitted skeleton and the mesh agree.

Tensor contract
---------------
* ``REST_JOINTS``: ``[24, 3]`` float32, metres, T-pose (arms along +/-X, +Y up,
  +Z forward), pelvis at the origin.
* ``JOINT_SHAPEDIRS``: ``[24, 3, 10]`` metres per unit beta: how shape moves the joints.
* ``pose``: ``[..., 24, 3]`` axis-angle radians, parent-relative.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bodydance.kinematics import axis_angle_to_matrix, forward_kinematics
from bodydance_client.contract import JOINT_PARENTS, NUM_JOINTS

__all__ = ("PARENTS", "REST_JOINTS", "JOINT_SHAPEDIRS", "shaped_rest_joints", "axis_angle_to_matrix",
           "matrix_to_axis_angle", "pose_skeleton", "project")

PARENTS = np.asarray(JOINT_PARENTS, dtype=np.int64)
OPEN_BODY = Path(__file__).parent / "data" / "open_body.npz"

with np.load(OPEN_BODY, allow_pickle=False) as _body:
    _vertices = _body["v_template"].astype(np.float64)
    _regressor = _body["J_regressor"].astype(np.float64)
    REST_JOINTS = (_regressor @ _vertices).astype(np.float32)
    JOINT_SHAPEDIRS = np.einsum("jv,vcs->jcs", _regressor, _body["shapedirs"].astype(np.float64)).astype(np.float32)
assert REST_JOINTS.shape == (NUM_JOINTS, 3)


def shaped_rest_joints(betas: np.ndarray) -> np.ndarray:
    """``[10]`` betas -> ``[24, 3]`` rest joints in metres."""
    return REST_JOINTS + JOINT_SHAPEDIRS @ np.asarray(betas, np.float32)


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


def pose_skeleton(pose: np.ndarray, rest_joints: np.ndarray):
    """Pose ``[..., 24, 3]`` rad + rest joints ``[24, 3]`` m -> (posed joints ``[..., 24, 3]`` m,
    world rotations ``[..., 24, 3, 3]``), float32, computed in float64."""
    rotations, joints = forward_kinematics(axis_angle_to_matrix(np.asarray(pose, np.float64)),
                                           np.asarray(rest_joints, np.float64), PARENTS)
    return joints.astype(np.float32), rotations.astype(np.float32)


def project(points: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """Weak perspective: ``[..., 3]`` metres + camera ``(s, tx, ty)`` -> ``[..., 2]`` NDC."""
    s, tx, ty = camera
    return np.stack([s * points[..., 0] + tx, -s * points[..., 1] + ty], axis=-1)
