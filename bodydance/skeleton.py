"""The SMPL-format kinematic skeleton shared by fitting (numpy) and geometry (torch).

Everything here is read off the open SMPL-format body (``data/open_body.npz``,
see :mod:`bodydance.body`), so the fitted skeleton, the rendered stand-in and
the mesh agree.

Tensor contract
---------------
* ``REST_JOINTS``: ``[24, 3]`` float32, metres, T-pose (arms along +/-X, +Y up,
  +Z forward), pelvis at the origin.
* ``JOINT_SHAPEDIRS``: ``[24, 3, 10]`` metres per unit beta: how shape moves the joints.
* ``pose``: ``[..., 24, 3]`` axis-angle radians, parent-relative.
* ``CAPSULES``: the per-frame geometry's stand-in for the surface, one tapered
  capsule per bone, its radii fitted to the mesh vertices skinned to that bone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bodydance_client.contract import JOINT_NAMES, JOINT_PARENTS, NUM_JOINTS, PART_NAMES

PARENTS = np.asarray(JOINT_PARENTS, dtype=np.int64)
OPEN_BODY = Path(__file__).parent / "data" / "open_body.npz"

with np.load(OPEN_BODY, allow_pickle=False) as _body:
    _vertices = _body["v_template"].astype(np.float64)
    _regressor = _body["J_regressor"].astype(np.float64)
    _weights = _body["weights"]
    REST_JOINTS = (_regressor @ _vertices).astype(np.float32)
    JOINT_SHAPEDIRS = np.einsum("jv,vcs->jcs", _regressor, _body["shapedirs"].astype(np.float64)).astype(np.float32)
assert REST_JOINTS.shape == (NUM_JOINTS, 3)


def _part(name: str) -> int:
    return PART_NAMES.index(name)


def _j(name: str) -> int:
    return JOINT_NAMES.index(name)


# (start joint, end joint or -1 for the top of the head, part label); radii are fitted below.
_SEGMENTS = (
    ("pelvis", "spine1", "torso"), ("spine1", "spine2", "torso"), ("spine2", "spine3", "torso"),
    ("spine3", "neck", "torso"), ("left_hip", "right_hip", "torso"),
    ("left_collar", "left_shoulder", "torso"), ("right_collar", "right_shoulder", "torso"),
    ("neck", "head", "head"), ("head", None, "head"),
    ("left_shoulder", "left_elbow", "upper_arm"), ("right_shoulder", "right_elbow", "upper_arm"),
    ("left_elbow", "left_wrist", "forearm"), ("right_elbow", "right_wrist", "forearm"),
    ("left_wrist", "left_hand", "hand"), ("right_wrist", "right_hand", "hand"),
    ("left_hip", "left_knee", "thigh"), ("right_hip", "right_knee", "thigh"),
    ("left_knee", "left_ankle", "shin_foot"), ("right_knee", "right_ankle", "shin_foot"),
    ("left_ankle", "left_foot", "shin_foot"), ("right_ankle", "right_foot", "shin_foot"),
)
_head_vertices = _vertices[_weights.argmax(1) == _j("head")]
HEAD_TOP_OFFSET = np.asarray([0.0, _head_vertices[:, 1].max() - REST_JOINTS[_j("head"), 1] - 0.05, 0.0], np.float32)


def _segment_distance(points, a, b):
    ab = b - a
    t = np.clip(((points - a) @ ab) / max(float(ab @ ab), 1e-9), 0.0, 1.0)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=1)


def _fit_radii(start: int, end: int):
    """Radii at both ends of a bone, fitted to the mesh vertices skinned mostly to it.

    Distance to the bone axis is regressed on the position along it (robustly:
    the 60th percentile in each of four slices), so the capsule tapers like the
    limb or torso it stands for.
    """
    a = REST_JOINTS[start].astype(np.float64)
    b = (a + HEAD_TOP_OFFSET) if end < 0 else REST_JOINTS[end].astype(np.float64)
    owner = start if end < 0 or PARENTS[end] == start else PARENTS[start]
    near = _vertices[_weights[:, owner] > 0.5]
    if len(near) < 8:
        return 0.05, 0.05
    ab = b - a
    t = np.clip(((near - a) @ ab) / float(ab @ ab), 0.0, 1.0)
    dist = _segment_distance(near, a, b)
    centres, radii = [], []
    for lo in (0.0, 0.25, 0.5, 0.75):
        sel = (t >= lo) & (t <= lo + 0.25)
        if sel.sum() >= 4:
            centres.append(lo + 0.125)
            radii.append(np.percentile(dist[sel], 60))
    if len(centres) < 2:
        r = float(np.median(dist))
        return r, r
    slope, intercept = np.polyfit(centres, radii, 1)
    return float(max(intercept, 0.01)), float(max(intercept + slope, 0.01))


def _capsule(a: str, b, part: str):
    start, end = _j(a), -1 if b is None else _j(b)
    return (start, end) + _fit_radii(start, end) + (_part(part),)


# (start joint, end joint or -1 for the head top, radius at start m, radius at end m, part label)
CAPSULES = tuple(_capsule(a, b, part) for a, b, part in _SEGMENTS)


def shaped_rest_joints(betas: np.ndarray) -> np.ndarray:
    """``[10]`` betas -> ``[24, 3]`` rest joints in metres."""
    return REST_JOINTS + JOINT_SHAPEDIRS @ np.asarray(betas, np.float32)


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
