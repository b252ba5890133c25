"""Tensor ops the stages share (pure tensor ops, export to ONNX, no data-dependent control flow).

Sampling at NDC positions, push-pull hole filling, dilation and label growth, and the
open SMPL-format body (:mod:`bodydance.body`) posed by linear blend skinning and drawn
by the tensor z-buffer of :mod:`bodydance.mesh_raster`. Units are the contract's:
metres in body space, NDC in the image, radians in poses.

Shapes: ``B`` batch, ``V`` vertices, ``N`` resolution, ``P = N * N`` pixels.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from bodydance.body import BodyModel, load_open_body_arrays, mirror_map
from bodydance.mesh_raster import MeshRasterizer, to_pixels
from bodydance_client.contract import MAX_CAMERA_SCALE
from bodydance_client.templates import bundled_templates, load_bundled


def sample_ndc(image: torch.Tensor, grid: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """``grid_sample`` at NDC positions ``[B,H,W,2]`` (align_corners=False, border padding).

    PyTorch's CPU half-precision GridSample kernel returns garbage (seen: errors
    of 6e3 on [0, 1] inputs), so the FP16 check runs this one op in FP32 on CPU.
    Exported graphs are FP32 and never take that branch.
    """
    if torch.float16 in (image.dtype, grid.dtype) and image.device.type == "cpu":
        out = F.grid_sample(image.float(), grid.float(), mode=mode, padding_mode="border", align_corners=False)
        return out.to(image.dtype)
    return F.grid_sample(image, grid, mode=mode, padding_mode="border", align_corners=False)


# MAX_CAMERA_SCALE (contract): the camera scale up to which the frame raster is exact. Full-body photos
# fit near 1, the half-body astronaut at 2.5; a head-and-shoulders portrait (3.6) loses about 0.1 % of
# its pixels, and the client SDK warns when a subject's camera passes it.


def fill_holes(image: torch.Tensor, known: torch.Tensor, levels: int) -> torch.Tensor:
    """Push-pull fill: pixels where ``known`` is 0 take a smooth estimate from known pixels nearby.

    image ``[B,C,N,N]``, known ``[B,1,N,N]`` in {0,1} -> ``[B,C,N,N]``; reaches about
    ``2**levels`` pixels (``N`` divisible by ``2**levels``). Known pixels are
    averaged down a 2x pyramid (push); the estimate is carried back up (pull),
    each level trusting its own average where it had known pixels. Estimates
    carry a weight, so cells with nothing known nearby never blend in as zeros.
    """
    nums, dens = [image * known], [known]
    for _ in range(levels):
        nums.append(F.avg_pool2d(nums[-1], 2))
        dens.append(F.avg_pool2d(dens[-1], 2))
    weight = (dens[-1] > 0).to(image.dtype)
    estimate = nums[-1] / dens[-1].clamp_min(1e-6)
    for num, den in zip(reversed(nums[:-1]), reversed(dens[:-1])):
        coarse = F.interpolate(estimate * weight, scale_factor=2.0, mode="bilinear", align_corners=False)
        coarse_weight = F.interpolate(weight, scale_factor=2.0, mode="bilinear", align_corners=False)
        trust = den.clamp(0.0, 1.0)
        weight = trust + (1.0 - trust) * coarse_weight
        estimate = (trust * (num / den.clamp_min(1e-6)) + (1.0 - trust) * coarse) / weight.clamp_min(1e-6)
    return known * image + (1.0 - known) * estimate


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """``[B,1,N,N]`` {0,1} float grown by ``radius`` pixels (a square, as two 1-D max-pools)."""
    size = 2 * radius + 1
    wide = F.max_pool2d(mask, (1, size), stride=1, padding=(0, radius))
    return F.max_pool2d(wide, (size, 1), stride=1, padding=(radius, 0))


# Headroom over the stretch the bundled dances reach, for poses they do not hold.
STRETCH_HEADROOM = 1.1


@functools.lru_cache(maxsize=1)
def skinning_stretch() -> np.ndarray:
    """``[F]`` longest posed edge / longest rest edge of each open-body triangle, at its worst over
    every frame of the bundled dances, times ``STRETCH_HEADROOM`` (at least 1.05).

    Triangles that span a joint stretch when it bends (up to 2.6x in ``disco``); triangles bound
    to one bone do not. Sizing each raster window by its own triangle's stretch costs no more
    than one flat factor would, and leaves no triangle of those dances outside its window.
    Computed once per process (about a second).
    """
    body = BodyModel.open_body()

    def longest(vertices):
        corners = vertices[..., body.faces, :]
        return (corners - torch.roll(corners, 1, dims=-2)).norm(dim=-1).amax(-1)

    rest = longest(body.v_template)
    worst = torch.ones_like(rest)
    with torch.no_grad():
        for name in bundled_templates():
            for poses in torch.from_numpy(load_bundled(name).poses).split(64):
                vertices, _ = body(torch.zeros(len(poses), 10), poses, torch.zeros(len(poses), 3))
                worst = torch.maximum(worst, (longest(vertices) / rest).amax(0))
    return np.maximum(1.05, STRETCH_HEADROOM * worst.numpy())


@functools.lru_cache(maxsize=1)
def open_body_mirror() -> np.ndarray:
    """``[V]`` each open-body vertex's left-right mirror vertex (computed once per process)."""
    return mirror_map(load_open_body_arrays()["v_template"])


