"""Build a dance template from a driving video: per-frame reconstruction, then temporal smoothing.

Each frame goes through the same subject-side reconstruction as a photo
(MediaPipe + fit), following one dancer through the frames. Which way the dancer faces is decided
for stretches of frames between profiles, not frame by frame (a face missed in a few frames would
otherwise spin the body round for them), and frames that decided otherwise on their own are fitted
again. The pose is smoothed in time on rotation matrices (a
Gaussian window, re-orthonormalised), the root motion comes from the fitted
camera's offsets (converted to metres with the median scale), and frames where
nobody was found are filled from their neighbours.

    bodydance build-template dance.mp4 --name my_dance --out my_dance.npz
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

import av
import numpy as np

from bodydance.stages.reconstruction.facing import facing_through_video
from bodydance.stages.reconstruction.landmarks import seen_box
from bodydance.stages.reconstruction.subject import Reconstructor
from bodydance.skeleton import axis_angle_to_matrix, matrix_to_axis_angle
from bodydance_client.contract import PhotoSquare
from bodydance_client.errors import BadTemplateError, NoPersonError, PhotoNotUprightError
from bodydance_client.templates import Template, validate

MAX_MISSING_SHARE = 0.5  # refuse a video where the dancer is missing from more frames than this


def _gaussian_smooth(series: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Smooth ``[T, ...]`` along time with a normalised Gaussian (edges renormalised, no padding bias)."""
    if sigma_frames <= 0:
        return series
    radius = int(np.ceil(3 * sigma_frames))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma_frames) ** 2)
    flat = series.reshape(len(series), -1)
    out = np.zeros_like(flat)
    weight = np.zeros((len(series), 1))
    for k, w in zip(offsets, kernel):
        lo, hi = max(0, -k), min(len(series), len(series) - k)
        out[lo:hi] += w * flat[lo + k:hi + k]
        weight[lo:hi] += w
    return (out / weight).reshape(series.shape)


def smooth_poses(poses: np.ndarray, sigma_frames: float) -> np.ndarray:
    """``[T,24,3]`` axis-angle -> smoothed, via rotation matrices (no wrap-around artefacts)."""
    matrices = _gaussian_smooth(axis_angle_to_matrix(poses.astype(np.float64)), sigma_frames)
    u, _, vt = np.linalg.svd(matrices)  # nearest rotation to the averaged matrix
    d = np.sign(np.linalg.det(u @ vt))
    u[..., :, -1] *= d[..., None]
    return matrix_to_axis_angle(u @ vt).astype(np.float32)


def _fill_missing(values: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Linear interpolation over frames without a person (nearest at the ends)."""
    idx = np.nonzero(found)[0]
    flat = values.reshape(len(values), -1)
    for c in range(flat.shape[1]):
        flat[:, c] = np.interp(np.arange(len(values)), idx, flat[idx, c])
    return flat.reshape(values.shape)


class PersonFollower:
    """Keeps a video's template on one dancer: after the first frame that finds someone, each frame
    looks only around where they were (a passer-by elsewhere in the frame is never fitted), and a fit
    whose centre is further from theirs than a person moves between frames is someone else (a
    passer-by within that reach as the dancer leaves). After ``patience`` frames without them it looks
    at the whole frame again."""

    REACH = 0.6  # of the person's size: how far beyond their last box to look (a jump, a step)
    # When Pose found someone else there (it fits one person, the most prominent), look again this
    # close around the dancer's last box, where the other is mostly out of the picture.
    CLOSE_REACH = 0.25
    # of the person's size: how far their box centre may be from where they were last seen. Not grown
    # with the frames missed since: a passer-by walking in would soon be within it.
    MAX_STEP = 0.5

    def __init__(self, patience: int = 30):
        self.patience = patience
        self.box = None  # (x0, y0, x1, y1) photo px of the last seen joints
        self.misses = 0

    def region(self, size, reach: float = REACH):
        """(x0, y0, x1, y1) photo px to look for them in: ``reach`` of their size beyond their last box;
        None (the whole frame) when they are not being followed."""
        if self.box is None:
            return None
        x0, y0, x1, y1 = self.box
        grow = reach * max(x1 - x0, y1 - y0)
        return (x0 - grow, y0 - grow, x1 + grow, y1 + grow)

    @staticmethod
    def _joint_box(fit):
        square = PhotoSquare.from_tensor(fit.photo_square, fit.source_image.shape[-1])
        return seen_box(square.to_photo(fit.joints_2d), fit.joint_confidence)

    def is_them(self, fit) -> bool:
        """Whether ``fit`` can be the person followed (anyone can while nobody is): its centre within
        :attr:`MAX_STEP` of their size from theirs."""
        if self.box is None:
            return True
        box, (x0, y0, x1, y1) = self._joint_box(fit), self.box
        step = np.hypot((box[0] + box[2] - x0 - x1) / 2, (box[1] + box[3] - y0 - y1) / 2)
        return step <= self.MAX_STEP * max(x1 - x0, y1 - y0)

    def take(self, fit) -> bool:
        """Follow ``fit`` and say True when it is the person followed; False, and a frame without them,
        when it is someone else or None (nobody found)."""
        if fit is None or not self.is_them(fit):
            self.missed()
            return False
        self.box = self._joint_box(fit)
        self.misses = 0
        return True

    def missed(self) -> None:
        self.misses += 1
        if self.misses > self.patience:
            self.box = None


def _fit_or_none(reconstruct: Reconstructor, image: np.ndarray, region, front: Optional[bool] = None):
    try:
        return reconstruct(image, region=region, front=front)
    except (NoPersonError, PhotoNotUprightError):  # nobody there, or a cartwheel: filled from its neighbours
        return None


def _refit_turned_frames(path: Path, reconstruct: Reconstructor, regions: list, evidence: list, verdicts: list,
                         poses: list, cameras: list) -> None:
    """Fit again, in place, the frames whose own facing verdict disagrees with their stretch's."""
    decided = facing_through_video(evidence)
    turned = {i: front for i, (front, verdict) in enumerate(zip(decided, verdicts))
              if front is not None and verdict in ("front", "back") and front != (verdict == "front")}
    if not turned:
        return
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(container.streams.video[0])):
            if i > max(turned):
                break
            if i in turned:
                fit = _fit_or_none(reconstruct, frame.to_ndarray(format="rgb24"), regions[i], front=turned[i])
                if fit is None:  # keep the frame's own fit
                    continue
                poses[i], cameras[i] = fit.source_pose, fit.camera


