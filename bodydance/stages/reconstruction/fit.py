"""Stage 1 subject side, part 3: fit the SMPL-format skeleton to the observed joints (pure numpy).

:func:`fit_body` fits ``betas[0]`` so that the shaped skeleton's long bones match the
observed lengths; the pose joint by joint down the kinematic tree (each joint the
rotation that takes its rest bones, in its parent's posed frame, onto the observed bone
directions: a swing for one bone, weighted Kabsch for several); the root from the hip
line and the torso axis (on half-body photos: the shoulder line and an upright prior),
the spine sharing the turn to the shoulder frame; the weak-perspective camera by linear
least squares; then a few Levenberg-Marquardt steps on 2D reprojection + 3D bone
directions + a pull towards the closed-form pose. Unseen joints keep a plausible
default: legs straight (rest), arms hanging by the sides. Only ``betas[0]`` is
estimated; the other nine stay 0.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import numpy as np

from bodydance.kinematics import forward_kinematics
from bodydance.skeleton import (
    PARENTS, REST_JOINTS, axis_angle_to_matrix, matrix_to_axis_angle, project, shaped_rest_joints,
)
from bodydance.stages.reconstruction.landmarks import J, SPINE, VISIBLE
from bodydance_client import contract as C

ARMS_DOWN = 1.25  # rad about Z: a T-pose arm lowered to hang by the side
MAX_ABS_BETA = 3.0

# Refinement weights. Residuals are NDC (2D) or NDC-equivalent displacements (3D), so the fit
# does not depend on the working resolution.
W_DIRECTION = 0.5  # 3D bone direction (keeps the depth MediaPipe saw) against 2D reprojection
W_PRIOR = 0.05  # NDC per radian away from the closed-form pose (fixes twists and unseen joints)
REFINE_ITERATIONS = 12

# Joints whose rotation moves another joint (the rest are leaves: head, hands, feet).
CHILDREN = {j: [c for c in range(C.NUM_JOINTS) if PARENTS[c] == j] for j in range(C.NUM_JOINTS)}
ACTIVE = tuple(j for j in range(C.NUM_JOINTS) if CHILDREN[j])
# Long segments whose observed lengths give betas[0] (weight; the torso chord bends with the spine).
HEIGHT_SEGMENTS = (
    ("pelvis", "neck", 0.3),
    ("left_hip", "left_knee", 1.0), ("left_knee", "left_ankle", 1.0),
    ("right_hip", "right_knee", 1.0), ("right_knee", "right_ankle", 1.0),
    ("left_shoulder", "left_elbow", 1.0), ("left_elbow", "left_wrist", 1.0),
    ("right_shoulder", "right_elbow", 1.0), ("right_elbow", "right_wrist", 1.0),
)
# Lines that are not bones but whose 3D direction the refinement keeps (torso axis, hip and shoulder lines).
FRAME_SEGMENTS = ((J["pelvis"], J["neck"]), (J["right_hip"], J["left_hip"]), (J["right_shoulder"], J["left_shoulder"]))
MIN_HEIGHT_EVIDENCE = 0.4  # metres of rest segment length needed before betas[0] moves


@dataclasses.dataclass
class BodyFit:
    """What :func:`fit_body` returns."""

    pose: np.ndarray  # [24, 3] float32 rad
    betas: np.ndarray  # [10] float32
    camera: np.ndarray  # [3] float32
    joints: np.ndarray  # [24, 3] float32 metres, FK of pose with the shaped rest joints
    rms_ndc: float  # RMS reprojection over confident joints, NDC units (nan when none)
    rms_ndc_closed_form: float  # the same before the refinement


def _kabsch(u: np.ndarray, t: np.ndarray, w: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Rotation R maximising ``sum w t . (R u)`` (unit vectors ``[K, 3]``) and the singular values."""
    h = (w[:, None, None] * t[:, :, None] * u[:, None, :]).sum(0)
    a, s, bt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(a @ bt)) or 1.0
    return a @ np.diag([1.0, 1.0, d]) @ bt, s


