"""The asyncio flavour of :class:`bodydance_client.sdk.BodyDanceClient` (same behaviour, one event loop)."""

from __future__ import annotations

import asyncio
import collections
from typing import AsyncIterator, Optional, Sequence, Union

import numpy as np
import tritonclient.grpc.aio as grpcaio
from tritonclient.utils import InferenceServerException

from bodydance_client import compositing
from bodydance_client import contract as C
from bodydance_client.errors import ServerNotReadyError
from bodydance_client.images import PhotoLike
from bodydance_client.sdk import (
    DEFAULT_URL, Subject, _status, load_canvas_and_upload, _translate, frame_from_result, frame_request, is_retryable, subject_from_result,
    subject_request, tensor_input,
)
from bodydance_client.templates import Template, resolve_template


class AsyncBodyDanceClient:
    """``await client.prepare(photo)``; ``async for frame in client.frames(subject, template)``."""

    def __init__(self, urls: Union[str, Sequence[str]] = DEFAULT_URL, *, timeout_s: float = 60.0,
                 retry_deadline_s: float = 60.0, window: int = 4, max_side: int = compositing.DEFAULT_MAX_SIDE):
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        self.max_side = int(max_side)
        self.timeout_s = timeout_s
        self.retry_deadline_s = retry_deadline_s
        self.window = max(1, window)
        self._clients = [grpcaio.InferenceServerClient(u) for u in self.urls]
        self._active = 0

    async def close(self) -> None:
        for client in self._clients:
            await client.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def _infer(self, model, inputs, outputs, what: str):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_deadline_s
        delay = 0.2
        while True:
            index = self._active
            try:
                return await self._clients[index].infer(model, inputs, outputs=outputs, client_timeout=self.timeout_s)
            except InferenceServerException as err:
                if not is_retryable(err):
                    raise _translate(err, what) from err
                if loop.time() > deadline:
                    raise ServerNotReadyError(f"{what}: no server answered within {self.retry_deadline_s:.0f} s "
                                              f"(last: {_status(err)})") from err
                if self._active == index:
                    self._active = (index + 1) % len(self._clients)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def prepare(self, photo: PhotoLike) -> Subject:
        canvas, image = await asyncio.to_thread(load_canvas_and_upload, photo, self.max_side)
        inputs, outputs = subject_request(image)
        result = await self._infer(C.SUBJECT_ENSEMBLE.name, inputs, outputs, "prepare(photo)")
        return subject_from_result(result, image, canvas)

    async def _frame(self, subject: Subject, subject_inputs, pose, translation, index: int) -> np.ndarray:
        inputs, outputs = frame_request(subject_inputs, pose, translation)
        result = await self._infer(C.FRAME_ENSEMBLE.name, inputs, outputs, f"frame {index}")
        return frame_from_result(result, subject.resolution, index)

    async def frames(self, subject: Subject, template: Union[str, Template], *, crop: bool = True,
                     window: Optional[int] = None) -> AsyncIterator[np.ndarray]:
        template = resolve_template(template) if not isinstance(template, Template) else template
        window = window or self.window
        subject_inputs = [tensor_input(s, subject.tensors[s.name]) for s in C.FRAME_SUBJECT_TENSORS]
        pending = collections.deque()
        try:
            for index in range(template.num_frames):
                pending.append(asyncio.ensure_future(self._frame(
                    subject, subject_inputs, template.poses[index], template.translations[index], index)))
                if len(pending) >= window:
                    frame = await pending.popleft()
                    yield subject.present(frame, composite=crop)
            while pending:
                frame = await pending.popleft()
                yield subject.present(frame, composite=crop)
        finally:
            for task in pending:
                task.cancel()