def build_template(video: os.PathLike, name: str, *, sigma_frames: float = 1.5, max_frames: int = 18_000,
                   progress: Optional[Callable[[int], None]] = None) -> Template:
    path = Path(video)
    if not path.is_file():
        raise BadTemplateError(f"{path}: no such video")
    poses, cameras, found = [], [], []
    regions, evidence, verdicts = [], [], []  # per frame: where the dancer was looked for, and facing
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as err:
        raise BadTemplateError(f"{path}: not a readable video ({err})") from err
    # The whole frame is the working square (frame_person=False), so the cameras of all frames share
    # one image frame and their offsets are the root motion.
    with Reconstructor(frame_person=False) as reconstruct:
        with container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or 30)
            follow = PersonFollower()
            for i, frame in enumerate(container.decode(stream)):
                if i >= max_frames:
                    raise BadTemplateError(f"{path}: longer than {max_frames} frames")
                image = frame.to_ndarray(format="rgb24")
                regions.append(follow.region(image.shape[:2]))
                fit = _fit_or_none(reconstruct, image, regions[-1])
                if fit is not None and not follow.is_them(fit):
                    regions[-1] = follow.region(image.shape[:2], follow.CLOSE_REACH)
                    fit = _fit_or_none(reconstruct, image, regions[-1])
                if follow.take(fit):
                    poses.append(fit.source_pose)
                    cameras.append(fit.camera)
                    found.append(True)
                    evidence.append(fit.facing_evidence)
                    verdicts.append(fit.facing)
                else:
                    poses.append(np.zeros((24, 3), np.float32))
                    cameras.append(np.zeros(3, np.float32))
                    found.append(False)
                    evidence.append(None)
                    verdicts.append(None)
                if progress:
                    progress(i + 1)
        _refit_turned_frames(path, reconstruct, regions, evidence, verdicts, poses, cameras)
    found = np.asarray(found)
    if not len(found):
        raise BadTemplateError(f"{path}: the video has no frames")
    if found.mean() < 1 - MAX_MISSING_SHARE:
        raise BadTemplateError(f"{path}: a dancer was found in only {found.mean():.0%} of the frames")
    poses = smooth_poses(_fill_missing(np.stack(poses), found), sigma_frames)
    cameras = _gaussian_smooth(_fill_missing(np.stack(cameras).astype(np.float64), found), sigma_frames)
    scale = float(np.median(cameras[:, 0]))
    translations = np.stack([(cameras[:, 1] - cameras[0, 1]) / scale, -(cameras[:, 2] - cameras[0, 2]) / scale,
                             np.zeros(len(cameras))], axis=-1).astype(np.float32)
    return validate(Template(name, fps, poses, translations), str(path))