def _swing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking unit vector ``a`` onto unit vector ``b``."""
    axis = np.cross(a, b)
    sin, cos = float(np.linalg.norm(axis)), float(np.dot(a, b))
    if sin < 1e-9:
        if cos > 0:
            return np.eye(3)
        ortho = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        return axis_angle_to_matrix(ortho / np.linalg.norm(ortho) * np.pi)
    return axis_angle_to_matrix(axis / sin * np.arctan2(sin, cos))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def default_pose(seen: np.ndarray) -> np.ndarray:
    """Rest pose, except that an arm whose upper arm is unseen hangs by the side."""
    pose = np.zeros((C.NUM_JOINTS, 3))
    for side, sign in (("left", -1.0), ("right", 1.0)):
        if not (seen[J[f"{side}_shoulder"]] and seen[J[f"{side}_elbow"]]):
            pose[J[f"{side}_shoulder"]] = (0.0, 0.0, sign * ARMS_DOWN)
    return pose


def fit_betas(joints_3d: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """``betas[0]`` whose shaped skeleton best matches the lengths of the long segments that are seen.

    Works for any body whose joints are linear in the betas (:func:`skeleton.shaped_rest_joints`):
    weighted least squares over the segment lengths, on a grid over [-3, 3] then a local refinement.
    """
    betas = np.zeros(C.NUM_BETAS, np.float32)
    segs = [(J[a], J[b], w) for a, b, w in HEIGHT_SEGMENTS if seen[J[a]] and seen[J[b]]]
    rest0 = shaped_rest_joints(np.zeros(C.NUM_BETAS, np.float32)).astype(np.float64)
    if not segs or sum(np.linalg.norm(rest0[b] - rest0[a]) for a, b, _ in segs) < MIN_HEIGHT_EVIDENCE:
        return betas
    unit = np.zeros(C.NUM_BETAS, np.float32)
    unit[0] = 1.0
    direction = shaped_rest_joints(unit).astype(np.float64) - rest0
    ia, ib, w = (np.array(x) for x in zip(*segs))
    observed = np.linalg.norm(joints_3d[ib] - joints_3d[ia], axis=-1)

    def cost(grid: np.ndarray) -> np.ndarray:
        d = (rest0[ib] - rest0[ia])[None] + grid[:, None, None] * (direction[ib] - direction[ia])[None]
        return ((np.linalg.norm(d, axis=-1) - observed[None]) ** 2 * w[None]).sum(-1)

    grid = np.linspace(-MAX_ABS_BETA, MAX_ABS_BETA, 121)
    best = grid[np.argmin(cost(grid))]
    fine = np.clip(np.linspace(best - 0.05, best + 0.05, 101), -MAX_ABS_BETA, MAX_ABS_BETA)
    betas[0] = fine[np.argmin(cost(fine))]
    return betas


UP, ACROSS = np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0])


def _torso_pairs(joints_3d: np.ndarray, seen: np.ndarray, rest: np.ndarray, lower: bool):
    """Global direction pairs (rest unit, observed unit, weight) of the lower (hips) or upper (shoulders) torso.

    Both use the torso axis pelvis -> neck; with the line between the hips or the shoulders it fixes
    the frame. Where a line is missing, upright / facing-the-camera priors take its place; where it
    is there, they only break ties (weight 1e-4).
    """
    u, t, w = [], [], []

    def add(a: int, b: int, weight: float) -> bool:
        if seen[a] and seen[b]:
            u.append(_unit(rest[b] - rest[a]))
            t.append(_unit(joints_3d[b] - joints_3d[a]))
            w.append(weight)
            return True
        return False

    upward = add(J["pelvis"], J["neck"], 1.0)
    line = ("left_hip", "right_hip") if lower else ("left_shoulder", "right_shoulder")
    across = add(J[line[1]], J[line[0]], 1.0)
    if lower and not across:  # half-body photo: the shoulder line gives the heading
        across = add(J["right_shoulder"], J["left_shoulder"], 0.5)
    u += [UP, ACROSS]
    t += [UP, ACROSS]
    w += [1e-4 if upward else 0.3, 1e-4 if across else 0.3]
    return np.array(u), np.array(t), np.array(w)


def fit_pose_closed_form(joints_3d: np.ndarray, seen: np.ndarray, rest: Optional[np.ndarray] = None) -> np.ndarray:
    """``[24, 3]`` rad whose bone directions match the seen ``joints_3d`` (SMPL axes), joint by joint.

    ``rest``: the (shaped) rest joints the pose applies to; REST_JOINTS by default. Each joint gets
    the rotation that takes its rest bones (to its children), in its parent's posed frame, onto the
    observed ones: a swing for one bone, weighted Kabsch for several. Where the spine joints are not
    observed (MediaPipe has no spine landmarks) the root takes the lower-torso frame and the three
    spine joints share equally the turn from it to the upper-torso frame (shoulder line + torso axis).
    """
    pose = default_pose(seen)
    rest = (REST_JOINTS if rest is None else rest).astype(np.float64)
    glob = np.zeros((C.NUM_JOINTS, 3, 3))
    spine_share = None
    for j in range(C.NUM_JOINTS):
        parent_rot = glob[PARENTS[j]] if PARENTS[j] >= 0 else np.eye(3)
        # The joint and its children move rigidly with the joint's frame: use the bones from the joint
        # and, where the joint itself is seen, the lines between its children too (twist).
        kids = [c for c in CHILDREN[j] if seen[c]]
        pairs = [] if not seen[j] else [(j, c) for c in kids] + [
            (a, b) for i, a in enumerate(kids) for b in kids[i + 1:]]
        u = [_unit(rest[b] - rest[a]) for a, b in pairs]
        t = [parent_rot.T @ _unit(joints_3d[b] - joints_3d[a]) for a, b in pairs]
        w = [float(np.linalg.norm(rest[b] - rest[a])) for a, b in pairs]
        if j == 0:
            if seen[list(SPINE)].all():
                u, t, w = u + [UP, ACROSS], t + [UP, ACROSS], w + [1e-4, 1e-4]
                local, _ = _kabsch(np.array(u), np.array(t), np.array(w))
            else:
                lu, lt, lw = _torso_pairs(joints_3d, seen, rest, lower=True)
                local, _ = _kabsch(np.concatenate([np.array(u).reshape(-1, 3), lu]),
                                   np.concatenate([np.array(t).reshape(-1, 3), lt]), np.concatenate([w, lw]))
                if seen[J["left_shoulder"]] and seen[J["right_shoulder"]]:
                    upper, _ = _kabsch(*_torso_pairs(joints_3d, seen, rest, lower=False))
                    spine_share = matrix_to_axis_angle(local.T @ upper) / len(SPINE)
            pose[j] = matrix_to_axis_angle(local)
        elif j in SPINE and not seen[j]:
            if spine_share is not None:
                pose[j] = spine_share
        elif pairs and CHILDREN[j]:
            local, s = _kabsch(np.array(u), np.array(t), np.array(w))
            if s[1] < 0.05 * s[0]:  # all bones (nearly) parallel: no twist information, take the swing
                k = int(np.argmax(w))
                local = _swing(u[k], t[k])
            pose[j] = matrix_to_axis_angle(local)
        glob[j] = parent_rot @ axis_angle_to_matrix(pose[j])
    return pose


def fit_camera(joints_3d: np.ndarray, joints_2d: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least-squares weak perspective ``(s, tx, ty)``: ``x = s X + tx``, ``y = -s Y + ty``."""
    sel = weights > 0
    if sel.sum() < 2:
        return np.array([1.0, 0.0, 0.0])
    p3, p2, w = joints_3d[sel].astype(np.float64), joints_2d[sel].astype(np.float64), np.sqrt(weights[sel])
    a = np.zeros((2 * len(p3), 3))
    a[0::2, 0], a[0::2, 1] = p3[:, 0], 1.0
    a[1::2, 0], a[1::2, 2] = -p3[:, 1], 1.0
    b = p2.reshape(-1)
    ww = np.repeat(w, 2)
    cam, *_ = np.linalg.lstsq(a * ww[:, None], b * ww, rcond=None)
    cam[0] = max(cam[0], 1e-3)
    return cam


