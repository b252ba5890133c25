"""The synchronous client: ``prepare`` a photo once, then request frames, or ``animate`` to a file.

Frame requests are stateless and idempotent: the client keeps the subject
tensors and sends them with every frame (through system shared memory when
``shared_memory=True`` and the server is on this host), keeps a bounded
window of frames in flight, and retries a frame on UNAVAILABLE with
exponential backoff, moving to the next server URL if it was given several.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import threading
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from bodydance_client import contract as C
from bodydance_client.errors import (
    BodyDanceError, PhotoNotUprightError, RequestTimeoutError, ServerNotReadyError, from_tagged,
)
from bodydance_client import compositing
from bodydance_client.images import UPLOAD_SIDE, PhotoLike, load_photo
from bodydance_client.templates import Template, resolve_template
from bodydance_client.video import Mp4Writer, contact_sheet

DEFAULT_URL = "127.0.0.1:8001"


@dataclasses.dataclass
class Subject:
    """Everything the frame ensemble needs about one photo, plus what to composite frames onto.

    ``tensors`` maps each of :data:`contract.SUBJECT_TENSORS` to an array with a leading batch
    dimension of 1. ``square`` is the working square in the uploaded photo's px; ``canvas`` the
    photo at the video's resolution (``photo`` is the uploaded, possibly smaller, copy).
    """

    tensors: Dict[str, np.ndarray]
    photo_size: tuple  # (height, width) px of the uploaded photo
    person_count: int
    photo: Optional[np.ndarray] = None
    square: Optional[C.PhotoSquare] = None
    canvas: Optional[np.ndarray] = None

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


def _status(err: InferenceServerException) -> str:
    return str(err.status() or "")


def _translate(err: InferenceServerException, what: str) -> BodyDanceError:
    status = _status(err)
    if "INVALID_ARGUMENT" in status:
        return from_tagged(err.message() or str(err))
    if "DEADLINE_EXCEEDED" in status:
        return RequestTimeoutError(f"{what} did not finish within its timeout")
    return ServerNotReadyError(f"{what} failed: {status} {err.message()}")


_RETRYABLE = ("UNAVAILABLE", "RESOURCE_EXHAUSTED", "UNKNOWN")


def is_retryable(err: InferenceServerException) -> bool:
    status = _status(err)
    return any(code in status for code in _RETRYABLE)


def tensor_input(spec: C.TensorSpec, value: np.ndarray):
    tensor = grpcclient.InferInput(spec.name, list(value.shape), C.TRITON_DTYPE[spec.dtype])
    tensor.set_data_from_numpy(np.ascontiguousarray(value, dtype=spec.dtype))
    return tensor


def subject_request(image: np.ndarray):
    """(inputs, outputs) of the subject ensemble for one decoded photo."""
    return ([tensor_input(C.PHOTO, image[None])],
            [grpcclient.InferRequestedOutput(s.name) for s in C.SUBJECT_ENSEMBLE.outputs])


def turn_upright(canvas: np.ndarray, image: np.ndarray, err: PhotoNotUprightError):
    """Both copies of the photo turned as the server's evidence says, with a warning that says so."""
    warnings.warn(f"turned the photo to stand the person upright ({err})", RuntimeWarning, stacklevel=3)
    return (np.ascontiguousarray(np.rot90(canvas, err.quarter_turns)),
            np.ascontiguousarray(np.rot90(image, err.quarter_turns)))


def load_canvas_and_upload(photo: PhotoLike, max_side: int):
    """(the photo at the video's resolution, the copy to upload): decoded once."""
    full = load_photo(photo, max_side=max(max_side, UPLOAD_SIDE))
    return load_photo(full, max_side=max_side), load_photo(full)


