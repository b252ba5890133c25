"""Stage 1, subject side: photo -> letterboxed image, person mask, body shape, pose and camera.

MediaPipe's bundled BlazePose *full* (``model_complexity=1``; 0 and 2 try to
download their weights) gives 33 landmarks in the image and in metric 3D, and
a person segmentation. The SMPL-format skeleton is then fitted in closed form:
the global orientation from the hip and shoulder lines, every other joint as
the swing that turns its rest bone onto the observed 3D bone, the weak-
perspective camera by least squares on the 2D joints, and the height shape
coefficient from bone lengths. Joints the photo does not show keep a
plausible default (legs straight, arms by the sides).

numpy + OpenCV + MediaPipe only: this runs inside a Triton python-backend model.
MediaPipe Pose follows one person, so ``person_count`` is 1 whenever a person is found.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Optional

import cv2
import numpy as np

from bodydance.skeleton import (
    REST_JOINTS, axis_angle_to_matrix, forward_kinematics, matrix_to_axis_angle, project, shaped_rest_joints,
)
from bodydance_client import contract as C
from bodydance_client.errors import BadImageError, NoPersonError

# MediaPipe Pose landmark indices (the person's own left/right, as in SMPL).
MP = dict(nose=0, left_ear=7, right_ear=8, left_shoulder=11, right_shoulder=12, left_elbow=13, right_elbow=14,
          left_wrist=15, right_wrist=16, left_pinky=17, right_pinky=18, left_index=19, right_index=20,
          left_hip=23, right_hip=24, left_knee=25, right_knee=26, left_ankle=27, right_ankle=28,
          left_foot_index=31, right_foot_index=32)
J = {name: i for i, name in enumerate(C.JOINT_NAMES)}

VISIBLE = 0.5  # landmark visibility below which a joint does not drive the fit
MIN_PERSON_HEIGHT = 0.08  # of the photo height, for the landmarks' bounding box
ARMS_DOWN = 1.25  # rad about Z: a T-pose arm lowered to the side
HEIGHT_PER_BETA = 0.06  # see bodydance.skeleton: betas[0] = +1 is 6 % taller

# (joint, child whose direction it sets); the rest keep their default rotation.
BONES = (
    ("spine1", "neck"), ("neck", "head"),
    ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"), ("left_wrist", "left_hand"),
    ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"), ("right_wrist", "right_hand"),
    ("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("left_ankle", "left_foot"),
    ("right_hip", "right_knee"), ("right_knee", "right_ankle"), ("right_ankle", "right_foot"),
)


@dataclasses.dataclass
class SubjectReconstruction:
    """The SUBJECT_RECONSTRUCTION outputs (contract shapes, no batch dim) plus diagnostics."""

    source_image: np.ndarray  # [3, N, N] float32 in [0, 1]
    person_mask: np.ndarray  # [1, N, N] float32
    betas: np.ndarray  # [10] float32
    source_pose: np.ndarray  # [24, 3] float32 rad
    camera: np.ndarray  # [3] float32 (s, tx, ty)
    person_count: np.ndarray  # [1] int32
    joints_2d: np.ndarray  # [24, 2] NDC, observed (NaN where unseen)
    joint_confidence: np.ndarray  # [24] in [0, 1]
    reprojection_px: float  # RMS over confident joints, in pixels of the N x N image


def check_photo(photo: np.ndarray) -> None:
    if not isinstance(photo, np.ndarray) or photo.dtype != np.uint8:
        raise BadImageError(f"photo must be a uint8 array, got {getattr(photo, 'dtype', type(photo))}")
    if photo.ndim != 3 or photo.shape[2] != 3:
        raise BadImageError(f"photo must be HxWx3 RGB, got shape {list(photo.shape)}")
    h, w = photo.shape[:2]
    if min(h, w) < C.MIN_PHOTO_SIDE or max(h, w) > C.MAX_PHOTO_SIDE:
        raise BadImageError(f"photo is {w}x{h}; each side must be {C.MIN_PHOTO_SIDE}-{C.MAX_PHOTO_SIDE} px")


def letterbox(image: np.ndarray, resolution: int, fill=127) -> np.ndarray:
    """``[H, W, C]`` -> ``[N, N, C]``, centred, same geometry as :func:`contract.letterbox_geometry`."""
    h, w = image.shape[:2]
    scale, left, top = C.letterbox_geometry(h, w, resolution)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interp)
    out = np.full((resolution, resolution) + image.shape[2:], fill, dtype=image.dtype)
    out[top:top + new_h, left:left + new_w] = resized.reshape((new_h, new_w) + image.shape[2:])
    return out


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking unit vector ``a`` onto unit vector ``b`` (3x3)."""
    axis = np.cross(a, b)
    sin, cos = np.linalg.norm(axis), float(np.dot(a, b))
    if sin < 1e-8:
        if cos > 0:
            return np.eye(3)
        ortho = np.cross(a, [1.0, 0, 0] if abs(a[0]) < 0.9 else [0, 1.0, 0])
        return axis_angle_to_matrix(ortho / np.linalg.norm(ortho) * np.pi)
    return axis_angle_to_matrix(axis / sin * np.arctan2(sin, cos))