def _joints(pose: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """``[B, 24, 3]`` rad + rest ``[24, 3]`` m -> posed joints ``[B, 24, 3]`` m."""
    return forward_kinematics(axis_angle_to_matrix(pose), rest, PARENTS)[1]


class _Objective:
    """Residuals of the refinement for a batch of parameter vectors (active joint rotations + camera)."""

    def __init__(self, joints_3d, joints_2d, confidence, rest, pose_init, camera_scale):
        seen = confidence >= VISIBLE
        self.rest = rest
        self.pose_init = pose_init
        self.idx2d = np.flatnonzero(seen)
        self.w2d = np.sqrt(confidence[self.idx2d])[:, None]
        self.target_2d = joints_2d[self.idx2d]
        bones = [(int(PARENTS[c]), c) for c in range(1, C.NUM_JOINTS)] + list(FRAME_SEGMENTS)
        bones = [(a, b) for a, b in bones if seen[a] and seen[b]]
        self.bones = np.array(bones, dtype=np.int64).reshape(-1, 2)
        self.target_dir = _unit(joints_3d[self.bones[:, 1]] - joints_3d[self.bones[:, 0]])
        lengths = np.linalg.norm(rest[self.bones[:, 1]] - rest[self.bones[:, 0]], axis=-1)
        # A direction error of a bone counts as the NDC displacement it causes at its child.
        self.w3d = (np.sqrt(W_DIRECTION) * camera_scale * lengths)[:, None]

    def pose_of(self, params: np.ndarray) -> np.ndarray:
        pose = np.broadcast_to(self.pose_init, (params.shape[0],) + self.pose_init.shape).copy()
        pose[:, ACTIVE] = params[:, :3 * len(ACTIVE)].reshape(-1, len(ACTIVE), 3)
        return pose

    def residuals(self, params: np.ndarray) -> np.ndarray:
        joints = _joints(self.pose_of(params), self.rest)
        cam = params[:, -3:]
        x = cam[:, None, 0] * joints[:, self.idx2d, 0] + cam[:, None, 1]
        y = -cam[:, None, 0] * joints[:, self.idx2d, 1] + cam[:, None, 2]
        r2d = (np.stack([x, y], -1) - self.target_2d) * self.w2d
        direction = _unit(joints[:, self.bones[:, 1]] - joints[:, self.bones[:, 0]])
        r3d = (direction - self.target_dir) * self.w3d
        prior = (params[:, :3 * len(ACTIVE)] - self.pose_init[list(ACTIVE)].reshape(-1)) * W_PRIOR
        b = params.shape[0]
        return np.concatenate([r2d.reshape(b, -1), r3d.reshape(b, -1), prior], axis=1)


def _refine(objective: _Objective, params: np.ndarray, iterations: int) -> np.ndarray:
    """Levenberg-Marquardt with a forward-difference Jacobian (one batched FK per iteration)."""
    eps = 1e-6
    lam = 1e-3
    r = objective.residuals(params[None])[0]
    cost = float(r @ r)
    for _ in range(iterations):
        probes = params[None] + eps * np.eye(len(params))
        jac = (objective.residuals(probes) - r[None]).T / eps  # [M, P]
        jtj, jtr = jac.T @ jac, jac.T @ r
        improved = False
        for _ in range(6):
            step = np.linalg.solve(jtj + lam * (np.diag(np.diag(jtj)) + 1e-9 * np.eye(len(params))), -jtr)
            candidate = params + step
            r_new = objective.residuals(candidate[None])[0]
            cost_new = float(r_new @ r_new)
            if np.isfinite(cost_new) and cost_new < cost:
                params, r, improved = candidate, r_new, cost - cost_new > 1e-12 * max(cost, 1e-12)
                cost = cost_new
                lam = max(lam / 3, 1e-7)
                break
            lam *= 4
        if not improved:
            break
    return params


def _rms(joints: np.ndarray, camera: np.ndarray, joints_2d: np.ndarray, seen: np.ndarray) -> float:
    if not seen.any():
        return float("nan")
    d = project(joints[seen], camera) - joints_2d[seen]
    return float(np.sqrt((d ** 2).sum(-1).mean()))


def fit_body(joints_3d: np.ndarray, joints_2d: np.ndarray, confidence: np.ndarray,
             refine_iterations: int = REFINE_ITERATIONS) -> BodyFit:
    """Fit shape, pose and camera to SMPL-ordered observations.

    ``joints_3d``: ``[24, 3]`` metres in SMPL axes (any origin); ``joints_2d``: ``[24, 2]`` NDC;
    ``confidence``: ``[24]``; joints below :data:`VISIBLE` are ignored. The head stays straight
    on the neck: turning it from the face's landmarks cost 0.5 dB on the synthetic benchmark and
    did not help the face check (README, "The head moves as one piece").
    """
    joints_3d = np.asarray(joints_3d, np.float64)
    joints_2d = np.asarray(joints_2d, np.float64)
    confidence = np.nan_to_num(np.asarray(confidence, np.float64), nan=0.0)
    finite = np.isfinite(joints_3d).all(-1) & np.isfinite(joints_2d).all(-1)
    confidence = np.where(finite, confidence, 0.0)
    joints_3d, joints_2d = np.nan_to_num(joints_3d), np.nan_to_num(joints_2d)
    seen = confidence >= VISIBLE

    betas = fit_betas(joints_3d, seen)
    rest = shaped_rest_joints(betas).astype(np.float64)
    pose0 = fit_pose_closed_form(joints_3d, seen, rest)
    joints0 = _joints(pose0[None], rest)[0]
    camera0 = fit_camera(joints0, joints_2d, np.where(seen, confidence, 0.0))
    rms0 = _rms(joints0, camera0, joints_2d, seen)

    pose, camera = pose0, camera0
    if refine_iterations > 0 and seen.sum() >= 2:
        objective = _Objective(joints_3d, joints_2d, confidence, rest, pose0, camera0[0])
        params = np.concatenate([pose0[list(ACTIVE)].reshape(-1), camera0])
        params = _refine(objective, params, refine_iterations)
        refined_pose = objective.pose_of(params[None])[0]
        if np.isfinite(params).all() and params[-3] > 0:
            pose, camera = refined_pose, params[-3:]
    joints = _joints(pose[None], rest)[0]
    return BodyFit(
        pose=pose.astype(np.float32), betas=betas, camera=camera.astype(np.float32), joints=joints.astype(np.float32),
        rms_ndc=_rms(joints, camera, joints_2d, seen), rms_ndc_closed_form=rms0)


# --------------------------------------------------------------------------------------- the stage

