"""The real video's side of the real-footage benchmark: the dancer followed through the frames,
and each real frame at the output's size with the dancer's mask and the frame-to-frame flow."""

from __future__ import annotations

import time

import cv2
import numpy as np

import footage_metrics as M

GROW = 0.02  # person mask grown by this share of the frame height


def progress(items, desc: str, total: int = None):
    try:
        from tqdm import tqdm
        return tqdm(items, desc=desc, total=total)
    except ImportError:
        total = total if total is not None else len(items)
        return _printing(items, desc, total)


def _printing(items, desc, total):
    step, start = max(1, total // 10), time.perf_counter()
    for i, item in enumerate(items):
        yield item
        if (i + 1) % step == 0 or i + 1 == total:
            print(f"  {desc}: {i + 1}/{total} ({time.perf_counter() - start:.0f} s)", flush=True)


# --- data -----------------------------------------------------------------------------
def resize(image: np.ndarray, size) -> np.ndarray:
    """To ``size`` = (width, height) with INTER_AREA."""
    return cv2.resize(image, tuple(size), interpolation=cv2.INTER_AREA)


# --- the dancer in the real frames -------------------------------------------------------
def _box(mask: np.ndarray, x0: int = 0, y0: int = 0, min_pixels: int = 100):
    ys, xs = np.nonzero(mask)
    if len(xs) < min_pixels:
        return None
    return (int(xs.min()) + x0, int(ys.min()) + y0, int(xs.max()) + x0 + 1, int(ys.max()) + y0 + 1)


def track_dancer(frames: list, crop_factor: float = 1.5, max_jump: float = 0.5, give_up: int = 5) -> list:
    """Per frame: the dancer's Pose segmentation as (x0, y0, float16 mask of the crop at x0, y0), or None.

    MediaPipe's own tracking mode finds the first person (the man alone on the wall); from
    there, forwards and backwards, Pose (static) runs on a square crop 1.5x his previous box and
    a result counts only if its box centre moved less than half his height. After 5 frames
    without him the rest of the video is left untracked (so nobody else is taken for him).
    """
    import mediapipe as mp

    h, w = frames[0].shape[:2]
    start, box = None, None
    with mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1, enable_segmentation=True) as pose:
        for t, frame in enumerate(frames):
            result = pose.process(frame)
            if result.segmentation_mask is not None:
                box = _box(result.segmentation_mask > 0.5)
                if box:
                    start = t
                    break
    masks = [None] * len(frames)
    if start is None:
        return masks
    with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True) as pose:
        for order in (range(start, len(frames)), range(start - 1, -1, -1)):
            current, missed = box, 0
            for t in progress(order, "tracking the dancer", total=len(order)):
                if missed >= give_up:
                    continue
                x0, y0, x1, y1 = current
                cx, cy, height = (x0 + x1) / 2, (y0 + y1) / 2, y1 - y0
                half = max(height, x1 - x0) * crop_factor / 2
                cx0, cy0 = int(max(0, cx - half)), int(max(0, cy - half))
                cx1, cy1 = int(min(w, cx + half)), int(min(h, cy + half))
                result = pose.process(np.ascontiguousarray(frames[t][cy0:cy1, cx0:cx1]))
                found = None
                if result.segmentation_mask is not None:
                    found = _box(result.segmentation_mask > 0.5, cx0, cy0)
                if found and np.hypot((found[0] + found[2]) / 2 - cx, (found[1] + found[3]) / 2 - cy) < max_jump * height:
                    crop = np.asarray(result.segmentation_mask, np.float16)
                    masks[t], current, missed = (cx0, cy0, crop), found, 0
                else:
                    missed += 1
    return masks


class RealFrames:
    """Real frames, dancer masks and real flow at one output size (cached)."""

    def __init__(self, frames: list, masks: list, size):
        self.frames, self.masks, self.size = frames, masks, tuple(size)
        self._small, self._flow = {}, {}
        self.grow = max(1, round(GROW * size[1]))

    def image(self, t: int) -> np.ndarray:
        if t not in self._small:
            self._small[t] = resize(self.frames[t], self.size)
        return self._small[t]

    def mask(self, t: int):
        """(dancer mask, grown mask) at the output size, or (None, None)."""
        if self.masks[t] is None:
            return None, None
        x0, y0, crop = self.masks[t]
        full = np.zeros(self.frames[t].shape[:2], np.float32)
        full[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
        mask = resize(full, self.size) > 0.5
        return mask, M.grow_mask(mask, self.grow)

    def flow(self, t: int) -> np.ndarray:
        if t not in self._flow:
            self._flow[t] = M.farneback(self.image(t), self.image(t + 1))
        return self._flow[t]


# --- served pipeline ----------------------------------------------------------------------