def smpl_targets(world: np.ndarray, image_ndc: np.ndarray, visibility: np.ndarray):
    """MediaPipe's 33 landmarks -> SMPL joints: 3D ``[24,3]`` m (SMPL axes), 2D ``[24,2]`` NDC, confidence ``[24]``.

    ``world``: MediaPipe world landmarks already converted to SMPL axes.
    """
    def mp(name):
        i = MP[name]
        return world[i], image_ndc[i], visibility[i]

    def mean(*names):
        parts = [mp(n) for n in names]
        return (np.mean([p[0] for p in parts], 0), np.mean([p[1] for p in parts], 0), min(p[2] for p in parts))

    joints = {}
    for side in ("left", "right"):
        for part in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle"):
            joints[f"{side}_{part}"] = mp(f"{side}_{part}")
        joints[f"{side}_hand"] = mean(f"{side}_index", f"{side}_pinky")
        joints[f"{side}_foot"] = mp(f"{side}_foot_index")
    joints["pelvis"] = mean("left_hip", "right_hip")
    joints["neck"] = mean("left_shoulder", "right_shoulder")
    joints["head"] = mean("left_ear", "right_ear")
    for side in ("left", "right"):
        neck, shoulder = joints["neck"], joints[f"{side}_shoulder"]
        joints[f"{side}_collar"] = tuple((n + s) / 2 if k < 2 else min(n, s) for k, (n, s) in enumerate(zip(neck, shoulder)))
    pelvis, neck = joints["pelvis"], joints["neck"]
    for name, f in (("spine1", 0.25), ("spine2", 0.5), ("spine3", 0.75)):
        joints[name] = (pelvis[0] + f * (neck[0] - pelvis[0]), pelvis[1] + f * (neck[1] - pelvis[1]),
                        min(pelvis[2], neck[2]))
    p3 = np.stack([joints[n][0] for n in C.JOINT_NAMES]).astype(np.float64)
    p2 = np.stack([joints[n][1] for n in C.JOINT_NAMES]).astype(np.float64)
    conf = np.asarray([joints[n][2] for n in C.JOINT_NAMES], dtype=np.float64)
    return p3, p2, conf


