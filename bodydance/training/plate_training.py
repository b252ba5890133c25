"""Training the plate inpainter: package photos with person-shaped holes, filled as the reconstruction fills them.

A sample is an ``N x N`` crop of a photo that ships in scikit-image (the scenes' background photos,
or a smooth gradient with blobs: :func:`bodydance.training.scenes.background_image`), a hole shaped
like a person as MediaPipe's mask takes them out (head, hair, torso, four limbs at random angles,
sometimes a skirt or a held object, any size and place, grown as
:func:`~bodydance.stages.reconstruction.plate.person_hole` grows it), and that hole filled by the
production Telea fill (:func:`~bodydance.stages.reconstruction.plate.inpaint`); the truth is the
crop itself. Frames of the Sports2D video, the real-footage benchmark's truth, are never used.

Losses (on the hole, grown by 2 px): L1, squared error, ``1 - SSIM`` and image gradients, as the
style refiner's (:func:`bodydance.training.refiner_training.losses`). Checkpoints, resuming and
the log are :mod:`bodydance.training.loop`'s.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from bodydance.stages.plate_inpainter import PlateInpainter
from bodydance.stages.reconstruction.plate import inpaint, person_hole
from bodydance.training.loop import train_resumably
from bodydance.training.refiner_training import losses
from bodydance.training.scenes import background_image


@dataclasses.dataclass
class PlateSettings:
    steps: int = 2000
    batch: int = 8
    samples: int = 1200  # distinct (photo crop, hole) samples drawn from seed
    resolution: int = 256
    learning_rate: float = 1e-3
    seed: int = 0
    checkpoint_every: int = 50


def _limb(canvas: np.ndarray, start, rng: np.random.Generator, length: float, width: float, angle: float):
    """Two segments from ``start`` (px): a limb bent at a random angle; returns its end."""
    points = [np.asarray(start, np.float64)]
    for bend in (0.0, rng.normal(0.0, 0.6)):
        angle = angle + bend
        points.append(points[-1] + length / 2 * np.array([np.sin(angle), np.cos(angle)]))
    cv2.polylines(canvas, [np.round(np.array(points)).astype(np.int32)], False, 1, max(1, int(width)))
    return points[-1]


def person_shaped_mask(rng: np.random.Generator, n: int) -> np.ndarray:
    """``[n, n]`` float32 in {0, 1}: a standing figure of random size, place and limb angles (in px, y down)."""
    canvas = np.zeros((n, n), np.uint8)
    height = rng.uniform(0.35, 1.0) * n
    cx, top = rng.uniform(0.15, 0.85) * n, rng.uniform(-0.1, 0.9) * n - 0.3 * height
    head_r, shoulder_w, hip_w = 0.065 * height, 0.13 * height, 0.09 * height
    neck = np.array([cx, top + 2.2 * head_r])
    hips = neck + np.array([rng.normal(0, 0.03) * height, 0.32 * height])
    cv2.circle(canvas, tuple(int(v) for v in (cx, top + head_r)), int(head_r * rng.uniform(1.0, 1.4)), 1, -1)  # head, hair
    torso = np.array([neck + [-shoulder_w, 0], neck + [shoulder_w, 0], hips + [hip_w, 0], hips + [-hip_w, 0]])
    cv2.fillPoly(canvas, [np.round(torso).astype(np.int32)], 1)
    for side in (-1, 1):
        _limb(canvas, neck + [side * shoulder_w * 0.9, 0.02 * height], rng, 0.42 * height, 0.05 * height,
              side * rng.uniform(0.1, 2.8))
        _limb(canvas, hips + [side * hip_w * 0.6, 0], rng, 0.5 * height, 0.075 * height, side * rng.uniform(0.0, 0.5))
    if rng.random() < 0.25:  # a skirt or long coat
        flare = rng.uniform(1.2, 2.2) * hip_w
        skirt = np.array([hips + [-hip_w, 0], hips + [hip_w, 0], hips + [flare, 0.25 * height], hips + [-flare, 0.25 * height]])
        cv2.fillPoly(canvas, [np.round(skirt).astype(np.int32)], 1)
    if rng.random() < 0.2:  # something held against the body (a helmet, a bag)
        centre = neck + [rng.uniform(-1.5, 1.5) * shoulder_w, rng.uniform(0.1, 0.4) * height]
        cv2.circle(canvas, tuple(int(v) for v in centre), int(rng.uniform(0.05, 0.12) * height), 1, -1)
    return canvas.astype(np.float32)


def make_samples(settings: PlateSettings) -> Dict[str, np.ndarray]:
    """``{"filled", "truth": [S, 3, N, N] uint8, "hole": [S, 1, N, N] uint8}``, the same for the same seed."""
    n, count = settings.resolution, settings.samples
    out = {"filled": np.empty((count, 3, n, n), np.uint8), "truth": np.empty((count, 3, n, n), np.uint8),
           "hole": np.empty((count, 1, n, n), np.uint8)}
    for i in range(count):
        rng = np.random.default_rng([settings.seed, 7919, i])
        photo = background_image(rng, n)
        # The mask's soft fringe: MediaPipe's probability falls off over a few pixels past the figure.
        mask = cv2.GaussianBlur(person_shaped_mask(rng, n), (0, 0), rng.uniform(0.5, 2.0))
        hole = person_hole(mask)
        out["filled"][i] = inpaint(photo, hole).transpose(2, 0, 1)
        out["truth"][i] = photo.transpose(2, 0, 1)
        out["hole"][i, 0] = hole
    return out


def sample_batch(samples: Dict[str, np.ndarray], settings: PlateSettings, step: int):
    """Step ``step``'s batch as float tensors (filled, hole, truth), flipped at random."""
    rng = np.random.default_rng([settings.seed, step])
    picks = rng.integers(0, len(samples["hole"]), settings.batch)
    flips = rng.random(settings.batch) < 0.5
    as_float = lambda a: torch.from_numpy(np.ascontiguousarray(  # noqa: E731
        np.where(flips[:, None, None, None], a[picks][..., ::-1], a[picks]))).float()
    return as_float(samples["filled"]) / 255.0, as_float(samples["hole"]), as_float(samples["truth"]) / 255.0


def train(samples: Dict[str, np.ndarray], run: Path, settings: PlateSettings, device: str = "cpu",
          progress=None) -> PlateInpainter:
    """Train (or resume) in ``run``; returns the inpainter at ``settings.steps``."""

    def step_losses(model, step):
        filled, hole, truth = (t.to(device) for t in sample_batch(samples, settings, step))
        region = F.max_pool2d(hole, 5, 1, 2)
        return losses(model(filled, hole), truth, region, torch.zeros_like(region))

    return train_resumably(PlateInpainter, run, settings, step_losses, device, progress)
