"""The wire contract between the client, the two ensembles and the stage models.

This is the one place where tensor names, dtypes, shapes and units are written
down. The model-config generator, the exporter, the python-backend models and
the client SDK all read it; nothing else spells a tensor name.

Conventions
-----------
* ``N`` is the square working resolution, an export-time setting
  (256 on CPU, 512 on GPU). Shapes below are per item, without the batch
  dimension that batched models add in front.
* Images inside the pipeline are planar RGB ``[3, N, N]``; on the wire (the subject tensors the
  client sends with every frame) they are uint8 levels 0..255, and the models that read them
  convert to [0, 1] inside their graphs. Slim frame requests: uint8 images, uint8 part labels,
  float16 depth (:func:`frame_request_bytes`).
* Image coordinates are normalised device coordinates (NDC): x right, y down,
  both in [-1, 1] across the ``N x N`` working square (:class:`PhotoSquare`), pixel centres at
  ``(2 i + 1) / N - 1`` (``grid_sample(..., align_corners=False)``).
* Body coordinates follow SMPL: metres, +Y up, +X to the body's left,
  +Z towards the camera. Poses are axis-angle in radians, 24 joints in SMPL
  order, parent-relative; joint 0 is the global orientation.
* The camera is weak-perspective: ``x_ndc = s * X + tx``, ``y_ndc = -s * Y + ty``
  with ``s`` in NDC units per metre.
* Part labels are indices into :data:`PART_NAMES`: uint8 on the wire (``source_parsing``),
  int32 between the frame-path stages.
* Every tensor a request carries has a valid range (:attr:`TensorSpec.valid_range`); the server
  refuses a request holding a value outside it, or NaN/inf, with INVALID_ARGUMENT naming the
  tensor and the range (:func:`range_problem`, run by the ``frame_guard`` step at the edge of the
  frame ensemble, in front of the ONNX Runtime and TensorRT models alike).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence, Tuple, Union

import numpy as np

DEFAULT_RESOLUTION = 256
NUM_JOINTS = 24
NUM_BETAS = 10
STYLE_DIM = 16
MAX_FRAME_BATCH = 8
# Camera scale (NDC per metre) up to which the frame geometry draws every pixel of the body: its
# raster windows are sized for it. Closer framings (head and shoulders) lose pixels on the largest triangles.
MAX_CAMERA_SCALE = 3.0

# Largest photo side the server accepts; the client downsizes bigger photos
# before sending, so this bounds server memory per request.
MAX_PHOTO_SIDE = 4096
MIN_PHOTO_SIDE = 16

JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee",
    "spine2", "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot",
    "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hand", "right_hand",
)
JOINT_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)

PART_NAMES = (
    "background", "head", "torso", "upper_arm", "forearm", "hand", "thigh", "shin_foot",
)
NUM_PARTS = len(PART_NAMES)

Dim = Union[int, str]  # "N" is the working resolution, -1 a free dimension
Bound = Union[float, Tuple[float, ...]]  # one bound for every element, or one per element of the last axis

# Valid ranges of the request tensors (inclusive). Generous for real use, finite for nonsense:
MAX_ABS_BETA = 5.0  # SMPL shape coefficients are ~N(0, 1); the fit keeps |betas| <= 3
MAX_ABS_ANGLE = 2 * math.pi  # each axis-angle component, radians (templates: |angle| <= 2 pi)
MAX_ABS_TRANSLATION_M = 10.0  # each root-offset component (templates: |offset| <= 10 m)
CAMERA_RANGE = ((0.01, -10.0, -10.0), (50.0, 10.0, 10.0))  # s NDC/m, tx NDC, ty NDC
MAX_ABS_STYLE = 8.0  # style code elements: the baseline's are in [0, 1], a learned Gaussian code within 8 sigma
EMPTY_DEPTH_M = -1000.0  # source_depth where the photo shows no body
MAX_DEPTH_M = 10.0


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One named tensor: dtype, per-item shape, what its numbers mean, and the values a request may hold.

    ``valid_range`` is (low, high), inclusive, each a number or one number per element of the last
    axis; None: any finite value of the dtype.
    """

    name: str
    dtype: type
    shape: Tuple[Dim, ...]
    meaning: str
    valid_range: Optional[Tuple[Bound, Bound]] = None

    def concrete_shape(self, resolution: int) -> Tuple[int, ...]:
        return tuple(resolution if d == "N" else d for d in self.shape)

    @property
    def every_value_valid(self) -> bool:
        """An integer tensor whose range is its dtype's (uint8 images): nothing to check."""
        if np.dtype(self.dtype).kind not in "iu" or self.valid_range is None or isinstance(self.valid_range[0], tuple):
            return False
        limits = np.iinfo(self.dtype)
        return self.valid_range[0] <= limits.min and self.valid_range[1] >= limits.max

    def renamed(self, name: str) -> "TensorSpec":
        return dataclasses.replace(self, name=name)

    def range_text(self) -> str:
        """The valid range as written in errors and the README, e.g. ``[-6.28, 6.28]``."""
        if self.valid_range is None:
            return "any finite value"
        low, high = self.valid_range
        if isinstance(low, tuple):
            return ", ".join(f"[{_num(lo)}, {_num(hi)}]" for lo, hi in zip(low, high)) + " (per element)"
        return f"[{_num(low)}, {_num(high)}]"


