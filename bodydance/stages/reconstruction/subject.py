"""Stage 1 subject side, part 4: the MediaPipe reconstructor (``subject_reconstruction``).

MediaPipe's bundled BlazePose *full* (``model_complexity=1``; 0 and 2 try to download
their weights and fail) runs on the photo itself (downsized to at most
``detection_side`` px, never padded), then, when the person it found is small in the
photo, once more on a crop around them (:data:`CLOSER_LOOK_MARGIN`), and gives 33
landmarks in the image, the same landmarks in metric 3D, and a person segmentation. Image landmarks are mapped through
the letterbox into NDC (:mod:`.photo`); the segmentation is letterboxed the same way
(bars = 0) into ``person_mask``; the landmarks become SMPL joints (:mod:`.landmarks`)
and the body is fitted to them (:mod:`.fit`); the background plate is the working square with
the person inpainted away (:mod:`.plate`). Landmarks outside the photo count as unseen.

Limitations: MediaPipe Pose follows one person; the (bundled, offline) selfie
segmentation counts the people and the largest is fitted.

numpy + OpenCV + MediaPipe only: this runs inside a Triton python-backend model.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Optional

import cv2
import numpy as np

from bodydance.stages.reconstruction.facing import FacingEvidence, decide_facing, head_box, levels_stretched
from bodydance.stages.reconstruction.head_tilt import CHIN_LANDMARK, FOREHEAD_LANDMARK, level_head
from bodydance.stages.reconstruction.fit import fit_body
from bodydance.stages.reconstruction.framing import choose_square, dance_offset_m
from bodydance.stages.reconstruction.landmarks import (
    J, VISIBLE, check_person_size, check_upright, landmarks_to_joints, seen_box,
)
from bodydance.stages.reconstruction.photo import check_photo, crop_square
from bodydance.stages.reconstruction.plate import background_plate
from bodydance_client import contract as C
from bodydance_client.errors import NoPersonError

# Pose's detector sees the whole photo at 224 px: a small person's region is then placed and scaled
# roughly, and the landmarks (legs above all) go wrong. A second look at a crop this much of the
# person's size beyond their landmarks places it well (benchmarks/closer_look.py).
CLOSER_LOOK_MARGIN = 0.25
# Only where that crop spans at most this share of the photo's longer side: a person filling more of
# the photo is already seen large (and a half-body portrait's crop would cut off the edge that tells
# Pose the legs are out of the picture).
CLOSER_LOOK_MAX_SHARE = 0.5
CLOSER_LOOK_MIN_IOU = 0.5  # the second look must find the same person: landmark boxes overlapping this much
MIN_PERSON_AREA = 0.01  # of the photo, for a separate person in the people count
MIN_PERSON_HEIGHT_SHARE = 0.08  # of the photo height, likewise


@dataclasses.dataclass
class SubjectReconstruction:
    """The SUBJECT_RECONSTRUCTION outputs (contract shapes and dtypes, no batch dim) plus diagnostics."""

    source_image: np.ndarray  # [3, N, N] uint8 levels
    person_mask: np.ndarray  # [1, N, N] float32 in [0, 1]
    plate_fill: np.ndarray  # [3, N, N] uint8 levels: source_image with the person Telea-filled away
    betas: np.ndarray  # [10] float32
    source_pose: np.ndarray  # [24, 3] float32, axis-angle rad
    camera: np.ndarray  # [3] float32 (s NDC/m, tx, ty)
    person_count: np.ndarray  # [1] int32
    photo_square: np.ndarray  # [3] float32: left, top, side in photo px (contract.PhotoSquare)
    dance_offset: np.ndarray  # [3] float32 metres: added to every frame's root offset (framing.dance_offset_m)
    # diagnostics
    joints_2d: np.ndarray  # [24, 2] float32 NDC: the observed joints (trust them where confidence >= VISIBLE)
    joint_confidence: np.ndarray  # [24] float32 in [0, 1]
    reprojection_px: float  # RMS distance, in pixels of the N x N image, of fitted to observed confident joints
    facing: str = "unknown"  # which way the evidence says the person faces: front, back, profile or unknown
    facing_evidence: Optional[FacingEvidence] = None  # what this photo alone said about it


def _search_windows(width: int, height: int, side: int):
    """Overlapping ``side``-px squares (x0, y0, x1, y1) across a photo, half a square apart."""
    if side < 64:
        return []
    ys = sorted({*range(0, height - side + 1, side // 2), height - side})
    xs = sorted({*range(0, width - side + 1, side // 2), width - side})
    return [(x, y, x + side, y + side) for y in ys for x in xs]


def _landmark_box(image_landmarks: np.ndarray, iw: int, ih: int):
    """(x0, y0, x1, y1) px in an ``iw x ih`` image around the visible ``[33, 3]`` landmarks."""
    return seen_box(image_landmarks[:, :2] * [iw, ih], image_landmarks[:, 2])


def _box_iou(a, b) -> float:
    overlap = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - overlap
    return overlap / union if union > 0 else 0.0


class Reconstructor:
    """Holds one MediaPipe Pose graph; ``reconstructor(photo)`` -> :class:`SubjectReconstruction`.

    Reusable; calls from several threads are serialised around the MediaPipe graph (which is
    not re-entrant) and run the rest concurrently.
    """

    def __init__(self, resolution: int = C.DEFAULT_RESOLUTION, detection_side: int = 1024, frame_person: bool = True):
        """``frame_person=False`` keeps the whole photo as the working square (the letterbox)."""
        import mediapipe as mp

        self.resolution = int(resolution)
        self.detection_side = int(detection_side)
        self.frame_person = bool(frame_person)
        self._pose = mp.solutions.pose.Pose(
            static_image_mode=True, model_complexity=1, enable_segmentation=True, min_detection_confidence=0.5)
        # Pose follows one person; the (bundled, offline) selfie segmentation sees everyone, so it counts
        # the people and points Pose at the largest.
        self._people = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=1)
        # The face decides which way the person faces (see .facing): full range, bundled, offline.
        # Both bundled ranges: on a head crop the short-range one finds small, dim faces the other misses.
        self._faces = [mp.solutions.face_detection.FaceDetection(model_selection=k, min_detection_confidence=0.5)
                       for k in (0, 1)]
        # The face's own chin-forehead line tilts the fitted head (see .head_tilt): bundled, offline.
        self._face_mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1)
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._pose.close()
                self._people.close()
                for detector in self._faces:
                    detector.close()
                self._face_mesh.close()
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

    @staticmethod
    def _head_crop(photo: np.ndarray, box):
        """(``photo[y0:y1, x0:x1]`` resized to the 128-256 px the face models work at, its scale)."""
        x0, y0, x1, y1 = box
        crop = np.ascontiguousarray(photo[y0:y1, x0:x1])
        f = 1.0
        if not 128 <= max(crop.shape[:2]) <= 256:  # a small head is enlarged
            f = 192 / max(crop.shape[:2])
            crop = cv2.resize(crop, (max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f))),
                              interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
        return crop, f

    def _face_in(self, photo: np.ndarray, box) -> bool:
        """Whether a face detector finds a face in ``photo[y0:y1, x0:x1]``, as it is or with its levels
        stretched (benchmarks/facing_evidence.py: more backlit faces found, few more on backs)."""
        crop, _ = self._head_crop(photo, box)
        return self._detects_face(crop) or self._detects_face(levels_stretched(crop))

    def _detects_face(self, crop: np.ndarray) -> bool:
        """Whether either bundled face detector finds a face in ``crop`` (a head, as ``_head_crop`` sizes it)."""
        with self._lock:
            return any(detector.process(crop).detections for detector in self._faces)

    def _face_line(self, photo: np.ndarray, box) -> Optional[np.ndarray]:
        """``[2, 2]`` photo px: the face's chin and forehead (Face Mesh) in the head box, or None."""
        crop, f = self._head_crop(photo, box)
        with self._lock:
            found = self._face_mesh.process(crop).multi_face_landmarks
        if not found:
            return None
        h, w = crop.shape[:2]
        points = found[0].landmark
        line = np.array([[points[k].x * w, points[k].y * h] for k in (CHIN_LANDMARK, FOREHEAD_LANDMARK)])
        return line / f + [box[0], box[1]]

    def _pose_in(self, image: np.ndarray, box):
        """MediaPipe Pose on ``image[y0:y1, x0:x1]``; None when it finds nobody."""
        x0, y0, x1, y1 = box
        with self._lock:
            result = self._pose.process(np.ascontiguousarray(image[y0:y1, x0:x1]))
        if result.pose_landmarks is None or result.pose_world_landmarks is None:
            return None
        return result

    @staticmethod
    def _extent(result) -> float:
        """Area (of its crop) spanned by a result's clearly visible landmarks."""
        points = np.array([[p.x, p.y] for p in result.pose_landmarks.landmark if p.visibility >= VISIBLE])
        return 0.0 if len(points) < 4 else float(np.prod(np.ptp(points, axis=0)))

    def _detect(self, photo: np.ndarray, region=None):
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
        if region is not None:  # follow one person (a video): look only where they were
            f = iw / w
            x0, y0 = int(max(0, region[0] * f)), int(max(0, region[1] * f))
            x1, y1 = int(min(iw, region[2] * f)), int(min(ih, region[3] * f))
            result = self._pose_in(image, (x0, y0, x1, y1)) if x1 - x0 >= 16 and y1 - y0 >= 16 else None
            if result is None:
                raise NoPersonError("nobody where the person was")
            return self._landmarks(result, (x0, y0, x1, y1), iw, ih) + (1,)
        people = self._people_boxes(image)
        x0, y0, x1, y1 = 0, 0, iw, ih
        if len(people) > 1:  # several people: fit the largest, seen through a crop around it
            bx0, by0, bx1, by1 = people[0]
            pad_x, pad_y = 0.15 * (bx1 - bx0), 0.15 * (by1 - by0)
            x0, y0 = int(max(0, bx0 - pad_x)), int(max(0, by0 - pad_y))
            x1, y1 = int(min(iw, bx1 + pad_x)), int(min(ih, by1 + pad_y))
        result = self._pose_in(image, (x0, y0, x1, y1))
        if result is None:
            # A small person in a wide scene escapes the detector on the whole photo: look again through
            # overlapping squares and keep the most prominent person found.
            found = []
            for side in (min(iw, ih), min(iw, ih) // 2):  # the larger squares first; smaller only if they fail
                found = [(self._extent(r), box, r) for box in _search_windows(iw, ih, side)
                         for r in [self._pose_in(image, box)] if r is not None]
                if found:
                    break
            if not found:
                raise NoPersonError("no person found in the photo")
            _, (x0, y0, x1, y1), result = max(found, key=lambda item: item[0])
        landmarks = self._closer_look(image, self._landmarks(result, (x0, y0, x1, y1), iw, ih))
        return landmarks + (max(1, len(people)),)

    def _closer_look(self, image: np.ndarray, landmarks):
        """The person of ``landmarks`` (as :meth:`_landmarks` returns them) seen again through a crop
        around them; the first look when the second finds nobody or someone else."""
        ih, iw = image.shape[:2]
        first = _landmark_box(landmarks[0], iw, ih)
        x0, y0, x1, y1 = first
        grow = CLOSER_LOOK_MARGIN * max(x1 - x0, y1 - y0)
        box = (int(max(0, x0 - grow)), int(max(0, y0 - grow)), int(min(iw, x1 + grow)), int(min(ih, y1 + grow)))
        if max(box[2] - box[0], box[3] - box[1]) > CLOSER_LOOK_MAX_SHARE * max(iw, ih) \
                or min(box[2] - box[0], box[3] - box[1]) < 16:
            return landmarks
        result = self._pose_in(image, box)
        if result is None:
            return landmarks
        closer = self._landmarks(result, box, iw, ih)
        if _box_iou(first, _landmark_box(closer[0], iw, ih)) < CLOSER_LOOK_MIN_IOU:
            return landmarks
        return closer

    @staticmethod
    def _landmarks(result, box, iw: int, ih: int):
        """(image landmarks ``[33, 3]`` (x, y normalised to the image, visibility), world ``[33, 3]`` m,
        segmentation ``[ih, iw]``) of a Pose result on the crop ``box`` of an ``iw x ih`` image."""
        x0, y0, x1, y1 = box
        cw, ch = x1 - x0, y1 - y0
        image_lm = np.array([[(p.x * cw + x0) / iw, (p.y * ch + y0) / ih, p.visibility]
                             for p in result.pose_landmarks.landmark], np.float64)
        world_lm = np.array([[p.x, p.y, p.z] for p in result.pose_world_landmarks.landmark], np.float64)
        mask = None
        if result.segmentation_mask is not None:
            mask = np.zeros((ih, iw), np.float32)
            mask[y0:y1, x0:x1] = np.asarray(result.segmentation_mask, np.float32)
        return image_lm, world_lm, mask

    def __call__(self, photo: np.ndarray, resolution: Optional[int] = None, region=None,
                 front: Optional[bool] = None) -> SubjectReconstruction:
        """``region``: ``(x0, y0, x1, y1)`` photo px to look for the person in (a video following one
        person); None looks at the whole photo and fits its most prominent person. ``front``: which way
        the person faces, decided elsewhere (a video's frames together); None decides from this photo."""
        check_photo(photo)
        n = int(resolution or self.resolution)
        h, w = photo.shape[:2]
        image_lm, world_lm, mask, people = self._detect(photo, region)
        image_lm, world_lm, facing, evidence = decide_facing(
            image_lm, world_lm, w, h, lambda box: self._face_in(photo, box), front=front)
        if mask is None:
            raise NoPersonError("no person found in the photo (the segmentation came back empty)")

        xy, visibility = image_lm[:, :2], image_lm[:, 2]
        inside = (xy >= 0).all(-1) & (xy <= 1).all(-1)
        visibility = np.where(inside & np.isfinite(xy).all(-1), np.nan_to_num(visibility), 0.0)
        # The fit is made in the whole photo's letterbox, then moved to the working square.
        letterbox = C.PhotoSquare.letterbox(h, w, n)
        landmarks_ndc = letterbox.to_ndc(xy * [w, h])
        check_person_size(landmarks_ndc, visibility)
        check_upright(xy * [w, h], visibility)
        # MediaPipe world: x image-right, y down, z away from the camera -> SMPL: +Y up, +Z towards it.
        world = world_lm * np.array([1.0, -1.0, -1.0])
        joints_3d, confidence = landmarks_to_joints(world, visibility)
        joints_2d, _ = landmarks_to_joints(landmarks_ndc, visibility)
        seen = confidence >= VISIBLE
        shoulders = seen[J["left_shoulder"]] and seen[J["right_shoulder"]]
        if not (shoulders or (seen[J["left_hip"]] and seen[J["right_hip"]])):
            raise NoPersonError("the body is not visible enough: the photo must show both shoulders or both hips")

        fit = fit_body(joints_3d, joints_2d, confidence)
        box = head_box(xy * [w, h], visibility, w, h) if facing != "back" else None
        face_line = self._face_line(photo, box) if box is not None else None
        pose, _ = level_head(fit.pose, fit.betas, fit.camera, None if face_line is None else letterbox.to_ndc(face_line))
        mask = np.clip(np.nan_to_num(mask), 0.0, 1.0)
        to_photo = w / mask.shape[1]  # the mask is at MediaPipe's detection size
        square = letterbox
        offset = dance_offset_m(h, w, n, fit.camera, fit.joints, fit.betas)
        if self.frame_person:
            rows, cols = np.nonzero(mask > 0.5)
            seen_box = None if rows.size == 0 else np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]) * to_photo
            square = choose_square(h, w, n, fit.camera, fit.joints, fit.betas, seen_box, offset)
        mask_square = C.PhotoSquare(*(int(round(v / to_photo)) for v in (square.left, square.top, square.side)), n)
        square_image = crop_square(photo, square)
        person_mask = np.clip(crop_square(mask, mask_square, fill=0.0), 0.0, 1.0)  # resampling overshoots by ulps
        camera = letterbox.reframe_camera(fit.camera, square)
        inside = crop_square(np.ones((h, w), np.float32), square, fill=0.0) > 0.999  # not blended with padding
        plate = background_plate(square_image, person_mask, inside)
        out = SubjectReconstruction(
            source_image=np.ascontiguousarray(square_image.transpose(2, 0, 1), dtype=np.uint8),
            person_mask=np.ascontiguousarray(person_mask[None], dtype=np.float32),
            plate_fill=np.ascontiguousarray(plate.transpose(2, 0, 1)),
            betas=fit.betas.astype(np.float32),
            source_pose=pose.astype(np.float32),
            camera=camera,
            person_count=np.asarray([people], np.int32),
            photo_square=square.as_tensor(),
            dance_offset=offset,
            joints_2d=square.to_ndc(letterbox.to_photo(np.nan_to_num(joints_2d))).astype(np.float32),
            joint_confidence=np.clip(confidence, 0.0, 1.0).astype(np.float32),
            reprojection_px=fit.rms_ndc * n / 2.0 * letterbox.side / square.side,
            facing=facing,
            facing_evidence=evidence,
        )
        for spec in C.SUBJECT_RECONSTRUCTION.outputs:
            value = getattr(out, spec.name)
            assert value.dtype == spec.dtype and value.shape == spec.concrete_shape(n), spec.name
            if not np.isfinite(value).all():  # never hand garbage downstream
                raise NoPersonError(f"the body fit failed on this photo ({spec.name} is not finite)")
            problem = C.range_problem(spec, value)
            if problem is not None:  # a subject the frame ensemble would refuse is refused here, by its cause
                raise NoPersonError(f"the body fit failed on this photo ({problem})")
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


