"""Per-frame body geometry as pure tensor ops (exports to ONNX, no data-dependent control flow).

The body surface is, for now, the capsule stand-in of :mod:`bodydance.skeleton`
(a baseline until the open SMPL-format mesh lands); everything here speaks
the contract's units: metres in body space, NDC in the image, radians in poses.

Shapes: ``B`` batch, ``C`` capsules, ``N`` resolution, ``P = N * N`` pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from bodydance.body import axis_angle_to_matrix
from bodydance.skeleton import CAPSULES, HEAD_TOP_OFFSET, JOINT_SHAPEDIRS, PARENTS, REST_JOINTS

BACKGROUND_DEPTH = -1.0e3  # metres; anything on the body is in front of this


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


class PosedSkeleton(torch.nn.Module):
    """(betas ``[B,10]``, pose ``[B,24,3]`` rad, translation ``[B,3]`` m) -> joints ``[B,24,3]`` m, rotations ``[B,24,3,3]``."""

    def __init__(self):
        super().__init__()
        self.register_buffer("rest_joints", torch.from_numpy(REST_JOINTS.copy()))
        self.register_buffer("joint_shapedirs", torch.from_numpy(JOINT_SHAPEDIRS.copy()))
        self.parents = PARENTS.tolist()

    def forward(self, betas, pose, translation):
        rest = self.rest_joints + torch.einsum("jcs,bs->bjc", self.joint_shapedirs, betas)  # [B, 24, 3]
        local = axis_angle_to_matrix(pose)  # [B, 24, 3, 3]
        rotations, joints = [], []
        for j, parent in enumerate(self.parents):
            if parent < 0:
                rotations.append(local[:, j])
                joints.append(rest[:, j] + translation)
            else:
                offset = rest[:, j] - rest[:, parent]
                rotations.append(rotations[parent] @ local[:, j])
                joints.append(joints[parent] + (rotations[parent] @ offset[..., None])[..., 0])
        return torch.stack(joints, 1), torch.stack(rotations, 1)


def _capsule_tables():
    start = np.asarray([c[0] for c in CAPSULES])
    end = np.asarray([c[1] for c in CAPSULES])
    # The joint whose frame carries the segment: the start joint when the end is its child.
    frame = np.asarray([a if (b < 0 or PARENTS[b] == a) else PARENTS[a] for a, b, *_ in CAPSULES])
    radius = np.asarray([(c[2], c[3]) for c in CAPSULES], dtype=np.float32)  # [C, 2] at start, end
    label = np.asarray([c[4] for c in CAPSULES])
    return start, end, frame, radius, label


class CapsuleRasterizer(torch.nn.Module):
    """Orthographic capsule z-buffer in NDC.

    forward(joints ``[B,24,3]`` m, rotations ``[B,24,3,3]``, camera ``[B,3]``, inflate=(1.0,)) ->
    one ``(depth, capsule, surface, covered)`` per inflation factor:
      * ``depth`` ``[B,P]`` m (front surface Z, BACKGROUND_DEPTH where empty),
      * ``capsule`` ``[B,P]`` int64 index of the front capsule,
      * ``surface`` ``[B,P,3]`` m body-space point seen at each pixel,
      * ``covered`` ``[B,P]`` bool.
    An inflation grows every radius (coverage: flow exists beyond the stand-in's
    outline, where hair and clothes usually are). The pixel-to-bone distances are
    computed once for all inflations.
    """

    def __init__(self, resolution: int):
        super().__init__()
        start, end, frame, radius, label = _capsule_tables()
        self.register_buffer("start", torch.from_numpy(start))
        self.register_buffer("end", torch.from_numpy(np.where(end < 0, 0, end)))
        self.register_buffer("end_is_head_top", torch.from_numpy(end < 0))
        self.register_buffer("frame", torch.from_numpy(frame))
        self.register_buffer("radius", torch.from_numpy(radius))
        self.register_buffer("label", torch.from_numpy(label.astype(np.int64)))
        self.register_buffer("head_top", torch.from_numpy(HEAD_TOP_OFFSET.copy()))
        centres = (torch.arange(resolution, dtype=torch.float32) * 2 + 1) / resolution - 1
        yy, xx = torch.meshgrid(centres, centres, indexing="ij")
        self.register_buffer("pixels", torch.stack([xx.reshape(-1), yy.reshape(-1)], -1))  # [P, 2] NDC

    def segment_endpoints(self, joints, rotations):
        """-> capsule start and end points ``[B,C,3]`` m."""
        a = joints[:, self.start]
        head_top = joints[:, self.end] + (rotations[:, self.end] @ self.head_top)
        b = torch.where(self.end_is_head_top[None, :, None], head_top, joints[:, self.end])
        return a, b

    def forward(self, joints, rotations, camera, inflate=(1.0,)):
        a, b = self.segment_endpoints(joints, rotations)
        s, tx, ty = camera[:, 0:1], camera[:, 1:2], camera[:, 2:3]
        # pixel -> body-space X, Y (metres) under the weak-perspective camera
        px = (self.pixels[None, :, 0] - tx) / s  # [B, P]
        py = -(self.pixels[None, :, 1] - ty) / s
        ab = b - a  # [B, C, 3]
        ab_len2 = (ab[..., :2] ** 2).sum(-1).clamp_min(1e-8)  # [B, C]
        dx = px[:, None, :] - a[..., 0:1]  # [B, C, P]
        dy = py[:, None, :] - a[..., 1:2]
        t = ((dx * ab[..., 0:1] + dy * ab[..., 1:2]) / ab_len2[..., None]).clamp(0.0, 1.0)
        ex = dx - t * ab[..., 0:1]
        ey = dy - t * ab[..., 1:2]
        dist2 = ex * ex + ey * ey
        radius = self.radius[None, :, 0:1] + t * (self.radius[None, :, 1:2] - self.radius[None, :, 0:1])
        axis_z = a[..., 2:3] + t * ab[..., 2:3]
        return [self._front(px, py, dist2, axis_z, radius * factor) for factor in inflate]

    @staticmethod
    def _front(px, py, dist2, axis_z, radius):
        r2 = radius * radius  # tapered: radius interpolated along the bone
        inside = dist2 < r2
        z = axis_z + torch.sqrt((r2 - dist2).clamp_min(0.0))
        z = torch.where(inside, z, torch.full_like(z, BACKGROUND_DEPTH))
        depth, capsule = z.max(dim=1)  # [B, P]
        covered = depth > BACKGROUND_DEPTH * 0.5
        surface = torch.stack([px, py, depth], -1)
        return depth, capsule, surface, covered

    def labels(self, capsule, covered):
        """Part label ``[B,P]`` int64 (0 = background)."""
        return torch.where(covered, self.label[capsule], torch.zeros_like(capsule))


class CorrespondenceGeometry(torch.nn.Module):
    """Stage 1, frame side: target pose -> correspondence flow, source visibility, target parts.

    forward(betas ``[B,10]``, source_pose ``[B,24,3]`` rad, camera ``[B,3]``,
    source_depth ``[B,1,N,N]`` m, target_pose ``[B,24,3]`` rad, target_translation ``[B,3]`` m) ->
    flow ``[B,2,N,N]`` NDC, visibility ``[B,1,N,N]`` {0,1}, parts ``[B,1,N,N]`` int32.

    ``source_depth`` is rendered once per photo (:meth:`source_depth`, in the
    source parser), not once per frame.
    """

    # A target point counts as seen in the photo when its source depth is within
    # this many metres of the photo's front surface at that pixel.
    VISIBILITY_TOLERANCE_M = 0.03
    # Flow and visibility cover capsules grown by this factor; part labels use the true radii.
    COVERAGE_INFLATE = 1.6

    def __init__(self, resolution: int):
        super().__init__()
        self.resolution = resolution
        self.skeleton = PosedSkeleton()
        self.capsules = CapsuleRasterizer(resolution)

    def source_depth(self, betas, source_pose, camera):
        """The photo's front-surface depth ``[B,1,N,N]`` m, as the visibility test reads it.

        Drawn with the true radii, not the inflated coverage: an inflated torso would stand in front
        of an arm hanging beside it and hide the arm's own pixels from every later frame.
        """
        joints, rotations = self.skeleton(betas, source_pose, torch.zeros_like(betas[:, :3]))
        (depth, _, _, _), = self.capsules(joints, rotations, camera)
        return depth.reshape(betas.shape[0], 1, self.resolution, self.resolution)

    def forward(self, betas, source_pose, camera, source_depth, target_pose, target_translation):
        batch, n = betas.shape[0], self.resolution
        zero = torch.zeros_like(target_translation)
        src_joints, src_rot = self.skeleton(betas, source_pose, zero)
        tgt_joints, tgt_rot = self.skeleton(betas, target_pose, target_translation)

        (_, outline_capsule, _, outline_covered), (_, tgt_capsule, tgt_surface, tgt_covered) = self.capsules(
            tgt_joints, tgt_rot, camera, inflate=(1.0, self.COVERAGE_INFLATE))
        parts = self.capsules.labels(outline_capsule, outline_covered)

        # Carry each target surface point into the source pose through its bone's rigid motion
        # x_s = R_s R_t^T (x_t - j_t) + j_s, built once per capsule ([B,C,12]) and gathered per pixel:
        # 3x3 matmuls per pixel cost 7 of this stage's 24 ms in ONNX Runtime.
        frame = self.capsules.frame  # [C]
        rot = src_rot[:, frame] @ tgt_rot[:, frame].transpose(-1, -2)  # [B, C, 3, 3]
        shift = src_joints[:, frame] - (rot @ tgt_joints[:, frame][..., None])[..., 0]  # [B, C, 3]
        motion = torch.cat([rot.flatten(2), shift], dim=-1)  # [B, C, 12]
        per_pixel = torch.gather(motion, 1, tgt_capsule[..., None].expand(-1, -1, 12))  # [B, P, 12]
        x, y, z = tgt_surface[..., 0], tgt_surface[..., 1], tgt_surface[..., 2]
        src_points = torch.stack([
            per_pixel[..., 3 * k] * x + per_pixel[..., 3 * k + 1] * y + per_pixel[..., 3 * k + 2] * z + per_pixel[..., 9 + k]
            for k in range(3)], dim=-1)  # [B, P, 3]

        s, tx, ty = camera[:, 0:1], camera[:, 1:2], camera[:, 2:3]
        flow_x = s * src_points[..., 0] + tx
        flow_y = -s * src_points[..., 1] + ty
        flow = torch.stack([flow_x, flow_y], 1)  # [B, 2, P]
        flow = torch.where(tgt_covered[:, None, :], flow, torch.full_like(flow, -2.0))

        # Visibility: is the carried point the front surface of the photo's render?
        grid = flow.reshape(batch, 2, n, n).permute(0, 2, 3, 1)
        front = sample_ndc(source_depth, grid, mode="nearest")
        front = front.reshape(batch, -1)
        in_view = (flow_x.abs() <= 1.0) & (flow_y.abs() <= 1.0)
        visible = tgt_covered & in_view & (src_points[..., 2] >= front - self.VISIBILITY_TOLERANCE_M)

        return (
            flow.reshape(batch, 2, n, n),
            visible.to(torch.float32).reshape(batch, 1, n, n),
            parts.to(torch.int32).reshape(batch, 1, n, n),
        )


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
