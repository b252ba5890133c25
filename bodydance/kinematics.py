"""Rotations and forward kinematics, written once for numpy arrays and torch tensors alike.

The fit (numpy, inside the python backend, no torch) and the frame geometry
(torch, exported to ONNX) pose the same skeleton; both call these functions,
which use only operations the two libraries spell the same way (``@``,
indexing, ``reshape``, ``stack`` and the elementwise maths of the array's own
library).

Tensor contract (``...`` any batch shape, ``J`` joints)::

    rotvec            [..., 3]        axis-angle, radians
    local_rotations   [..., J, 3, 3]  each joint's rotation relative to its parent
    rest_joints       [..., J, 3]     metres (may omit the batch dims of local_rotations)
    -> world_rotations [..., J, 3, 3]
    -> posed_joints    [..., J, 3]    metres, the root left at its rest position
"""

from __future__ import annotations

import sys
from typing import Sequence

import numpy as np


def _namespace(x):
    """``numpy`` for numpy arrays, else the tensor's own library (torch), imported already by its caller."""
    if isinstance(x, np.ndarray):
        return np
    return sys.modules[type(x).__module__.split(".")[0]]


def axis_angle_to_matrix(rotvec):
    """``[..., 3]`` radians -> ``[..., 3, 3]`` rotation matrices (Rodrigues).

    The angle is ``sqrt(|v|^2 + 1e-12)`` so it stays differentiable and finite at zero, where the
    axis (then all zeros) gives the identity.
    """
    xp = _namespace(rotvec)
    angle = xp.sqrt((rotvec * rotvec).sum(-1) + 1e-12)[..., None]
    axis = rotvec / angle
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = x * 0
    one = zero + 1
    k = xp.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(rotvec.shape[:-1] + (3, 3))
    eye = xp.stack([one, zero, zero, zero, one, zero, zero, zero, one], -1).reshape(rotvec.shape[:-1] + (3, 3))
    s, c = xp.sin(angle)[..., None], xp.cos(angle)[..., None]
    return eye + s * k + (1.0 - c) * (k @ k)


def forward_kinematics(local_rotations, rest_joints, parents: Sequence[int]):
    """Chain each joint's rotation down the kinematic tree ``parents`` (-1 marks the root).

    Returns (world rotations ``[..., J, 3, 3]``, posed joints ``[..., J, 3]`` m): each joint
    sits at its parent's posed position plus the parent's world rotation applied to the
    rest-pose bone between them.
    """
    xp = _namespace(local_rotations)
    if rest_joints.ndim < local_rotations.ndim - 1:  # one rest skeleton for the whole batch
        rest_joints = xp.broadcast_to(rest_joints, tuple(local_rotations.shape[:-2]) + (3,))
    rotations, joints = [], []
    for j, parent in enumerate(parents):
        if parent < 0:
            rotations.append(local_rotations[..., j, :, :])
            joints.append(rest_joints[..., j, :])
        else:
            bone = rest_joints[..., j, :] - rest_joints[..., parent, :]
            rotations.append(rotations[parent] @ local_rotations[..., j, :, :])
            joints.append(joints[parent] + (rotations[parent] @ bone[..., None])[..., 0])
    return xp.stack(rotations, -3), xp.stack(joints, -2)
