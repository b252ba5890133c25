"""Output files: browser-playable H.264 MP4 (PyAV) and a contact sheet PNG.

Files are written under a temporary name and renamed only when complete, so
a failed or interrupted video never sits at the requested path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import av
import numpy as np
from PIL import Image


def _partial_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial{path.suffix}")


class Mp4Writer:
    """H.264 yuv420p with the moov atom up front (plays in browsers while loading).

    Use as a context manager; the file appears at ``path`` only if the block succeeds.
    """

    def __init__(self, path: os.PathLike, fps: float, crf: int = 20):
        self.path = Path(path)
        self.fps = fps
        self.crf = crf
        self._tmp = _partial_path(self.path)
        self._container = None
        self._stream = None
        self.frames_written = 0

    def __enter__(self) -> "Mp4Writer":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self._tmp), mode="w", format="mp4",
                                  options={"movflags": "+faststart"})
        return self

    def write(self, frame: np.ndarray) -> None:
        """frame: uint8 ``[H, W, 3]`` RGB; H and W are cropped to even numbers (yuv420p)."""
        h, w = frame.shape[0] & ~1, frame.shape[1] & ~1
        if self._stream is None:
            from fractions import Fraction

            self._stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            self._stream.width, self._stream.height = w, h
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": str(self.crf), "preset": "veryfast"}
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:h, :w]), format="rgb24")
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.frames_written += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None and self._stream is not None:
                for packet in self._stream.encode():
                    self._container.mux(packet)
            self._container.close()
        finally:
            if exc_type is None and self.frames_written:
                os.replace(self._tmp, self.path)
            else:
                self._tmp.unlink(missing_ok=True)


def read_video(path: os.PathLike):
    """(frames uint8 ``[T, H, W, 3]``, fps, codec name) of a video file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return np.stack(frames), float(stream.average_rate), stream.codec_context.name


def contact_sheet(frames: Sequence[np.ndarray], path: os.PathLike, columns: int = 6,
                  photo: Optional[np.ndarray] = None, tile: int = 192) -> Path:
    """A grid of evenly spaced frames (the photo first, if given) as a PNG."""
    tiles = ([photo] if photo is not None else []) + list(frames)
    thumbs = []
    for image in tiles:
        im = Image.fromarray(image)
        im.thumbnail((tile, tile))
        thumbs.append(im)
    rows = -(-len(thumbs) // columns)
    sheet = Image.new("RGB", (columns * tile, rows * tile), (24, 24, 24))
    for i, im in enumerate(thumbs):
        r, c = divmod(i, columns)
        sheet.paste(im, (c * tile + (tile - im.width) // 2, r * tile + (tile - im.height) // 2))
    path = Path(path)
    tmp = _partial_path(path)
    sheet.save(tmp, format="PNG")
    os.replace(tmp, path)
    return path