def _num(value: float) -> str:
    return f"{value:g}" if float(value) != int(value) or abs(value) >= 1e6 else str(int(value))


def range_problem(spec: TensorSpec, value: np.ndarray) -> Optional[str]:
    """A message naming ``spec``'s tensor and its valid range when ``value`` breaks it, else None.

    NaN and infinity break every float range. ``value`` may carry a batch dimension in front.
    """
    value = np.asarray(value)
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        return (f"input '{spec.name}' holds NaN or infinite values; its valid range is {spec.range_text()} "
                f"({spec.meaning})")
    if spec.valid_range is None or value.size == 0:
        return None
    if spec.every_value_valid and value.dtype == spec.dtype:
        return None
    low, high = (np.asarray(b, np.float64) for b in spec.valid_range)
    bad = (value < low) | (value > high)
    if not bad.any():
        return None
    index = np.unravel_index(int(np.argmax(bad)), bad.shape)
    where = f" at {list(int(i) for i in index[1:])}" if value.ndim > 1 else ""
    return (f"input '{spec.name}' holds {value[index].item():.9g}{where}, outside its valid range "
            f"{spec.range_text()} ({spec.meaning})")


F32, F16, I32, U8 = np.float32, np.float16, np.int32, np.uint8

# --- subject ensemble: once per photo -------------------------------------------------
PHOTO = TensorSpec("photo", U8, (-1, -1, 3), f"RGB photo, any size from {MIN_PHOTO_SIDE} to {MAX_PHOTO_SIDE} px a side")
SOURCE_IMAGE = TensorSpec("source_image", U8, (3, "N", "N"), "the working square of the photo, planar RGB levels",
                          (0, 255))
PERSON_MASK = TensorSpec("person_mask", F32, (1, "N", "N"), "probability that a pixel shows the person, [0, 1]", (0.0, 1.0))
BETAS = TensorSpec("betas", F32, (NUM_BETAS,), "body shape coefficients (unitless, ~N(0, 1))",
                   (-MAX_ABS_BETA, MAX_ABS_BETA))
SOURCE_POSE = TensorSpec("source_pose", F32, (NUM_JOINTS, 3), "pose in the photo, axis-angle radians, SMPL order",
                         (-MAX_ABS_ANGLE, MAX_ABS_ANGLE))
CAMERA = TensorSpec("camera", F32, (3,), "weak-perspective camera (s NDC/m, tx NDC, ty NDC)", CAMERA_RANGE)
SOURCE_PARSING = TensorSpec("source_parsing", U8, (1, "N", "N"), "part label of each photo pixel",
                            (0, NUM_PARTS - 1))
SOURCE_DEPTH = TensorSpec(
    "source_depth", F16, (1, "N", "N"),
    f"front-surface Z (metres, +Z towards the camera) of the fitted body in the photo; {EMPTY_DEPTH_M:g} where empty",
    (EMPTY_DEPTH_M, MAX_DEPTH_M))
