"""Stage 1, subject side: photo -> letterboxed image, person mask, body shape, pose and camera.

Pipeline
--------
1. The photo is checked (uint8, ``H x W x 3`` RGB, each side within
   ``MIN_PHOTO_SIDE..MAX_PHOTO_SIDE``); anything else is a :class:`BadImageError`.
2. ``source_image`` is the photo letterboxed into ``N x N`` with
   :func:`contract.letterbox_geometry`; the bars are flat mid grey (127/255), a
   neutral colour that neither the mask nor the parsing mistakes for skin or
   clothes.
3. MediaPipe's bundled BlazePose *full* (``model_complexity=1``; 0 and 2 try to
   download their weights and fail) runs once on the photo itself (downsized to
   at most ``detection_side`` px, never padded) and gives 33 landmarks in the
   image, the same landmarks in metric 3D, and a person segmentation. Image
   landmarks are mapped through the letterbox into NDC; the segmentation is
   letterboxed the same way (bars = 0) into ``person_mask``.
4. The 33 landmarks become the 24 SMPL joints through one fixed linear map
   (:data:`LANDMARK_TO_JOINT`), used for the 3D and the 2D landmarks alike:
   pelvis, spine, neck and collars are placed along the torso at the heights
   and widths the rest skeleton has them, hands between index and pinky, feet
   mostly at the toes. A joint's confidence is the lowest visibility among the
   landmarks it is made of; landmarks outside the photo count as unseen, and
   the three spine joints always do (MediaPipe does not see the spine's curve).
   Joints below :data:`VISIBLE` never drive the fit.
5. :func:`fit_body` fits the SMPL-format skeleton: ``betas[0]`` so that the
   shaped skeleton's long bones match the observed lengths; the pose joint by
   joint down the kinematic tree (each joint the rotation that takes its rest
   bones, in its parent's posed frame, onto the observed bone directions: a
   swing for one bone, weighted Kabsch for several); the root from the hip
   line and the torso axis (on half-body photos: the shoulder line and an
   upright prior), the spine sharing the turn to the shoulder frame; the
   weak-perspective camera by linear least squares; then a few
   Levenberg-Marquardt steps on 2D reprojection + 3D bone directions + a pull
   towards the closed-form pose. Unseen joints keep a plausible default: legs
   straight (rest), arms hanging by the sides.

Limitations: MediaPipe Pose follows one person, so ``person_count`` is 1
whenever a person is found (in a group photo the most prominent one is used).
Only ``betas[0]`` is estimated; the other nine stay 0.

numpy + OpenCV + MediaPipe only: this runs inside a Triton python-backend model.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from bodydance.skeleton import (
    PARENTS, REST_JOINTS, axis_angle_to_matrix, matrix_to_axis_angle, project,
    shaped_rest_joints,
)
from bodydance_client import contract as C
from bodydance_client.errors import BadImageError, NoPersonError

NUM_LANDMARKS = 33
# MediaPipe Pose landmark indices (the person's own left/right, as in SMPL).
LANDMARKS = dict(
    nose=0, left_ear=7, right_ear=8, left_shoulder=11, right_shoulder=12, left_elbow=13, right_elbow=14,
    left_wrist=15, right_wrist=16, left_pinky=17, right_pinky=18, left_index=19, right_index=20,
    left_hip=23, right_hip=24, left_knee=25, right_knee=26, left_ankle=27, right_ankle=28,
    left_heel=29, right_heel=30, left_foot_index=31, right_foot_index=32,
)
J = {name: i for i, name in enumerate(C.JOINT_NAMES)}

VISIBLE = 0.5  # joint confidence below which a joint does not drive the fit
MIN_PERSON_SIZE = 0.08  # of the letterboxed square: smaller people are refused
PAD_VALUE = 127  # letterbox bars of source_image, uint8 grey
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
SPINE = (J["spine1"], J["spine2"], J["spine3"])
MIN_PERSON_AREA = 0.01  # of the photo, for a separate person in the people count
MIN_PERSON_HEIGHT_SHARE = 0.08  # of the photo height, likewise
MIN_HEIGHT_EVIDENCE = 0.4  # metres of rest segment length needed before betas[0] moves


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


@dataclasses.dataclass
class SubjectReconstruction:
    """The SUBJECT_RECONSTRUCTION outputs (contract shapes and dtypes, no batch dim) plus diagnostics."""

    source_image: np.ndarray  # [3, N, N] float32 in [0, 1]
    person_mask: np.ndarray  # [1, N, N] float32 in [0, 1]
    betas: np.ndarray  # [10] float32
    source_pose: np.ndarray  # [24, 3] float32, axis-angle rad
    camera: np.ndarray  # [3] float32 (s NDC/m, tx, ty)
    person_count: np.ndarray  # [1] int32
    # diagnostics
    joints_2d: np.ndarray  # [24, 2] float32 NDC: the observed joints (trust them where confidence >= VISIBLE)
    joint_confidence: np.ndarray  # [24] float32 in [0, 1]
    reprojection_px: float  # RMS distance, in pixels of the N x N image, of fitted to observed confident joints


@dataclasses.dataclass
class BodyFit:
    """What :func:`fit_body` returns."""

    pose: np.ndarray  # [24, 3] float32 rad
    betas: np.ndarray  # [10] float32
    camera: np.ndarray  # [3] float32
    joints: np.ndarray  # [24, 3] float32 metres, FK of pose with the shaped rest joints
    rms_ndc: float  # RMS reprojection over confident joints, NDC units (nan when none)
    rms_ndc_closed_form: float  # the same before the refinement


# --------------------------------------------------------------------------------------- input checks


def check_photo(photo: np.ndarray) -> None:
    """Raise :class:`BadImageError` saying what is wrong unless ``photo`` is a usable uint8 RGB image."""
    if not isinstance(photo, np.ndarray):
        raise BadImageError(f"photo must be a numpy array, got {type(photo).__name__}")
    if photo.dtype != np.uint8:
        raise BadImageError(f"photo must be uint8 RGB, got dtype {photo.dtype}")
    if photo.ndim != 3 or photo.shape[2] != 3:
        raise BadImageError(f"photo must be H x W x 3 (RGB), got shape {tuple(photo.shape)}")
    h, w = photo.shape[:2]
    if min(h, w) < C.MIN_PHOTO_SIDE or max(h, w) > C.MAX_PHOTO_SIDE:
        raise BadImageError(
            f"photo is {w}x{h} px; each side must be {C.MIN_PHOTO_SIDE} to {C.MAX_PHOTO_SIDE} px")


def _letterbox_sizes(h: int, w: int, resolution: int) -> Tuple[int, int, int, int]:
    scale, left, top = C.letterbox_geometry(h, w, resolution)
    return max(1, round(w * scale)), max(1, round(h * scale)), left, top


def letterbox(image: np.ndarray, resolution: int, fill=PAD_VALUE) -> np.ndarray:
    """``[H, W(, C)]`` -> ``[N, N(, C)]`` centred, bars = ``fill``; geometry of :func:`contract.letterbox_geometry`."""
    h, w = image.shape[:2]
    new_w, new_h, left, top = _letterbox_sizes(h, w, resolution)
    interp = cv2.INTER_AREA if new_w < w else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interp).reshape((new_h, new_w) + image.shape[2:])
    out = np.full((resolution, resolution) + image.shape[2:], fill, dtype=image.dtype)
    out[top:top + new_h, left:left + new_w] = resized
    return out


def photo_to_ndc(xy_norm: np.ndarray, h: int, w: int, resolution: int) -> np.ndarray:
    """Landmarks normalised to the photo (``[..., 2]`` in [0, 1]) -> NDC of the letterboxed square."""
    new_w, new_h, left, top = _letterbox_sizes(h, w, resolution)
    px = np.stack([xy_norm[..., 0] * new_w + left, xy_norm[..., 1] * new_h + top], axis=-1)
    return px * (2.0 / resolution) - 1.0


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


def check_person_size(ndc: np.ndarray, confidence: np.ndarray) -> None:
    """NoPersonError unless the confident landmarks span at least MIN_PERSON_SIZE of the square."""
    seen = ndc[confidence >= VISIBLE]
    if len(seen) < 4:
        raise NoPersonError(f"no person found in the photo (only {len(seen)} body landmarks are clearly visible)")
    extent = float(np.ptp(seen, axis=0).max()) / 2.0
    if extent < MIN_PERSON_SIZE:
        raise NoPersonError(
            f"the person is too small: {extent:.1%} of the photo; at least {MIN_PERSON_SIZE:.0%} is needed")


# --------------------------------------------------------------------------------------- fitting


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


def _fk_batch(pose: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """``[B, 24, 3]`` rad -> ``[B, 24, 3]`` joints (same convention as skeleton.forward_kinematics)."""
    local = axis_angle_to_matrix(pose)
    glob = [None] * C.NUM_JOINTS
    joints = [None] * C.NUM_JOINTS
    for j in range(C.NUM_JOINTS):
        p = PARENTS[j]
        if p < 0:
            glob[j] = local[:, j]
            joints[j] = np.broadcast_to(rest[j], (pose.shape[0], 3))
        else:
            glob[j] = glob[p] @ local[:, j]
            joints[j] = joints[p] + glob[p] @ (rest[j] - rest[p])
    return np.stack(joints, axis=1)


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
        joints = _fk_batch(self.pose_of(params), self.rest)
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
    ``confidence``: ``[24]``; joints below :data:`VISIBLE` are ignored.
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
    joints0 = _fk_batch(pose0[None], rest)[0]
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
    joints = _fk_batch(pose[None], rest)[0]
    return BodyFit(
        pose=pose.astype(np.float32), betas=betas, camera=camera.astype(np.float32), joints=joints.astype(np.float32),
        rms_ndc=_rms(joints, camera, joints_2d, seen), rms_ndc_closed_form=rms0)


# --------------------------------------------------------------------------------------- the stage


class Reconstructor:
    """Holds one MediaPipe Pose graph; ``reconstructor(photo)`` -> :class:`SubjectReconstruction`.

    Reusable; calls from several threads are serialised around the MediaPipe graph (which is
    not re-entrant) and run the rest concurrently.
    """

    def __init__(self, resolution: int = C.DEFAULT_RESOLUTION, detection_side: int = 1024):
        import mediapipe as mp

        self.resolution = int(resolution)
        self.detection_side = int(detection_side)
        self._pose = mp.solutions.pose.Pose(
            static_image_mode=True, model_complexity=1, enable_segmentation=True, min_detection_confidence=0.5)
        # Pose follows one person; the (bundled, offline) selfie segmentation sees everyone, so it counts
        # the people and points Pose at the largest.
        self._people = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=1)
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._pose.close()
                self._people.close()
                self._closed = True

    def __enter__(self) -> "Reconstructor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _people_boxes(self, image: np.ndarray):
        """Boxes (x0, y0, x1, y1) px of the separate people in ``image``, largest first."""
        with self._lock:
            mask = self._people.process(image).segmentation_mask
        if mask is None:
            return []
        h, w = image.shape[:2]
        # Close small gaps first: a dark collar or a belt can cut one person into two blobs.
        size = max(3, int(0.04 * max(h, w)) | 1)
        solid = cv2.morphologyEx((mask > 0.5).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((size, size), np.uint8))
        count, _, stats, _ = cv2.connectedComponentsWithStats(solid, connectivity=8)
        boxes = []
        for x, y, bw, bh, area in stats[1:count]:
            if area >= MIN_PERSON_AREA * h * w and bh >= MIN_PERSON_HEIGHT_SHARE * h:
                boxes.append((area, (x, y, x + bw, y + bh)))
        return [box for _, box in sorted(boxes, key=lambda item: -item[0])]

    def _detect(self, photo: np.ndarray):
        h, w = photo.shape[:2]
        image = photo
        if max(h, w) > self.detection_side:
            f = self.detection_side / max(h, w)
            image = cv2.resize(photo, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        image = np.ascontiguousarray(image)
        ih, iw = image.shape[:2]
        with self._lock:
            if self._closed:
                raise RuntimeError("this Reconstructor is closed")
        people = self._people_boxes(image)
        x0, y0, x1, y1 = 0, 0, iw, ih
        if len(people) > 1:  # several people: fit the largest, seen through a crop around it
            bx0, by0, bx1, by1 = people[0]
            pad_x, pad_y = 0.15 * (bx1 - bx0), 0.15 * (by1 - by0)
            x0, y0 = int(max(0, bx0 - pad_x)), int(max(0, by0 - pad_y))
            x1, y1 = int(min(iw, bx1 + pad_x)), int(min(ih, by1 + pad_y))
        with self._lock:
            result = self._pose.process(np.ascontiguousarray(image[y0:y1, x0:x1]))
        if result.pose_landmarks is None or result.pose_world_landmarks is None:
            raise NoPersonError("no person found in the photo")
        cw, ch = x1 - x0, y1 - y0
        image_lm = np.array([[(p.x * cw + x0) / iw, (p.y * ch + y0) / ih, p.visibility]
                             for p in result.pose_landmarks.landmark], np.float64)
        world_lm = np.array([[p.x, p.y, p.z] for p in result.pose_world_landmarks.landmark], np.float64)
        mask = None
        if result.segmentation_mask is not None:
            mask = np.zeros((ih, iw), np.float32)
            mask[y0:y1, x0:x1] = np.asarray(result.segmentation_mask, np.float32)
        return image_lm, world_lm, mask, max(1, len(people))

    def __call__(self, photo: np.ndarray, resolution: Optional[int] = None) -> SubjectReconstruction:
        check_photo(photo)
        n = int(resolution or self.resolution)
        h, w = photo.shape[:2]
        image_lm, world_lm, mask, people = self._detect(photo)
        if mask is None:
            raise NoPersonError("no person found in the photo (the segmentation came back empty)")

        xy, visibility = image_lm[:, :2], image_lm[:, 2]
        inside = (xy >= 0).all(-1) & (xy <= 1).all(-1)
        visibility = np.where(inside & np.isfinite(xy).all(-1), np.nan_to_num(visibility), 0.0)
        landmarks_ndc = photo_to_ndc(xy, h, w, n)
        check_person_size(landmarks_ndc, visibility)
        # MediaPipe world: x image-right, y down, z away from the camera -> SMPL: +Y up, +Z towards it.
        world = world_lm * np.array([1.0, -1.0, -1.0])
        joints_3d, confidence = landmarks_to_joints(world, visibility)
        joints_2d, _ = landmarks_to_joints(landmarks_ndc, visibility)
        seen = confidence >= VISIBLE
        shoulders = seen[J["left_shoulder"]] and seen[J["right_shoulder"]]
        if not (shoulders or (seen[J["left_hip"]] and seen[J["right_hip"]])):
            raise NoPersonError("the body is not visible enough: the photo must show both shoulders or both hips")

        fit = fit_body(joints_3d, joints_2d, confidence)
        source = letterbox(photo, n).astype(np.float32) * np.float32(1 / 255)
        person_mask = letterbox(np.clip(np.nan_to_num(mask), 0.0, 1.0), n, fill=0.0)
        out = SubjectReconstruction(
            source_image=np.ascontiguousarray(source.transpose(2, 0, 1), dtype=np.float32),
            person_mask=np.ascontiguousarray(person_mask[None], dtype=np.float32),
            betas=fit.betas.astype(np.float32),
            source_pose=fit.pose.astype(np.float32),
            camera=fit.camera.astype(np.float32),
            person_count=np.asarray([people], np.int32),
            joints_2d=np.nan_to_num(joints_2d).astype(np.float32),
            joint_confidence=np.clip(confidence, 0.0, 1.0).astype(np.float32),
            reprojection_px=fit.rms_ndc * n / 2.0,
        )
        for spec in C.SUBJECT_RECONSTRUCTION.outputs:
            value = getattr(out, spec.name)
            assert value.dtype == spec.dtype and value.shape == spec.concrete_shape(n), spec.name
            if not np.isfinite(value).all():  # never hand garbage downstream
                raise NoPersonError(f"the body fit failed on this photo ({spec.name} is not finite)")
        return out


_shared: Optional[Reconstructor] = None
_shared_lock = threading.Lock()


def reconstruct(photo: np.ndarray, resolution: int = C.DEFAULT_RESOLUTION,
                reconstructor: Optional[Reconstructor] = None) -> SubjectReconstruction:
    """One photo -> :class:`SubjectReconstruction` at ``resolution``; reuses one process-wide MediaPipe graph."""
    global _shared
    if reconstructor is None:
        with _shared_lock:
            if _shared is None:
                _shared = Reconstructor(resolution)
            reconstructor = _shared
    return reconstructor(photo, resolution)


__all__: Sequence[str] = (
    "SubjectReconstruction", "BodyFit", "Reconstructor", "reconstruct", "fit_body", "check_photo", "letterbox",
    "landmarks_to_joints", "photo_to_ndc", "LANDMARK_TO_JOINT", "VISIBLE",
)