def fit_pose(targets_3d: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Closed-form SMPL pose ``[24,3]`` rad whose bone directions match ``targets_3d`` (SMPL axes, m)."""
    pose = np.zeros((C.NUM_JOINTS, 3))
    seen = confidence >= VISIBLE
    # Unseen arms hang by the sides rather than staying in the T-pose.
    if not (seen[J["left_shoulder"]] and seen[J["left_elbow"]]):
        pose[J["left_shoulder"]] = (0, 0, -ARMS_DOWN)
    if not (seen[J["right_shoulder"]] and seen[J["right_elbow"]]):
        pose[J["right_shoulder"]] = (0, 0, ARMS_DOWN)

    if seen[[J["left_hip"], J["right_hip"], J["left_shoulder"], J["right_shoulder"]]].all():
        across = targets_3d[J["left_hip"]] - targets_3d[J["right_hip"]]
        across += targets_3d[J["left_shoulder"]] - targets_3d[J["right_shoulder"]]
        up = targets_3d[J["neck"]] - targets_3d[J["pelvis"]]
        x = across / np.linalg.norm(across)
        y = up - np.dot(up, x) * x
        y /= np.linalg.norm(y)
        pose[0] = matrix_to_axis_angle(np.stack([x, y, np.cross(x, y)], axis=1))

    parents = np.asarray(C.JOINT_PARENTS)
    for joint_name, child_name in BONES:
        j, c = J[joint_name], J[child_name]
        if not (seen[j] and seen[c]):
            continue
        _, rotations = forward_kinematics(pose.astype(np.float32), REST_JOINTS)
        parent_rot = rotations[parents[j]].astype(np.float64)
        observed = targets_3d[c] - targets_3d[j]
        rest = (REST_JOINTS[c] - REST_JOINTS[j]).astype(np.float64)
        if np.linalg.norm(observed) < 1e-6:
            continue
        local_target = parent_rot.T @ (observed / np.linalg.norm(observed))
        pose[j] = matrix_to_axis_angle(_rotation_between(rest / np.linalg.norm(rest), local_target))
    return pose.astype(np.float32)


def fit_camera(joints_3d: np.ndarray, joints_2d: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Least-squares weak perspective ``(s, tx, ty)``: x = s X + tx, y = -s Y + ty."""
    rows, rhs, w = [], [], []
    for (x3, y3, _), (u, v), wt in zip(joints_3d, joints_2d, weights):
        rows += [[x3, 1.0, 0.0], [-y3, 0.0, 1.0]]
        rhs += [u, v]
        w += [wt, wt]
    a, b, w = np.asarray(rows), np.asarray(rhs), np.sqrt(np.asarray(w))
    solution, *_ = np.linalg.lstsq(a * w[:, None], b * w, rcond=None)
    return solution.astype(np.float32)


def fit_betas(targets_3d: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Height coefficient from the ratio of observed to rest bone lengths (visible bones only)."""
    ratios = []
    for joint_name, child_name in BONES:
        j, c = J[joint_name], J[child_name]
        if confidence[j] >= VISIBLE and confidence[c] >= VISIBLE:
            rest = np.linalg.norm(REST_JOINTS[c] - REST_JOINTS[j])
            ratios.append(np.linalg.norm(targets_3d[c] - targets_3d[j]) / rest)
    betas = np.zeros(C.NUM_BETAS, np.float32)
    if len(ratios) >= 3:
        betas[0] = np.clip((np.median(ratios) - 1.0) / HEIGHT_PER_BETA, -3.0, 3.0)
    return betas


class Reconstructor:
    """Holds one MediaPipe Pose graph; ``reconstructor(photo)`` -> :class:`SubjectReconstruction`."""

    def __init__(self, resolution: int = C.DEFAULT_RESOLUTION, detection_side: int = 768):
        import mediapipe as mp

        self.resolution = resolution
        self.detection_side = detection_side
        self._pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True,
                                            min_detection_confidence=0.5)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._pose.close()

    def __call__(self, photo: np.ndarray) -> SubjectReconstruction:
        check_photo(photo)
        n = self.resolution
        h, w = photo.shape[:2]
        detect = photo
        if max(h, w) > self.detection_side:
            f = self.detection_side / max(h, w)
            detect = cv2.resize(photo, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
        with self._lock:
            result = self._pose.process(np.ascontiguousarray(detect))
        if result.pose_landmarks is None or result.pose_world_landmarks is None:
            raise NoPersonError("no person found in the photo")

        lm = result.pose_landmarks.landmark
        visibility = np.asarray([p.visibility for p in lm])
        xy = np.asarray([[p.x * w, p.y * h] for p in lm])  # photo pixels
        confident = (visibility >= VISIBLE) & (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
        if confident.sum() < 4:
            raise NoPersonError("no person found in the photo (too few body landmarks visible)")
        extent = np.ptp(xy[confident, 1])
        if extent < MIN_PERSON_HEIGHT * h:
            raise NoPersonError(f"the person is too small: {extent:.0f} px of a {h} px photo; "
                                f"at least {MIN_PERSON_HEIGHT:.0%} of the height is needed")
        visibility = np.where(confident, visibility, 0.0)

        scale, left, top = C.letterbox_geometry(h, w, n)
        image_ndc = np.stack([(xy[:, 0] * scale + left) * 2 / n - 1, (xy[:, 1] * scale + top) * 2 / n - 1], -1)
        world = np.asarray([[p.x, -p.y, -p.z] for p in result.pose_world_landmarks.landmark])  # to SMPL axes
        targets_3d, targets_2d, confidence = smpl_targets(world, image_ndc, visibility)

        pose = fit_pose(targets_3d, confidence)
        betas = fit_betas(targets_3d, confidence)
        joints, _ = forward_kinematics(pose, shaped_rest_joints(betas))
        weights = np.where(confidence >= VISIBLE, 1.0, 0.0)
        camera = fit_camera(joints, targets_2d, weights)
        residual = (project(joints, camera) - targets_2d)[weights > 0] * n / 2
        rms = float(np.sqrt((residual ** 2).sum(-1).mean())) if residual.size else float("nan")

        mask = result.segmentation_mask
        if mask is None:
            raise NoPersonError("the person segmentation came back empty")
        mask = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        source = letterbox(photo, n).astype(np.float32) / 255.0
        return SubjectReconstruction(
            source_image=np.ascontiguousarray(source.transpose(2, 0, 1)),
            person_mask=np.clip(letterbox(mask, n, fill=0), 0, 1)[None].astype(np.float32),
            betas=betas,
            source_pose=pose,
            camera=camera,
            person_count=np.asarray([1], np.int32),
            joints_2d=np.where(confidence[:, None] >= VISIBLE, targets_2d, np.nan).astype(np.float32),
            joint_confidence=confidence.astype(np.float32),
            reprojection_px=rms,
        )


def reconstruct(photo: np.ndarray, resolution: int = C.DEFAULT_RESOLUTION,
                reconstructor: Optional[Reconstructor] = None) -> SubjectReconstruction:
    own = reconstructor is None
    reconstructor = reconstructor or Reconstructor(resolution)
    try:
        return reconstructor(photo)
    finally:
        if own:
            reconstructor.close()
