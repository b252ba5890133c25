"""Stage 1 frame side (``body_geometry``): the target pose drawn, and where each pixel comes from.

Pure tensor ops (exports to ONNX, no data-dependent control flow). The open SMPL-format
body is posed by linear blend skinning and drawn by the tensor z-buffer of
:mod:`bodydance.mesh_raster` (through :class:`bodydance.geometry.PosedBodyRaster`).
Shapes: ``B`` batch, ``V`` vertices, ``N`` resolution, ``P = N * N`` pixels.
"""

from __future__ import annotations

import numpy as np
import torch

from bodydance.geometry import PosedBodyRaster, dilate, fill_holes, interpolate, sample_ndc
from bodydance_client.contract import EMPTY_DEPTH_M, MAX_CAMERA_SCALE, PART_NAMES

HEAD = PART_NAMES.index("head")


class BodyGeometry(torch.nn.Module):
    """Stage 1, frame side: target pose -> correspondence flow, source visibility, target parts.

    forward(betas ``[B,10]``, source_pose ``[B,24,3]`` rad, camera ``[B,3]``,
    source_depth ``[B,1,N,N]`` m (float16 on the wire), source_parsing ``[B,1,N,N]`` uint8 (0 off the person),
    target_pose ``[B,24,3]`` rad, target_translation ``[B,3]`` m) ->
    flow ``[B,2,N,N]`` NDC (-2 where no source), visibility ``[B,1,N,N]`` {0,1}, parts ``[B,1,N,N]`` int32.

    On the body, each target pixel's surface point (face and barycentric weights)
    is found again on the body in the photo's pose; where the photo hides it but
    shows its left-right mirror image, the flow points there instead (visibility
    then means "has a source pixel to copy"; :attr:`PosedBodyRaster.donor_maps`). A point counts as
    shown only where it also lands on the photo's person (``source_parsing`` > 0): where the fitted
    arm lies over something else in the photo (the astronaut's over her helmet), the mirror arm lends
    its pixels instead of the frame falling back to the part's flat colour. Hair and clothes reach past the
    bare body: within ``margin`` pixels of it, the flow continues the nearest
    body pixels' skinned in-plane motion, and beyond :attr:`CARRY_NEAR_PX` it copies
    only what lay past the fitted body in the photo. ``source_depth`` is rendered once per
    photo (:meth:`source_depth`, in the source parser), not once per frame.
    """

    # A target point counts as seen in the photo when its source depth is within
    # this many metres of the photo's front surface at that pixel.
    VISIBILITY_TOLERANCE_M = 0.03
    # Borrowed points come from at least this many pixels inside the fitted body's outline in the photo
    # (held-out synthetic pairs: +0.05 dB on the person over none, benchmarks/hidden_surface.py).
    LEND_INSIDE_PX = 3
    # Head pixels the photo must show before the head's flow is replaced by one similarity map.
    MIN_HEAD_PIXELS = 24
    # Only a point whose pixel is the photo's person counts as shown (benchmarks/hidden_surface.py --study person).
    SHOWN_ONLY_ON_PERSON = True
    # What a pixel past the target body (hair, loose clothes) may carry from the photo: "anything";
    # "past the body" (nothing of the fitted body's surface); "near the body" (that, but anything
    # within CARRY_NEAR_PX px of the target body); benchmarks/hidden_surface.py --study carry.
    CARRY_PAST_THE_BODY = "near the body"
    CARRY_NEAR_PX = 3

    def __init__(self, resolution: int, max_scale: float = MAX_CAMERA_SCALE):
        super().__init__()
        self.resolution = resolution
        self.surface = PosedBodyRaster(resolution, max_scale)
        self.margin = max(2, resolution // 24)
        self.fill_levels = int(np.ceil(np.log2(self.margin))) + 1
        centres = (torch.arange(resolution, dtype=torch.float32) * 2 + 1) / resolution - 1
        yy, xx = torch.meshgrid(centres, centres, indexing="ij")
        self.register_buffer("pixels", torch.stack([xx.reshape(-1), yy.reshape(-1)], -1))  # [P, 2] NDC

    def source_depth(self, betas, source_pose, camera):
        """The photo's front-surface depth ``[B,1,N,N]`` m, as the visibility test reads it."""
        _, _, raster = self.surface(betas, source_pose, torch.zeros_like(betas[:, :3]), camera)
        return raster.depth.reshape(betas.shape[0], 1, self.resolution, self.resolution)

    def _to_ndc(self, px):
        return (px + 0.5) * (2.0 / self.resolution) - 1.0

    def _sample_at(self, plane, x, y):
        """``[B,P]`` the nearest pixel of ``plane`` ``[B,1,N,N]`` at NDC (x, y) ``[B,P]``."""
        grid = torch.stack([x, y], -1).reshape(x.shape[0], self.resolution, self.resolution, 2)
        return sample_ndc(plane, grid, mode="nearest").reshape(x.shape[0], -1)

    def _in_front(self, source_depth, x, y, z):
        """``[B,P]`` whether the source points at NDC (x, y) with depth z m are the photo's front surface."""
        return z >= self._sample_at(source_depth, x, y) - self.VISIBILITY_TOLERANCE_M

    def _head_in_one_piece(self, flow_x, flow_y, head, head_seen, other_body):
        """Over the head and the hair around it, the one similarity map (rotation, uniform scale,
        shift) that best fits the mesh's flow on the head pixels the photo shows (weighted least
        squares, closed form, per item).

        The skinning blends the jaw with the neck, so the mesh alone lets the mouth and chin slide
        against the eyes when head and neck turn apart; a face must move as one piece. A similarity
        rather than an affine map, because a fitted shear skews a face into one no detector knows.
        The map covers the head's hidden side too: a mirror image of the seen half there would make
        a turned face a symmetric fake front. Where the photo shows too little of the head (seen
        from behind), the mesh's flow stays. flow ``[B,P]`` NDC; masks ``[B,P]`` bool.
        """
        batch, n = flow_x.shape[0], self.resolution
        px, py = self.pixels[None, :, 0], self.pixels[None, :, 1]
        w = head_seen.to(flow_x.dtype)
        count = w.sum(-1, keepdim=True)
        safe = count.clamp_min(1.0)

        def mean(values):
            return (w * values).sum(-1, keepdim=True) / safe

        dx, dy = px - mean(px), py - mean(py)
        qx, qy = mean(flow_x), mean(flow_y)
        ex, ey = flow_x - qx, flow_y - qy
        pixel2 = 1e-3 * (2.0 / n) ** 2  # a thousandth of a pixel squared in NDC: only guards a degenerate fit
        spread = mean(dx * dx + dy * dy) + pixel2
        cos_scale = mean(dx * ex + dy * ey) / spread
        sin_scale = mean(dx * ey - dy * ex) / spread
        fit_x = qx + cos_scale * dx - sin_scale * dy
        fit_y = qy + sin_scale * dx + cos_scale * dy
        around = dilate(head.to(flow_x.dtype).reshape(batch, 1, n, n), self.margin).reshape(batch, -1) > 0.5
        use = around & ~other_body & (count >= self.MIN_HEAD_PIXELS)
        return torch.where(use, fit_x, flow_x), torch.where(use, fit_y, flow_y), use

    def forward(self, betas, source_pose, camera, source_depth, source_parsing, target_pose, target_translation):
        batch, n = betas.shape[0], self.resolution
        source_depth = source_depth.to(betas.dtype)
        if self.SHOWN_ONLY_ON_PERSON:
            person = (source_parsing > 0).to(betas.dtype)
        else:
            person = torch.ones_like(source_depth)
        src_points, src_rot = self.surface.project(betas, source_pose, torch.zeros_like(target_translation), camera)
        _, tgt_rot, raster = self.surface(betas, target_pose, target_translation, camera)
        corners = self.surface.corners(raster)  # [B, P, 3]
        nearest = self.surface.nearest_vertex(raster, corners)
        parts = self.surface.parts(raster, nearest)
        covered = raster.covered

        # Beyond the body: x_src = c + A x_tgt in NDC, A the in-plane part of the skinned motion
        # R_s R_t^T (the image's y axis points down, hence the sign flips), c from the body pixel;
        # (c, A, seen) spread outward by push-pull, so the map is continued rather than the flow smeared.
        # A is blended per vertex by the skinning weights, so it varies smoothly across faces.
        motion = src_rot @ tgt_rot.transpose(-1, -2)  # [B, 24, 3, 3]
        in_plane = torch.stack([motion[..., 0, 0], -motion[..., 0, 1], -motion[..., 1, 0], motion[..., 1, 1]], -1)
        per_vertex = torch.cat([src_points, self.surface.body.weights @ in_plane], -1)  # [B, V, 7]
        carried = interpolate(per_vertex, corners, raster.barycentric)  # [B, P, 7]
        src, a = carried[..., :3], carried[..., 3:]
        body_x, body_y = self._to_ndc(src[..., 0]), self._to_ndc(src[..., 1])
        seen = covered & self._in_front(source_depth, body_x, body_y, src[..., 2]) & (self._sample_at(person, body_x, body_y) > 0.5)

        px, py = self.pixels[None, :, 0], self.pixels[None, :, 1]
        c_x = body_x - (a[..., 0] * px + a[..., 1] * py)
        c_y = body_y - (a[..., 2] * px + a[..., 3] * py)
        fields = torch.stack([c_x, c_y, a[..., 0], a[..., 1], a[..., 2], a[..., 3], seen.to(c_x.dtype)], 1)
        known = covered.to(c_x.dtype).reshape(batch, 1, n, n)
        spread = fill_holes(fields.reshape(batch, 7, n, n), known, self.fill_levels).reshape(batch, 7, -1)
        near = dilate(known, self.margin).reshape(batch, -1) > 0.5  # [B, P]
        flow_x = spread[:, 0] + spread[:, 2] * px + spread[:, 3] * py
        flow_y = spread[:, 1] + spread[:, 4] * px + spread[:, 5] * py
        # Surface the photo hides may show its mirror image (the other arm, the other side of the
        # face): left and right of a person mostly look alike, so it borrows that point's pixels.
        # A point is lent only from well inside the fitted body's outline in the photo: near the
        # outline the fit and the person part ways, and a borrowed pixel there is often background.
        direct = seen
        empty = (source_depth < EMPTY_DEPTH_M / 2).to(source_depth.dtype)
        lender = 1.0 - dilate(empty, self.LEND_INSIDE_PX) if self.LEND_INSIDE_PX > 0 else torch.ones_like(empty)
        lender = lender * person  # and only from pixels of the photo's person
        for donor in self.surface.donor_maps:
            lent = interpolate(src_points, donor[corners], raster.barycentric)  # [B, P, 3]
            lent_x, lent_y = self._to_ndc(lent[..., 0]), self._to_ndc(lent[..., 1])
            borrow = (covered & ~seen & self._in_front(source_depth, lent_x, lent_y, lent[..., 2])
                      & (self._sample_at(lender, lent_x, lent_y) > 0.5))
            body_x = torch.where(borrow, lent_x, body_x)
            body_y = torch.where(borrow, lent_y, body_y)
            seen = seen | borrow
        flow_x = torch.where(covered, body_x, flow_x)
        flow_y = torch.where(covered, body_y, flow_y)
        head = covered & (parts == HEAD)
        flow_x, flow_y, one_piece = self._head_in_one_piece(flow_x, flow_y, head, head & direct, covered & ~head)
        # The head's pixels all copy the photo through its one map: none falls back to a flat colour.
        seen = seen | (one_piece & head)
        carried = near & ~covered
        if self.CARRY_PAST_THE_BODY != "anything":
            # A pixel well past the target body whose source is the photo's body surface draws that
            # surface a second time: the "wings" beside a raised arm are the photo's lowered arm carried
            # along. Such pixels carry only what lay past the fitted body in the photo (hair, loose
            # clothes); within CARRY_NEAR_PX of the body ("near the body") anything, where fit and
            # person part ways by a few pixels.
            keep = self._sample_at(empty, flow_x, flow_y) > 0.5
            if self.CARRY_PAST_THE_BODY == "near the body":
                keep = keep | (dilate(known, self.CARRY_NEAR_PX).reshape(batch, -1) > 0.5)
            carried = carried & (keep | one_piece)
        flow = torch.stack([flow_x, flow_y], 1)  # [B, 2, P]
        flow = torch.where((covered | carried)[:, None], flow, torch.full_like(flow, -2.0))

        in_view = (flow_x.abs() <= 1.0) & (flow_y.abs() <= 1.0)
        visible = in_view & (seen | (carried & (spread[:, 6] > 0.5)))  # (ORT has no boolean Where)
        return (
            flow.reshape(batch, 2, n, n),
            visible.to(torch.float32).reshape(batch, 1, n, n),
            parts.to(torch.int32).reshape(batch, 1, n, n),
        )
