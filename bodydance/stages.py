"""The five ONNX stage models, one ``nn.Module`` each, with the contract's inputs and outputs.

Every module here is a deterministic **baseline** (no learned weights yet):
it fixes the contract so that a trained parsing prior or style generator can
replace it without touching the ensembles or the client. Inputs and outputs
are batched (``B`` in front of the per-item shapes of
:mod:`bodydance_client.contract`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bodydance.geometry import CorrespondenceGeometry, fill_holes, grow_labels, sample_ndc
from bodydance_client.contract import NUM_PARTS, STYLE_DIM


class SourceParser(torch.nn.Module):
    """Baseline source parsing: the fitted body's parts, grown to fill the person mask;
    and the body's depth in the photo, rendered here once so no frame renders it again.

    (person_mask ``[B,1,N,N]``, betas ``[B,10]``, source_pose ``[B,24,3]`` rad, camera ``[B,3]``)
    -> source_parsing ``[B,1,N,N]`` int32, source_depth ``[B,1,N,N]`` m.
    """

    def __init__(self, resolution: int):
        super().__init__()
        self.resolution = resolution
        self.geometry = CorrespondenceGeometry(resolution)
        self.grow_steps = max(4, resolution // 16)

    def forward(self, person_mask, betas, source_pose, camera):
        batch, n = betas.shape[0], self.resolution
        surface = self.geometry.surface
        _, _, raster = surface(betas, source_pose, torch.zeros_like(betas[:, :3]), camera)
        labels = surface.parts(raster, surface.nearest_vertex(raster, surface.corners(raster)))
        labels = labels.reshape(batch, 1, n, n)
        person = person_mask > 0.5
        labels = torch.where(person, labels, torch.zeros_like(labels))
        parsing = grow_labels(labels, NUM_PARTS, self.grow_steps, allowed=person).to(torch.int32)
        return parsing, raster.depth.reshape(batch, 1, n, n)


class StyleEncoder(torch.nn.Module):
    """Baseline style encoder: per-part colour statistics, and the background plate.

    (source_image ``[B,3,N,N]`` [0,1], person_mask ``[B,1,N,N]``, source_parsing ``[B,1,N,N]`` int32)
    -> region_style ``[B,P,16]`` (mean RGB, std RGB, area fraction, zeros), background ``[B,3,N,N]``.
    """

    def __init__(self, resolution: int):
        super().__init__()
        self.levels = max(1, (resolution // 2).bit_length() - 1)

    def forward(self, source_image, person_mask, source_parsing):
        ids = torch.arange(NUM_PARTS, device=source_image.device).reshape(1, -1, 1, 1)
        onehot = (source_parsing.to(torch.int64) == ids).to(source_image.dtype)  # [B,P,N,N]
        # Sums are taken over pixels pre-divided by the pixel count: a raw sum over
        # 256*256 pixels overflows FP16 (max 65504), which the export's FP16 check caught.
        pixel_count = source_image.shape[2] * source_image.shape[3]
        area = onehot.mean(dim=(2, 3))  # [B,P] fraction of the image
        pixels = source_image.flatten(2)  # [B,3,NN]
        masks = onehot.flatten(2) / pixel_count  # [B,P,NN]
        eps = 0.5 / pixel_count
        total = masks @ pixels.transpose(1, 2)  # [B,P,3]
        mean = total / area.clamp_min(eps)[..., None]
        squares = masks @ (pixels * pixels).transpose(1, 2)
        std = torch.sqrt((squares / area.clamp_min(eps)[..., None] - mean * mean).clamp_min(0.0))
        fraction = area / area.sum(dim=1, keepdim=True).clamp_min(eps)
        # Parts never seen in the photo borrow the torso's colour, then the person's mean.
        person_mean = (total[:, 1:].sum(1) / area[:, 1:].sum(1).clamp_min(eps)[..., None])[:, None]
        torso = mean[:, 2:3]
        fallback = torch.where(area[:, 2:3, None] > 0, torso, person_mean)
        mean = torch.where(area[..., None] > 0, mean, fallback)
        pad = torch.zeros_like(mean[..., :1]).expand(-1, -1, STYLE_DIM - 7)
        style = torch.cat([mean, std, fraction[..., None], pad], dim=-1)

        background_known = (person_mask < 0.5).to(source_image.dtype)
        # Grow the hole a little so the person's fringe does not smear into the plate.
        background_known = 1.0 - F.max_pool2d(1.0 - background_known, 5, stride=1, padding=2)
        background = fill_holes(source_image, background_known, self.levels)
        return style, background


class BodyGeometry(CorrespondenceGeometry):
    """Stage 1, frame side (see :class:`bodydance.geometry.CorrespondenceGeometry`)."""


class ParsingPrior(torch.nn.Module):
    """Baseline parsing prior: rendered target parts, grown to the person's own silhouette.

    (source_parsing ``[B,1,N,N]`` int32, target_parts ``[B,1,N,N]`` int32,
    correspondence_flow ``[B,2,N,N]`` NDC) -> target_parsing ``[B,1,N,N]`` int32.
    The photo's parsing (hair, loose clothes included) is carried along the flow;
    a carried label is kept beside the rendered body only where it names the
    same part as the nearest rendered pixel, so a raised arm does not drag the
    torso behind it along.
    """

    def __init__(self, resolution: int):
        super().__init__()
        self.reach = max(2, resolution // 24)

    def forward(self, source_parsing, target_parts, correspondence_flow):
        labels = source_parsing.to(correspondence_flow.dtype)
        carried = sample_ndc(labels, correspondence_flow.permute(0, 2, 3, 1), mode="nearest")
        carried = carried.to(torch.int64)
        nearest = grow_labels(target_parts, NUM_PARTS, self.reach)
        beside = torch.where(carried == nearest, carried, torch.zeros_like(carried))
        rendered = target_parts.to(torch.int64)
        return torch.where(rendered > 0, rendered, beside).to(torch.int32)


class StyleGenerator(torch.nn.Module):
    """Baseline generator: warp the photo by the flow, fill unseen surface with its part's mean colour.

    (source_image ``[B,3,N,N]``, background ``[B,3,N,N]``, region_style ``[B,P,16]``,
    correspondence_flow ``[B,2,N,N]`` NDC, source_visibility ``[B,1,N,N]``, target_parsing ``[B,1,N,N]`` int32)
    -> frame ``[B,N,N,3]`` uint8.
    """

    def forward(self, source_image, background, region_style, correspondence_flow, source_visibility, target_parsing):
        grid = correspondence_flow.permute(0, 2, 3, 1)
        warped = sample_ndc(source_image, grid)
        labels = target_parsing.to(torch.int64)  # [B,1,N,N]
        ids = torch.arange(NUM_PARTS, device=labels.device).reshape(1, -1, 1, 1)
        onehot = (labels == ids).to(source_image.dtype)  # [B,P,N,N]
        # A MatMul rather than an Einsum: ONNX Runtime's Einsum made this stage 4x slower than eager PyTorch.
        colours = region_style[..., :3].transpose(1, 2)  # [B,3,P]
        region_colour = (colours @ onehot.flatten(2)).reshape(source_image.shape)
        # Blends instead of Where: the masks are exactly 0/1, and ORT's broadcasting Where cost 1.8 ms here.
        person = (labels > 0).to(source_image.dtype)
        seen = (source_visibility > 0.5).to(source_image.dtype)
        body = region_colour + seen * (warped - region_colour)
        out = background + person * (body - background)
        return (out.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1)


STAGE_MODULES = {
    "source_parser": SourceParser,
    "style_encoder": StyleEncoder,
    "body_geometry": BodyGeometry,
    "parsing_prior": ParsingPrior,
    "style_generator": lambda resolution: StyleGenerator(),
}


class FramePath(torch.nn.Module):
    """The three frame-path stages chained in-process, as the frame ensemble chains them.

    For benchmarks (eager PyTorch vs ONNX Runtime vs Triton) and GPU checks;
    inputs are the frame ensemble's, in contract order.
    """

    def __init__(self, resolution: int):
        super().__init__()
        self.geometry = BodyGeometry(resolution)
        self.parsing = ParsingPrior(resolution)
        self.generator = StyleGenerator()

    def forward(self, source_image, betas, source_pose, camera, source_parsing, source_depth, region_style,
                background, target_pose, target_translation):
        flow, visibility, parts = self.geometry(betas, source_pose, camera, source_depth, target_pose,
                                                target_translation)
        parsing = self.parsing(source_parsing, parts, flow)
        return self.generator(source_image, background, region_style, flow, visibility, parsing)
