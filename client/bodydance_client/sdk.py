"""The synchronous client: ``prepare`` a photo once, then request frames, or ``animate`` to a file.

Frame requests are stateless and idempotent: the client keeps the subject
tensors and sends them with every frame (through system shared memory when
``shared_memory=True`` and the server is on this host), keeps a bounded
window of frames in flight, and retries a frame on UNAVAILABLE with
exponential backoff, moving to the next server URL if it was given several; a
balanced target (``dns:///service:8001``) spreads frames over its servers itself.
Those rules are :mod:`bodydance_client.policy`, the settings, connections and
shared memory :mod:`bodydance_client.transport`; both are shared with the
asyncio client (:mod:`bodydance_client.aio`), which differs only in awaiting.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from bodydance_client import contract as C
from bodydance_client import compositing
from bodydance_client.errors import PhotoNotUprightError, ServerNotReadyError
from bodydance_client.images import UPLOAD_SIDE, PhotoLike, load_photo
from bodydance_client.policy import (
    DEFAULT_LB_POLICY, READY_MODELS, InOrderWindow, is_retryable, not_ready_error, ready_polls,
)
from bodydance_client.templates import Template, resolve_template
from bodydance_client.transport import ClientCore, tensor_input
from bodydance_client.video import Mp4Writer, contact_sheet

__all__ = ["BodyDanceClient", "Subject", "Recording", "DEFAULT_URL", "as_template", "frame_from_result",
           "frame_request", "is_retryable", "load_canvas_and_upload", "subject_from_result", "subject_request", "tensor_input"]

DEFAULT_URL = "127.0.0.1:8001"
CONTACT_SHEET_FRAMES = 11


@dataclasses.dataclass
class Subject:
    """Everything the frame ensemble needs about one photo, plus what to composite frames onto.

    ``tensors`` maps each of :data:`contract.SUBJECT_TENSORS` to an array with a leading batch
    dimension of 1. ``square`` is the working square in the uploaded photo's px; ``canvas`` the
    photo at the video's resolution (``photo`` is the uploaded, possibly smaller, copy);
    ``dance_offset`` ``[3]`` m where the dance stands (:data:`contract.DANCE_OFFSET`).
    """

    tensors: Dict[str, np.ndarray]
    photo_size: tuple  # (height, width) px of the uploaded photo
    person_count: int
    photo: Optional[np.ndarray] = None
    square: Optional[C.PhotoSquare] = None
    canvas: Optional[np.ndarray] = None
    dance_offset: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(3, np.float32))

    def placed(self, template: Template) -> Template:
        """``template`` danced where this subject stands: its root offsets moved by :attr:`dance_offset`."""
        if not np.any(self.dance_offset):
            return template
        return dataclasses.replace(template, translations=(template.translations + self.dance_offset).astype(np.float32))

    @property
    def resolution(self) -> int:
        return int(self.tensors[C.SOURCE_IMAGE.name].shape[-1])

    @property
    def video_size(self) -> tuple:
        """(height, width) px of the composited frames."""
        canvas = self.canvas if self.canvas is not None else self.photo
        return canvas.shape[:2]

    def present(self, frame: np.ndarray, composite: bool = True) -> np.ndarray:
        """``[N, N, 4]`` frame + alpha from the server -> the frame composited onto the photo at its
        own resolution (``composite=False``: the ``[N, N, 3]`` frame of the working square as it came)."""
        canvas = self.canvas if self.canvas is not None else self.photo
        if not composite or canvas is None:
            return frame[..., :3]
        square = self.square or C.PhotoSquare.letterbox(*self.photo_size, self.resolution)
        box = compositing.square_in((square.left, square.top, square.side), self.photo_size, canvas.shape[:2])
        return compositing.composite(canvas, box, frame[..., :3], frame[..., 3:])


def load_canvas_and_upload(photo: PhotoLike, max_side: int):
    """(the photo at the video's resolution, the copy to upload): decoded once."""
    full = load_photo(photo, max_side=max(max_side, UPLOAD_SIDE))
    return load_photo(full, max_side=max_side), load_photo(full)


def as_template(template: Union[str, Template]) -> Template:
    """A :class:`Template`, or the name or ``.npz`` path of one."""
    return template if isinstance(template, Template) else resolve_template(template)


def subject_request(image: np.ndarray):
    """(inputs, outputs) of the subject ensemble for one decoded photo."""
    return ([tensor_input(C.PHOTO, image[None])],
            [grpcclient.InferRequestedOutput(s.name) for s in C.SUBJECT_ENSEMBLE.outputs])


def subject_from_result(result, image: np.ndarray, canvas: Optional[np.ndarray] = None) -> "Subject":
    tensors = {s.name: result.as_numpy(s.name) for s in C.SUBJECT_TENSORS}
    count = int(result.as_numpy(C.PERSON_COUNT.name).reshape(-1)[0])
    scale = float(tensors[C.CAMERA.name].reshape(-1)[0])
    if scale > C.MAX_CAMERA_SCALE:
        warnings.warn(f"the person fills the photo (camera scale {scale:.2f} NDC/m, above {C.MAX_CAMERA_SCALE}): "
                      "frames may miss pixels on the body's largest triangles; a photo showing more of the body "
                      "avoids it", RuntimeWarning, stacklevel=3)
    square = C.PhotoSquare.from_tensor(result.as_numpy(C.PHOTO_SQUARE.name), int(tensors[C.SOURCE_IMAGE.name].shape[-1]))
    offset = result.as_numpy(C.DANCE_OFFSET.name).reshape(-1).astype(np.float32)
    return Subject(tensors, image.shape[:2], count, photo=image, square=square, canvas=canvas, dance_offset=offset)


def frame_request(subject_inputs, pose: np.ndarray, translation: np.ndarray):
    inputs = list(subject_inputs) + [tensor_input(C.TARGET_POSE, pose[None]),
                                     tensor_input(C.TARGET_TRANSLATION, translation[None])]
    return inputs, [grpcclient.InferRequestedOutput(s.name) for s in C.FRAME_ENSEMBLE.outputs]


def frame_from_result(result, resolution: int, index: int) -> np.ndarray:
    """-> ``[N, N, 4]`` uint8: the frame's RGB and its alpha (see :meth:`Subject.present`)."""
    planes = []
    for spec in (C.FRAME, C.FRAME_ALPHA):
        value = result.as_numpy(spec.name)
        expected = (1,) + spec.concrete_shape(resolution)
        if value is None or value.shape != expected or value.dtype != np.uint8:
            got = None if value is None else (value.shape, value.dtype)
            raise ServerNotReadyError(f"frame {index}: expected {spec.name} uint8 {expected} from the server, got {got}")
        planes.append(value[0])
    return np.concatenate(planes, axis=-1)


class Recording:
    """One animation being written: the MP4, the frames kept for its contact sheet, the progress callback.

    :meth:`open`, :meth:`write` and :meth:`close` do the blocking file work (the
    asyncio client runs them, in order, on one worker thread); :meth:`keep` is
    cheap. The MP4 appears at ``path`` whole or not at all, the contact sheet only
    after it. As a context manager: ``open`` on entry, ``close`` on exit.
    """

    def __init__(self, path: os.PathLike, template: Template, *, photo: Optional[np.ndarray] = None,
                 contact_sheet_path: Optional[os.PathLike] = None,
                 progress: Optional[Callable[[int, int], None]] = None):
        self._writer = Mp4Writer(path, template.fps)
        self._photo = photo
        self._sheet_path = contact_sheet_path
        self._progress = progress
        self._sheet_every = max(1, template.num_frames // CONTACT_SHEET_FRAMES)
        self.total = template.num_frames
        self.done = 0
        self.sheet: List[np.ndarray] = []

    def open(self) -> None:
        self._writer.__enter__()

    def write(self, frame: np.ndarray) -> None:
        self._writer.write(frame)

    def keep(self, frame: np.ndarray) -> None:
        """After :meth:`write`: remember the frame for the sheet if it is due, report progress."""
        if self.done % self._sheet_every == 0 and len(self.sheet) < CONTACT_SHEET_FRAMES:
            self.sheet.append(frame)
        self.done += 1
        if self._progress:
            self._progress(self.done, self.total)

    def add(self, frame: np.ndarray) -> None:
        self.write(frame)
        self.keep(frame)

    def close(self, exc_type=None, exc=None, tb=None) -> None:
        """Finish the MP4 (or remove it, when given the exception that ended the frames), then the sheet."""
        self._writer.__exit__(exc_type, exc, tb)
        if exc_type is None and self._sheet_path is not None:
            contact_sheet(self.sheet, self._sheet_path, photo=self._photo)

    def __enter__(self) -> "Recording":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close(*exc)


class BodyDanceClient(ClientCore):
    """gRPC client for one or more servers serving the BodyDance ensembles.

    Args:
        urls: ``host:port`` of a server's gRPC endpoint, or several for failover; or a gRPC target that
            gRPC balances over several servers: ``dns:///service:8001`` (a headless Service's name),
            ``ipv4:10.0.0.1:8001,10.0.0.2:8001`` (:func:`~bodydance_client.policy.balanced_target`).
        timeout_s: deadline of each request.
        retry_deadline_s: how long a frame keeps being retried while servers are unavailable.
        window: frames in flight at once in :meth:`frames`.
        shared_memory: pass subject tensors through system shared memory (server on this host).
        max_side: longest side of the video in px; the photo's own resolution up to it.
        turn_upright: turn a photo whose person the server finds upside down or sideways, when it
            says clearly how (with a RuntimeWarning), and try again.
        lb_policy: gRPC load-balancing policy of balanced targets (default ``round_robin``).
    """

    def __init__(self, urls: Union[str, Sequence[str]] = DEFAULT_URL, *, timeout_s: float = 60.0,
                 retry_deadline_s: float = 60.0, window: int = 4, shared_memory: bool = False,
                 max_side: int = compositing.DEFAULT_MAX_SIDE, turn_upright: bool = True,
                 lb_policy: str = DEFAULT_LB_POLICY):
        super().__init__(urls, grpcclient.InferenceServerClient, timeout_s=timeout_s,
                         retry_deadline_s=retry_deadline_s, window=window, shared_memory=shared_memory,
                         max_side=max_side, turn_upright=turn_upright, lb_policy=lb_policy)

    # -- plumbing ------------------------------------------------------------------------
    def close(self) -> None:
        self._release_shared_memory()
        for client in self._clients:
            client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def wait_until_ready(self, timeout_s: float = 60.0) -> None:
        for pause in ready_polls(timeout_s):
            if any(self._ready(client) for client in self._clients):
                return
            time.sleep(pause)
        raise not_ready_error(self.urls, timeout_s)

    @staticmethod
    def _ready(client) -> bool:
        try:
            return all(client.is_model_ready(model) for model in READY_MODELS)
        except InferenceServerException:
            return False

    def _infer(self, model: str, inputs, outputs, *, retry: bool, what: str):
        for attempt in self._attempts(what, retry):
            try:
                return self._clients[attempt.server].infer(model, inputs, outputs=outputs,
                                                           client_timeout=self.timeout_s)
            except InferenceServerException as err:
                time.sleep(attempt.failed(err))

    # -- subject -------------------------------------------------------------------------
    def prepare(self, photo: PhotoLike) -> Subject:
        """Photo (path, bytes, PIL image or uint8 array) -> :class:`Subject`. Runs once per photo."""
        canvas, image = load_canvas_and_upload(photo, self.max_side)
        try:
            result = self._infer(C.SUBJECT_ENSEMBLE.name, *subject_request(image), retry=True, what="prepare(photo)")
        except PhotoNotUprightError as err:
            canvas, image = self._turned(canvas, image, err)
            result = self._infer(C.SUBJECT_ENSEMBLE.name, *subject_request(image), retry=True, what="prepare(photo)")
        return subject_from_result(result, image, canvas)

    # -- frames --------------------------------------------------------------------------
    def _subject_inputs(self, subject: Subject):
        inputs, regions = self._new_subject_inputs(subject)
        for region in regions:
            for client in self._clients:
                client.register_system_shared_memory(*region.registration)
        return inputs

    def _release_shared_memory(self) -> None:
        for region in self._take_shm_regions():
            for client in self._clients:
                with contextlib.suppress(InferenceServerException):
                    client.unregister_system_shared_memory(region.name)
            region.destroy()

    def _frame(self, subject_inputs, resolution: int, template: Template, index: int) -> np.ndarray:
        inputs, outputs = frame_request(subject_inputs, template.poses[index], template.translations[index])
        result = self._infer(C.FRAME_ENSEMBLE.name, inputs, outputs, retry=True, what=f"frame {index}")
        return frame_from_result(result, resolution, index)

    def frames(self, subject: Subject, template: Union[str, Template], *, crop: bool = True,
               window: Optional[int] = None, keep_in_frame: bool = True) -> Iterator[np.ndarray]:
        """Yield the dance frames in order, ``window`` requests in flight at a time: composited onto the
        photo at its own resolution, or (``crop=False``) the ``N x N`` frames of the working square.
        ``keep_in_frame=False`` dances the template's root offsets as they are, from where the photo's
        pelvis is (a benchmark comparing with footage of the same moves wants that)."""
        template = as_template(template)
        if keep_in_frame:
            template = subject.placed(template)
        window = window or self.window
        try:
            frame_job = functools.partial(self._frame, self._subject_inputs(subject), subject.resolution, template)
            with ThreadPoolExecutor(max_workers=window, thread_name_prefix="bodydance-frame") as pool, \
                    InOrderWindow(template.num_frames, window, lambda i: pool.submit(frame_job, i)) as flight:
                for future in flight:
                    frame = future.result()
                    yield subject.present(frame, composite=crop)
        finally:
            self._release_shared_memory()

    def animate(self, photo: PhotoLike, template: Union[str, Template], path: os.PathLike, *,
                contact_sheet_path: Optional[os.PathLike] = None,
                progress: Optional[Callable[[int, int], None]] = None, keep_in_frame: bool = True) -> Subject:
        """Photo + template -> H.264 MP4 at ``path`` (written whole or not at all); ``keep_in_frame`` as in :meth:`frames`."""
        template = as_template(template)
        subject = self.prepare(photo)
        with Recording(path, template, photo=subject.photo, contact_sheet_path=contact_sheet_path,
                       progress=progress) as recording:
            for frame in self.frames(subject, template, keep_in_frame=keep_in_frame):
                recording.add(frame)
        return subject
