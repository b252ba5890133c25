"""Plausible example inputs for each stage, keyed by contract tensor name.

Random noise would leave the geometry stages looking at an empty image, so
poses are small perturbations of a standing body and the camera frames it.
"""

from __future__ import annotations

import numpy as np

from bodydance_client.contract import NUM_PARTS, StageContract


def sample_tensor(name: str, shape, rng: np.random.Generator) -> np.ndarray:
    batch = shape[0]
    if name in ("source_pose", "target_pose"):
        pose = rng.normal(0.0, 0.25, shape).astype(np.float32)
        pose[:, 16, 2] -= 1.1  # arms lowered from the T-pose
        pose[:, 17, 2] += 1.1
        return pose
    if name == "betas":
        return rng.normal(0.0, 0.5, shape).astype(np.float32)
    if name == "camera":
        cam = np.tile(np.asarray([0.9, 0.0, 0.05], np.float32), (batch, 1))
        return cam + rng.normal(0.0, 0.02, shape).astype(np.float32)
    if name == "target_translation":
        return rng.normal(0.0, 0.05, shape).astype(np.float32)
    if name in ("source_parsing", "target_parts", "target_parsing"):
        return rng.integers(0, NUM_PARTS, shape).astype(np.int32)
    if name in ("person_mask", "source_visibility"):
        return (rng.random(shape) > 0.5).astype(np.float32)
    if name == "source_depth":  # a body's front surface in the middle, empty (-1000 m) elsewhere
        depth = rng.uniform(-0.15, 0.25, shape).astype(np.float32)
        depth[..., : shape[-2] // 6, :] = -1000.0
        return depth
    if name == "correspondence_flow":
        return rng.uniform(-1.1, 1.1, shape).astype(np.float32)
    if name in ("source_image", "background", "plate_fill"):
        # Photos are smooth at the pixel scale; white noise would turn sub-pixel
        # resampling differences into full-range errors.
        h, w = shape[-2:]
        y, x = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
        freq = rng.uniform(2, 12, shape[:2] + (1, 1, 2))
        phase = rng.uniform(0, 6.3, shape[:2] + (1, 1))
        image = 0.5 + 0.4 * np.sin(freq[..., 0] * x + freq[..., 1] * y + phase)
        return image.astype(np.float32)
    if name == "photo":
        return rng.integers(0, 256, shape).astype(np.uint8)
    return rng.random(shape).astype(np.float32)


def as_contract_dtype(spec, value: np.ndarray) -> np.ndarray:
    """A sample in the contract's dtype: images in [0, 1] become uint8 levels, labels and depth narrow."""
    if np.dtype(spec.dtype) == np.uint8 and value.dtype.kind == "f":
        return np.clip(np.rint(value * 255.0), 0, 255).astype(np.uint8)
    return value.astype(spec.dtype)


def sample_inputs(contract: StageContract, resolution: int, batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return {
        spec.name: as_contract_dtype(spec, sample_tensor(spec.name, (batch,) + spec.concrete_shape(resolution), rng))
        for spec in contract.inputs
    }