REGION_STYLE = TensorSpec("region_style", F32, (NUM_PARTS, STYLE_DIM), "style code per part; [:3] is the mean RGB in [0, 1]",
                          (-MAX_ABS_STYLE, MAX_ABS_STYLE))
PLATE_FILL = TensorSpec("plate_fill", U8, (3, "N", "N"),
                        "source_image with the person (mask > 0.15, grown) filled by OpenCV's Telea inpainting, "
                        "planar RGB levels", (0, 255))
BACKGROUND = TensorSpec("background", U8, (3, "N", "N"),
                        "source_image with the person taken out: plate_fill's hole refined by the learned plate "
                        "inpainter (plate_fill itself when built with BODYDANCE_PLATE=telea), planar RGB levels",
                        (0, 255))
PERSON_COUNT = TensorSpec("person_count", I32, (1,), "people detected in the photo; the largest is used")
PHOTO_SQUARE = TensorSpec(
    "photo_square", F32, (3,),
    "the working square in the photo (left, top, side; whole photo px, may reach past its edges): "
    "source_image and every frame show it at N x N")
DANCE_OFFSET = TensorSpec(
    "dance_offset", F32, (3,),
    "root offset (metres, +Y up) the client adds to every frame's target_translation, so that a person "
    "photographed leaning dances with the head inside the photo; zero for a person standing upright inside it",
    (-1.0, 1.0))

SUBJECT_TENSORS = (SOURCE_IMAGE, PERSON_MASK, BETAS, SOURCE_POSE, CAMERA, SOURCE_PARSING, SOURCE_DEPTH, REGION_STYLE,
                   BACKGROUND)

# --- frame ensemble: once per output frame --------------------------------------------
TARGET_POSE = TensorSpec("target_pose", F32, (NUM_JOINTS, 3), "template pose, axis-angle radians, SMPL order",
                         (-MAX_ABS_ANGLE, MAX_ABS_ANGLE))
TARGET_TRANSLATION = TensorSpec("target_translation", F32, (3,), "root offset from the source position, metres",
                                (-MAX_ABS_TRANSLATION_M, MAX_ABS_TRANSLATION_M))
FRAME = TensorSpec("frame", U8, ("N", "N", 3), "generated RGB frame of the working square, like source_image")
FRAME_ALPHA = TensorSpec(
    "frame_alpha", U8, ("N", "N", 1),
    "255 where the frame differs from the photo (the dancer, and the filled place where the photo's person stood), "
    "0 where it shows the photo's own pixels: what to composite onto the full-resolution photo")

# --- between frame-path stages --------------------------------------------------------
CORRESPONDENCE_FLOW = TensorSpec(
    "correspondence_flow", F32, (2, "N", "N"),
    "for each target pixel, the NDC (x, y) of the same body surface point in the source image")
SOURCE_VISIBILITY = TensorSpec(
    "source_visibility", F32, (1, "N", "N"), "1 where the target pixel's surface point is visible in the photo")
TARGET_PARTS = TensorSpec("target_parts", I32, (1, "N", "N"), "part label of the posed body rendered in the target")
TARGET_PARSING = TensorSpec("target_parsing", I32, (1, "N", "N"), "predicted part label of each target pixel")
# Tensors of part labels: compared exactly by the parity checks, whatever their dtype.
PART_LABEL_TENSORS = (SOURCE_PARSING, TARGET_PARTS, TARGET_PARSING)


@dataclasses.dataclass(frozen=True)
class StageContract:
    """Inputs and outputs of one stage model."""

    name: str
    inputs: Tuple[TensorSpec, ...]
    outputs: Tuple[TensorSpec, ...]
    frame_path: bool  # batched per frame (dynamic batching) vs once per photo


SUBJECT_RECONSTRUCTION = StageContract(
    "subject_reconstruction", (PHOTO,),
    (SOURCE_IMAGE, PERSON_MASK, PLATE_FILL, BETAS, SOURCE_POSE, CAMERA, PERSON_COUNT, PHOTO_SQUARE, DANCE_OFFSET),
    frame_path=False)
