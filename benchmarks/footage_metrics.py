"""Pure metric functions of the real-footage benchmark (numpy, OpenCV, scikit-image; no models).

* :func:`psnr` / :func:`ssim`: on the whole frame or averaged over a boolean mask.
* :func:`grow_mask`, :func:`mask_height`: the person region and its size.
* :func:`procrustes_rms` / :func:`face_shape_error`: 2D landmarks similarity-aligned
  (rotation, uniform scale, translation; no reflection) onto reference landmarks,
  RMS residual in the reference's units, optionally divided by the reference's
  inter-ocular distance.
* :func:`farneback` / :func:`tof`: TecoGAN's tOF, the mean absolute difference between the
  optical flow of consecutive output frames and that of consecutive real frames.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np
from skimage.metrics import structural_similarity

DATA_RANGE = 255.0
LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 33, 263  # MediaPipe Face Mesh indices of the outer eye corners


def _pixels(mask: Optional[np.ndarray], shape) -> np.ndarray:
    if mask is None:
        return np.ones(shape[:2], bool)
    mask = np.asarray(mask, bool)
    if mask.shape != tuple(shape[:2]):
        raise ValueError(f"mask {mask.shape} does not match image {shape[:2]}")
    return mask


def psnr(a: np.ndarray, b: np.ndarray, mask: Optional[np.ndarray] = None, data_range: float = DATA_RANGE) -> float:
    """PSNR in dB over the pixels of ``mask`` (all channels), or the whole image; inf when equal there."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    where = _pixels(mask, a.shape)
    if not where.any():
        return float("nan")
    mse = float(np.mean((a[where] - b[where]) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(data_range ** 2 / mse))


def ssim(a: np.ndarray, b: np.ndarray, mask: Optional[np.ndarray] = None, data_range: float = DATA_RANGE) -> float:
    """SSIM (scikit-image, 7x7 window, colour channels averaged); over ``mask``: the SSIM map's mean there."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    channel_axis = -1 if a.ndim == 3 else None
    score, full = structural_similarity(a, b, data_range=data_range, channel_axis=channel_axis, full=True)
    if mask is None:
        return float(score)
    where = _pixels(mask, a.shape)
    if not where.any():
        return float("nan")
    if full.ndim == 3:
        full = full.mean(axis=-1)
    return float(full[where].mean())


def grow_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Dilate a boolean mask by a disc of radius ``pixels``."""
    mask = np.asarray(mask, bool)
    if pixels <= 0:
        return mask.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def mask_height(mask: np.ndarray) -> int:
    """Rows from the mask's top pixel to its bottom one (0 when empty)."""
    rows = np.nonzero(np.asarray(mask, bool).any(axis=1))[0]
    return int(rows[-1] - rows[0] + 1) if len(rows) else 0


def similarity_align(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``points`` [K, 2] moved by the similarity (rotation, uniform scale, translation) closest to ``reference``.

    Least squares (Umeyama's closed form), reflections excluded.
    """
    p, q = np.asarray(points, np.float64), np.asarray(reference, np.float64)
    if p.shape != q.shape or p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"need two [K, 2] point sets, got {p.shape} and {q.shape}")
    mp_, mq = p.mean(0), q.mean(0)
    pc, qc = p - mp_, q - mq
    var_p = float((pc ** 2).sum())
    if var_p == 0:
        return np.broadcast_to(mq, p.shape).copy()
    u, sig, vt = np.linalg.svd(qc.T @ pc)
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ d @ vt
    scale = float(np.trace(np.diag(sig) @ d)) / var_p
    return scale * pc @ rotation.T + mq


def procrustes_rms(points: np.ndarray, reference: np.ndarray) -> float:
    """RMS distance, in the reference's units, between similarity-aligned ``points`` and ``reference``."""
    aligned = similarity_align(points, reference)
    return float(np.sqrt(np.mean(np.sum((aligned - np.asarray(reference, np.float64)) ** 2, axis=1))))


def face_shape_error(points: np.ndarray, reference: np.ndarray, eyes=(LEFT_EYE_OUTER, RIGHT_EYE_OUTER)) -> float:
    """:func:`procrustes_rms` divided by the reference's distance between landmarks ``eyes``."""
    reference = np.asarray(reference, np.float64)
    interocular = float(np.linalg.norm(reference[eyes[0]] - reference[eyes[1]]))
    if interocular == 0:
        raise ValueError("the reference's eye corners coincide")
    return procrustes_rms(points, reference) / interocular


def _grey(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image, np.uint8), cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(image, np.uint8)


def farneback(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Dense flow [H, W, 2] px from ``previous`` to ``current`` (RGB or grey uint8), OpenCV's usual settings."""
    return cv2.calcOpticalFlowFarneback(_grey(previous), _grey(current), None, 0.5, 3, 15, 3, 5, 1.2, 0)


def tof(output_flow: np.ndarray, real_flow: np.ndarray, mask: Optional[np.ndarray] = None) -> float:
    """Mean over pixels (of ``mask``, or all) and both flow components of |output flow - real flow|, px."""
    diff = np.abs(np.asarray(output_flow, np.float64) - np.asarray(real_flow, np.float64))
    where = _pixels(mask, diff.shape)
    return float(diff[where].mean()) if where.any() else float("nan")


def summary(values) -> dict:
    """Median, 90th percentile, mean and count of the finite values (NaN fields when there are none)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    if not len(v):
        return {"median": float("nan"), "p90": float("nan"), "mean": float("nan"), "n": 0}
    return {"median": float(np.median(v)), "p90": float(np.percentile(v, 90)), "mean": float(v.mean()), "n": int(len(v))}


def fmt(value, digits=2) -> str:
    """A figure for a results table; "-" when there is none."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"