def subject_from_result(result, image: np.ndarray, canvas: Optional[np.ndarray] = None) -> "Subject":
    tensors = {s.name: result.as_numpy(s.name) for s in C.SUBJECT_TENSORS}
    count = int(result.as_numpy(C.PERSON_COUNT.name).reshape(-1)[0])
    scale = float(tensors[C.CAMERA.name].reshape(-1)[0])
    if scale > C.MAX_CAMERA_SCALE:
        warnings.warn(f"the person fills the photo (camera scale {scale:.2f} NDC/m, above {C.MAX_CAMERA_SCALE}): "
                      "frames may miss pixels on the body's largest triangles; a photo showing more of the body "
                      "avoids it", RuntimeWarning, stacklevel=3)
    square = C.PhotoSquare.from_tensor(result.as_numpy(C.PHOTO_SQUARE.name), int(tensors[C.SOURCE_IMAGE.name].shape[-1]))
    return Subject(tensors, image.shape[:2], count, photo=image, square=square, canvas=canvas)


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


class BodyDanceClient:
    """gRPC client for one or more servers serving the BodyDance ensembles.

    Args:
        urls: ``host:port`` of a server's gRPC endpoint, or several for failover.
        timeout_s: deadline of each request.
        retry_deadline_s: how long a frame keeps being retried while servers are unavailable.
        window: frames in flight at once in :meth:`frames`.
        shared_memory: pass subject tensors through system shared memory (server on this host).
        max_side: longest side of the video in px; the photo's own resolution up to it.
        turn_upright: when the server finds the person upside down or sideways and says clearly how
            to turn the photo, turn it and try again (with a RuntimeWarning); else the error stands.
    """

    def __init__(self, urls: Union[str, Sequence[str]] = DEFAULT_URL, *, timeout_s: float = 60.0,
                 retry_deadline_s: float = 60.0, window: int = 4, shared_memory: bool = False,
                 max_side: int = compositing.DEFAULT_MAX_SIDE, turn_upright: bool = True):
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        self.max_side = int(max_side)
        self.turn_upright = bool(turn_upright)
        if not self.urls:
            raise ValueError("at least one server URL is needed")
        self.timeout_s = timeout_s
        self.retry_deadline_s = retry_deadline_s
        self.window = max(1, window)
        self.shared_memory = shared_memory
        self._clients = [grpcclient.InferenceServerClient(u) for u in self.urls]
        self._active = 0
        self._lock = threading.Lock()
        self._shm_regions: List[tuple] = []

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
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for client in self._clients:
                try:
                    if client.is_model_ready(C.SUBJECT_ENSEMBLE.name) and client.is_model_ready(C.FRAME_ENSEMBLE.name):
                        return
                except InferenceServerException:
                    pass
            time.sleep(0.25)
        raise ServerNotReadyError(f"no server at {', '.join(self.urls)} had both ensembles ready "
                                  f"within {timeout_s:.0f} s")

    def _infer(self, model: str, inputs, outputs, *, retry: bool, what: str):
        deadline = time.monotonic() + self.retry_deadline_s
        delay, attempt = 0.2, 0
        while True:
            with self._lock:
                index = self._active
            try:
                return self._clients[index].infer(model, inputs, outputs=outputs, client_timeout=self.timeout_s)
            except InferenceServerException as err:
                if not (retry and is_retryable(err)):
                    raise _translate(err, what) from err
                if time.monotonic() > deadline:
                    raise ServerNotReadyError(
                        f"{what}: no server answered within {self.retry_deadline_s:.0f} s "
                        f"({attempt + 1} attempts; last: {_status(err)})") from err
                with self._lock:  # fail over to the next server, then back off
                    if self._active == index:
                        self._active = (index + 1) % len(self._clients)
                attempt += 1
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 5.0)

    # -- subject -------------------------------------------------------------------------
    def prepare(self, photo: PhotoLike) -> Subject:
        """Photo (path, bytes, PIL image or uint8 array) -> :class:`Subject`. Runs once per photo."""
        canvas, image = load_canvas_and_upload(photo, self.max_side)
        try:
            inputs, outputs = subject_request(image)
            result = self._infer(C.SUBJECT_ENSEMBLE.name, inputs, outputs, retry=True, what="prepare(photo)")
        except PhotoNotUprightError as err:
            if not self.turn_upright or err.quarter_turns is None:
                raise
            canvas, image = turn_upright(canvas, image, err)
            inputs, outputs = subject_request(image)
            result = self._infer(C.SUBJECT_ENSEMBLE.name, inputs, outputs, retry=True, what="prepare(photo)")
        return subject_from_result(result, image, canvas)

    # -- frames --------------------------------------------------------------------------
    def _subject_inputs(self, subject: Subject):
        if not self.shared_memory:
            return [tensor_input(spec, subject.tensors[spec.name]) for spec in C.FRAME_SUBJECT_TENSORS]
        return self._shared_subject_inputs(subject)

    def _shared_subject_inputs(self, subject: Subject):
        import tritonclient.utils.shared_memory as shm

        arrays = [np.ascontiguousarray(subject.tensors[s.name], dtype=s.dtype) for s in C.FRAME_SUBJECT_TENSORS]
        total = sum(a.nbytes for a in arrays)
        name = f"bodydance_{uuid.uuid4().hex[:12]}"
        handle = shm.create_shared_memory_region(name, f"/{name}", total)
        offset, inputs = 0, []
        for spec, array in zip(C.FRAME_SUBJECT_TENSORS, arrays):
            shm.set_shared_memory_region(handle, [array], offset=offset)
            tensor = grpcclient.InferInput(spec.name, list(array.shape), C.TRITON_DTYPE[spec.dtype])
            tensor.set_shared_memory(name, array.nbytes, offset=offset)
            inputs.append(tensor)
            offset += array.nbytes
        for client in self._clients:
            client.register_system_shared_memory(name, f"/{name}", total)
        self._shm_regions.append((name, handle))
        return inputs

    def _release_shared_memory(self) -> None:
        if not self._shm_regions:
            return
        import tritonclient.utils.shared_memory as shm

        for name, handle in self._shm_regions:
            for client in self._clients:
                try:
                    client.unregister_system_shared_memory(name)
                except InferenceServerException:
                    pass
            shm.destroy_shared_memory_region(handle)
        self._shm_regions.clear()

    def _frame(self, subject_inputs, resolution: int, pose: np.ndarray, translation: np.ndarray,
               index: int) -> np.ndarray:
        inputs, outputs = frame_request(subject_inputs, pose, translation)
        result = self._infer(C.FRAME_ENSEMBLE.name, inputs, outputs, retry=True, what=f"frame {index}")
        return frame_from_result(result, resolution, index)

    def frames(self, subject: Subject, template: Union[str, Template], *, crop: bool = True,
               window: Optional[int] = None) -> Iterator[np.ndarray]:
        """Yield the dance frames in order, ``window`` requests in flight at a time."""
        template = resolve_template(template) if not isinstance(template, Template) else template
        window = window or self.window
        subject_inputs = self._subject_inputs(subject)
        pending = collections.deque()
        try:
            with ThreadPoolExecutor(max_workers=window, thread_name_prefix="bodydance-frame") as pool:
                try:
                    for index in range(template.num_frames):
                        pending.append(pool.submit(self._frame, subject_inputs, subject.resolution,
                                                   template.poses[index], template.translations[index], index))
                        if len(pending) >= window:
                            frame = pending.popleft().result()
                            yield subject.present(frame, composite=crop)
                    while pending:
                        frame = pending.popleft().result()
                        yield subject.present(frame, composite=crop)
                finally:
                    for future in pending:
                        future.cancel()
        finally:
            self._release_shared_memory()

    def animate(self, photo: PhotoLike, template: Union[str, Template], path: os.PathLike, *,
                contact_sheet_path: Optional[os.PathLike] = None,
                progress: Optional[Callable[[int, int], None]] = None) -> Subject:
        """Photo + template -> H.264 MP4 at ``path`` (written whole or not at all)."""
        template = resolve_template(template) if not isinstance(template, Template) else template
        subject = self.prepare(photo)
        sheet_every = max(1, template.num_frames // 11)
        sheet = []
        with Mp4Writer(path, template.fps) as writer:
            for i, frame in enumerate(self.frames(subject, template)):
                writer.write(frame)
                if i % sheet_every == 0 and len(sheet) < 11:
                    sheet.append(frame)
                if progress:
                    progress(i + 1, template.num_frames)
        if contact_sheet_path is not None:
            contact_sheet(sheet, contact_sheet_path, photo=subject.photo)
        return subject