SOURCE_PARSER = StageContract(
    "source_parser", (PERSON_MASK, BETAS, SOURCE_POSE, CAMERA), (SOURCE_PARSING, SOURCE_DEPTH), frame_path=False)
STYLE_ENCODER = StageContract(
    "style_encoder", (SOURCE_IMAGE, PERSON_MASK, SOURCE_PARSING, PLATE_FILL), (REGION_STYLE, BACKGROUND), frame_path=False)
BODY_GEOMETRY = StageContract(
    "body_geometry", (BETAS, SOURCE_POSE, CAMERA, SOURCE_DEPTH, SOURCE_PARSING, TARGET_POSE, TARGET_TRANSLATION),
    (CORRESPONDENCE_FLOW, SOURCE_VISIBILITY, TARGET_PARTS), frame_path=True)
PARSING_PRIOR = StageContract(
    "parsing_prior", (SOURCE_PARSING, TARGET_PARTS, CORRESPONDENCE_FLOW), (TARGET_PARSING,), frame_path=True)
STYLE_GENERATOR = StageContract(
    "style_generator",
    (SOURCE_IMAGE, BACKGROUND, REGION_STYLE, CORRESPONDENCE_FLOW, SOURCE_VISIBILITY, TARGET_PARSING),
    (FRAME, FRAME_ALPHA), frame_path=True)



@dataclasses.dataclass(frozen=True)
class Stage:
    """One of the three stages of the method, with the model that serves each side of it.

    ``subject`` runs once per photo (in ``bodydance_subject``), ``frame`` once per output frame
    (in ``bodydance_frame``); the model code of both sides lives in ``bodydance.stages.<name>``.
    """

    name: str
    subject: StageContract
    frame: StageContract


STAGES = (
    Stage("reconstruction", SUBJECT_RECONSTRUCTION, BODY_GEOMETRY),  # 3D body: fit once, pose and draw per frame
    Stage("parsing", SOURCE_PARSER, PARSING_PRIOR),  # part labels of the photo, then of the target pose
    Stage("style", STYLE_ENCODER, STYLE_GENERATOR),  # region style codes, then the generated frame
)
SUBJECT_STAGES = tuple(stage.subject for stage in STAGES)
FRAME_STAGES = tuple(stage.frame for stage in STAGES)
# Every stage model but the MediaPipe reconstruction is exported to ONNX.
ONNX_STAGES = tuple(m for m in SUBJECT_STAGES + FRAME_STAGES if m is not SUBJECT_RECONSTRUCTION)


def stage_of(model_name: str) -> Stage:
    """The stage a stage model (either side) belongs to."""
    for stage in STAGES:
        if model_name in (stage.subject.name, stage.frame.name):
            return stage
    raise KeyError(f"{model_name!r} is not a stage model")

SUBJECT_ENSEMBLE = StageContract("bodydance_subject", (PHOTO,), SUBJECT_TENSORS + (PERSON_COUNT, PHOTO_SQUARE, DANCE_OFFSET),
                                 frame_path=False)
# The subject tensors that the frame path reads: what the client sends with every frame.
FRAME_SUBJECT_TENSORS = tuple(t for t in SUBJECT_TENSORS if any(t in stage.inputs for stage in FRAME_STAGES))
FRAME_ENSEMBLE = StageContract(
    "bodydance_frame", FRAME_SUBJECT_TENSORS + (TARGET_POSE, TARGET_TRANSLATION), (FRAME, FRAME_ALPHA), frame_path=True)
ENSEMBLES = (SUBJECT_ENSEMBLE, FRAME_ENSEMBLE)


# --- the edges of the ensembles (python-backend steps in both profiles) -----------------
# bodydance_frame's first step checks every request tensor against its valid range (all but the
# uint8 images, whose every value is valid) and hands the small ones on as "checked_<name>":
# body_geometry reads those, so no stage model (ONNX Runtime or TensorRT plan) starts on a request
# that the check refused. Every later step waits on body_geometry.
def checked(spec: TensorSpec) -> TensorSpec:
    return spec.renamed(f"checked_{spec.name}")