class PosedBodyRaster(torch.nn.Module):
    """The open body posed, projected and drawn.

    forward(betas ``[B,10]``, pose ``[B,24,3]`` rad, translation ``[B,3]`` m, camera ``[B,3]``) ->
    (points ``[B,V,3]`` (col px, row px, Z m), world rotations ``[B,24,3,3]``, :class:`MeshRaster`).
    """

    def __init__(self, resolution: int, max_scale: float = MAX_CAMERA_SCALE):
        super().__init__()
        self.resolution = resolution
        arrays = load_open_body_arrays()
        self.body = BodyModel.open_body()
        self.raster = MeshRasterizer(arrays["faces"], arrays["v_template"], resolution, max_scale, skinning_stretch())
        self.register_buffer("vertex_part", torch.from_numpy(arrays["part_labels"].astype(np.int64)))
        # [D,V]: where a surface point the photo hides looks for a shown point to borrow, in order. Only
        # the left-right mirror image: the far side of a limb (body.opposite_map) was measured and lost
        # (benchmarks/hidden_surface.py).
        self.register_buffer("donor_maps", torch.from_numpy(open_body_mirror().astype(np.int64))[None])

    def forward(self, betas, pose, translation, camera):
        points, rotations = self.project(betas, pose, translation, camera)
        return points, rotations, self.raster(points)

    def project(self, betas, pose, translation, camera):
        """Like forward, without drawing: (points, rotations)."""
        vertices, _, rotations = self.body.posed(betas, pose, translation)
        return to_pixels(vertices, camera, self.resolution), rotations

    def corners(self, raster):
        """``[B,P,3]`` vertex indices of each pixel's face (face 0's where empty)."""
        return self.body.faces[raster.face.clamp_min(0)]

    def nearest_vertex(self, raster, corners):
        """``[B,P]`` the face corner with the largest barycentric weight, as the reference renderer labels."""
        return torch.gather(corners, 2, raster.barycentric.argmax(-1, keepdim=True))[..., 0]

    def parts(self, raster, nearest):
        """Part label ``[B,P]`` int64 (0 = background)."""
        return torch.where(raster.covered, self.vertex_part[nearest], torch.zeros_like(nearest))


def interpolate(per_vertex, corners, barycentric):
    """per_vertex ``[B,V,C]``, corners ``[B,P,3]`` vertex indices, barycentric ``[B,P,3]`` -> ``[B,P,C]``.

    One row Gather on the flattened table and three weighted adds: ONNX Runtime's
    GatherElements with an expanded index and a ReduceSum over 3 cost 9 ms here.
    """
    batch, vertices = per_vertex.shape[:2]
    rows = per_vertex.reshape(batch * vertices, -1)
    index = corners + torch.arange(batch, device=corners.device)[:, None, None] * vertices
    return sum(rows[index[..., k]] * barycentric[..., k:k + 1] for k in range(3))


def grow_labels(labels: torch.Tensor, num_parts: int, steps: int, allowed=None) -> torch.Tensor:
    """Grow non-background labels into background by ``steps`` pixels (3x3 max-pool per step).

    labels ``[B,1,N,N]`` int, allowed ``[B,1,N,N]`` bool or None -> ``[B,1,N,N]`` int64.
    Labelled pixels keep their label; where two parts reach a pixel in the same
    step, the higher label index wins (deterministic).
    """
    labels = labels.to(torch.int64)
    ids = torch.arange(1, num_parts, device=labels.device).reshape(1, -1, 1, 1)
    onehot = (labels == ids).to(torch.float32)  # [B, P-1, N, N]
    room = None if allowed is None else allowed.to(torch.float32)
    for _ in range(steps):
        grown = F.max_pool2d(onehot, 3, stride=1, padding=1)
        empty = 1.0 - onehot.amax(dim=1, keepdim=True)  # only background pixels take a new label
        grown = grown * empty if room is None else grown * empty * room
        onehot = onehot + grown
    weighted = onehot * ids.to(torch.float32)
    best = weighted.max(dim=1, keepdim=True).values
    return best.to(torch.int64)
