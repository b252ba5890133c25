"""The asyncio flavour of :class:`bodydance_client.sdk.BodyDanceClient`: the same behaviour on one event loop.

Both clients share their settings, connections and shared-memory regions
(:mod:`bodydance_client.transport`) and their retry, failover and window rules
(:mod:`bodydance_client.policy`); this one awaits where the other blocks, and
runs the blocking file work of :meth:`AsyncBodyDanceClient.animate` on a
worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import AsyncIterator, Callable, Optional, Sequence, Union

import numpy as np
import tritonclient.grpc.aio as grpcaio
from tritonclient.utils import InferenceServerException

from bodydance_client import compositing
from bodydance_client import contract as C
from bodydance_client.errors import PhotoNotUprightError
from bodydance_client.images import PhotoLike
from bodydance_client.policy import DEFAULT_LB_POLICY, READY_MODELS, InOrderWindow, not_ready_error, ready_polls
from bodydance_client.sdk import (
    DEFAULT_URL, Recording, Subject, as_template, frame_from_result, frame_request, load_canvas_and_upload,
    subject_from_result, subject_request,
)
from bodydance_client.templates import Template
from bodydance_client.transport import ClientCore


class AsyncBodyDanceClient(ClientCore):
    """``await client.prepare(photo)``; ``async for frame in client.frames(subject, template)``.

    Takes the arguments of :class:`~bodydance_client.sdk.BodyDanceClient`.
    """

    def __init__(self, urls: Union[str, Sequence[str]] = DEFAULT_URL, *, timeout_s: float = 60.0,
                 retry_deadline_s: float = 60.0, window: int = 4, shared_memory: bool = False,
                 max_side: int = compositing.DEFAULT_MAX_SIDE, turn_upright: bool = True,
                 lb_policy: str = DEFAULT_LB_POLICY):
        super().__init__(urls, grpcaio.InferenceServerClient, timeout_s=timeout_s,
                         retry_deadline_s=retry_deadline_s, window=window, shared_memory=shared_memory,
                         max_side=max_side, turn_upright=turn_upright, lb_policy=lb_policy)

    # -- plumbing ------------------------------------------------------------------------
    async def close(self) -> None:
        await self._release_shared_memory()
        for client in self._clients:
            await client.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def wait_until_ready(self, timeout_s: float = 60.0) -> None:
        for pause in ready_polls(timeout_s):
            for client in self._clients:
                if await self._ready(client):
                    return
            await asyncio.sleep(pause)
        raise not_ready_error(self.urls, timeout_s)

    @staticmethod
    async def _ready(client) -> bool:
        try:
            for model in READY_MODELS:
                if not await client.is_model_ready(model):
                    return False
            return True
        except InferenceServerException:
            return False

    async def _infer(self, model: str, inputs, outputs, *, what: str, retry: bool = True):
        for attempt in self._attempts(what, retry):
            try:
                return await self._clients[attempt.server].infer(model, inputs, outputs=outputs,
                                                                 client_timeout=self.timeout_s)
            except InferenceServerException as err:
                await asyncio.sleep(attempt.failed(err))

    # -- subject -------------------------------------------------------------------------
    async def prepare(self, photo: PhotoLike) -> Subject:
        canvas, image = await asyncio.to_thread(load_canvas_and_upload, photo, self.max_side)
        try:
            result = await self._infer(C.SUBJECT_ENSEMBLE.name, *subject_request(image), what="prepare(photo)")
        except PhotoNotUprightError as err:
            canvas, image = self._turned(canvas, image, err)
            result = await self._infer(C.SUBJECT_ENSEMBLE.name, *subject_request(image), what="prepare(photo)")
        return subject_from_result(result, image, canvas)

    # -- frames --------------------------------------------------------------------------
    async def _subject_inputs(self, subject: Subject):
        inputs, regions = self._new_subject_inputs(subject)
        for region in regions:
            for client in self._clients:
                await client.register_system_shared_memory(*region.registration)
        return inputs

    async def _release_shared_memory(self) -> None:
        for region in self._take_shm_regions():
            for client in self._clients:
                with contextlib.suppress(InferenceServerException):
                    await client.unregister_system_shared_memory(region.name)
            region.destroy()

    async def _frame(self, subject_inputs, resolution: int, template: Template, index: int) -> np.ndarray:
        inputs, outputs = frame_request(subject_inputs, template.poses[index], template.translations[index])
        result = await self._infer(C.FRAME_ENSEMBLE.name, inputs, outputs, what=f"frame {index}")
        return frame_from_result(result, resolution, index)

    async def frames(self, subject: Subject, template: Union[str, Template], *, crop: bool = True,
                     window: Optional[int] = None, keep_in_frame: bool = True) -> AsyncIterator[np.ndarray]:
        """Yield the dance frames in order, ``window`` requests in flight at a time (as the sync client's)."""
        template = as_template(template)
        if keep_in_frame:
            template = subject.placed(template)
        window = window or self.window
        try:
            subject_inputs = await self._subject_inputs(subject)

            def start(index: int) -> asyncio.Task:
                return asyncio.ensure_future(self._frame(subject_inputs, subject.resolution, template, index))

            with InOrderWindow(template.num_frames, window, start) as flight:
                for task in flight:
                    frame = await task
                    yield subject.present(frame, composite=crop)
        finally:
            await self._release_shared_memory()

    async def animate(self, photo: PhotoLike, template: Union[str, Template], path: os.PathLike, *,
                      contact_sheet_path: Optional[os.PathLike] = None,
                      progress: Optional[Callable[[int, int], None]] = None, keep_in_frame: bool = True) -> Subject:
        """Photo + template -> H.264 MP4 at ``path`` (written whole or not at all); ``keep_in_frame`` as in :meth:`frames`.

        Encoding and file writes run on one worker thread, in order, so the event
        loop keeps serving; ``progress`` is called on the loop.
        """
        template = as_template(template)
        subject = await self.prepare(photo)
        recording = Recording(path, template, photo=subject.photo, contact_sheet_path=contact_sheet_path,
                              progress=progress)
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bodydance-mp4") as writer:
            await loop.run_in_executor(writer, recording.open)
            try:
                async with contextlib.aclosing(self.frames(subject, template, keep_in_frame=keep_in_frame)) as frames:
                    async for frame in frames:
                        await loop.run_in_executor(writer, recording.write, frame)
                        recording.keep(frame)
            except BaseException:
                # Queued behind any write still running, so the file is never closed under it.
                await asyncio.shield(loop.run_in_executor(writer, recording.close, *sys.exc_info()))
                raise
            await loop.run_in_executor(writer, recording.close)
        return subject