FRAME_GUARD = StageContract(
    "frame_guard", tuple(s for s in FRAME_ENSEMBLE.inputs if not s.every_value_valid),
    tuple(checked(s) for s in FRAME_ENSEMBLE.inputs if s in BODY_GEOMETRY.inputs and "N" not in s.shape),
    frame_path=True)


# bodydance_subject's last step hands every output on. Triton's ensemble scheduler answers a request
# only when the last step to finish produced one of the requested outputs; without this step a
# request for a subset of the outputs (say betas alone) failed with "unexpected deadlock".
def staged(spec: TensorSpec) -> TensorSpec:
    return spec.renamed(f"staged_{spec.name}")


SUBJECT_OUTPUTS = StageContract(
    "subject_outputs", tuple(staged(s) for s in SUBJECT_ENSEMBLE.outputs), SUBJECT_ENSEMBLE.outputs, frame_path=False)
EDGE_MODELS = (FRAME_GUARD, SUBJECT_OUTPUTS)

TENSORS_BY_NAME = {s.name: s for s in SUBJECT_ENSEMBLE.inputs + SUBJECT_ENSEMBLE.outputs + FRAME_ENSEMBLE.inputs}


def frame_request_bytes(resolution: int = DEFAULT_RESOLUTION) -> int:
    """Tensor bytes of one frame request (one frame, no batching): what the frame ensemble reads."""
    return sum(int(np.prod(s.concrete_shape(resolution))) * np.dtype(s.dtype).itemsize for s in FRAME_ENSEMBLE.inputs)


TRITON_DTYPE = {F32: "FP32", F16: "FP16", I32: "INT32", U8: "UINT8"}


@dataclasses.dataclass(frozen=True)
class PhotoSquare:
    """The working square: a ``side x side`` px square of the photo, seen by the models at ``N x N``.

    ``left``/``top``/``side`` are whole photo pixels; the square may reach past the photo's edges
    (those pixels are padding). The subject side chooses it around the person
    (:data:`PHOTO_SQUARE`); :meth:`letterbox` is the whole photo, centred. Square pixel ``(u, v)``
    (0..N-1) covers photo pixels ``left + u * side / N`` to ``left + (u + 1) * side / N``.
    """

    left: int
    top: int
    side: int
    resolution: int

    @classmethod
    def letterbox(cls, photo_height: int, photo_width: int, resolution: int) -> "PhotoSquare":
        side = max(photo_height, photo_width)
        return cls((photo_width - side) // 2, (photo_height - side) // 2, side, resolution)

    @classmethod
    def from_tensor(cls, values: np.ndarray, resolution: int) -> "PhotoSquare":
        left, top, side = (int(round(float(v))) for v in np.asarray(values).reshape(-1)[:3])
        return cls(left, top, side, resolution)

    def as_tensor(self) -> np.ndarray:
        return np.array([self.left, self.top, self.side], np.float32)

    @property
    def scale(self) -> float:
        """Square pixels per photo pixel."""
        return self.resolution / self.side

    def to_ndc(self, xy_px: np.ndarray) -> np.ndarray:
        """Photo pixel coordinates ``[..., 2]`` (x right, y down; 0 at the first pixel's outer edge) -> NDC."""
        return (np.asarray(xy_px, np.float64) - [self.left, self.top]) * (2.0 / self.side) - 1.0

    def to_photo(self, ndc: np.ndarray) -> np.ndarray:
        """NDC ``[..., 2]`` -> photo pixel coordinates (the inverse of :meth:`to_ndc`)."""
        return (np.asarray(ndc, np.float64) + 1.0) * (self.side / 2.0) + [self.left, self.top]

    def reframe_camera(self, camera: np.ndarray, other: "PhotoSquare") -> np.ndarray:
        """A weak-perspective camera ``(s, tx, ty)`` in this square's NDC -> the same camera in ``other``'s."""
        k = self.side / other.side
        shift = (np.array([self.left, self.top], np.float64) - [other.left, other.top]) * (2.0 / other.side) + k - 1.0
        s, tx, ty = (float(v) for v in camera)
        return np.array([k * s, k * tx + shift[0], k * ty + shift[1]], np.float32)
