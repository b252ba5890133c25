"""Stage 3, target-pose human generation: region style codes, then the generated frame.

Subject side (``style_encoder``, once per photo): a style code per parsed region, and the background
plate (the reconstruction's Telea fill, refined by the learned plate inpainter when it is built in).
Frame side (``style_generator``, once per frame): the photo warped by the correspondence flow,
combined with the target parsing and the region codes. The encoder is a
deterministic **baseline**; the generator is deterministic, refined by a small network trained
here when its weights are present (:mod:`bodydance.stages.refiner`). Shapes are batched: ``B`` in front of the contract's shapes.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from bodydance.geometry import sample_ndc
from bodydance.stages.plate_inpainter import person_hole
from bodydance_client.contract import NUM_PARTS, STYLE_DIM


def unit_image(image, like):
    """An image as ``like``'s float dtype in [0, 1]: uint8 levels (the wire's) are divided by 255 in the graph."""
    if image.dtype == torch.uint8:
        return image.to(like.dtype) * (1.0 / 255.0)
    return image.to(like.dtype)


class StyleEncoder(torch.nn.Module):
    """Stage 3, subject side: a style code per part (baseline: colour statistics) and the background
    plate the generator paints onto.

    (source_image ``[B,3,N,N]`` uint8, person_mask ``[B,1,N,N]`` [0,1], source_parsing ``[B,1,N,N]`` uint8,
    plate_fill ``[B,3,N,N]`` uint8: the reconstruction's Telea fill of the person's hole)
    -> region_style ``[B,P,16]`` (mean RGB, std RGB, area fraction, zeros), background ``[B,3,N,N]`` uint8:
    the fill's hole refined by ``inpainter`` (:class:`bodydance.stages.plate_inpainter.PlateInpainter`)
    when one is given, else the fill as it came.

    The codes do not read ``person_mask``: the parsing already follows it. Mask-weighted, outlier-trimmed
    statistics were tried and cost 0.1 dB on the real-footage benchmark, so the plain ones stay.
    """

    def __init__(self, resolution: int, inpainter: Optional[torch.nn.Module] = None):
        super().__init__()
        self.resolution = resolution
        self.inpainter = inpainter

    def forward(self, source_image, person_mask, source_parsing, plate_fill):
        plate = unit_image(plate_fill, person_mask)
        if self.inpainter is not None:
            plate = self.inpainter(plate, person_hole(person_mask, self.resolution))
        # Through float and back even without the inpainter: exact for uint8 levels, and the graph keeps
        # the one shape of computation whichever way the switch is set.
        background = (plate * 255.0 + 0.5).to(torch.uint8)
        return self.region_style(source_image, person_mask, source_parsing), background

    def region_style(self, source_image, person_mask, source_parsing):
        """``[B,P,16]``: the codes alone (``person_mask`` gives the float dtype only)."""
        source_image = unit_image(source_image, person_mask)
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
        return torch.cat([mean, std, fraction[..., None], pad], dim=-1)


class StyleGenerator(torch.nn.Module):
    """Generator: warp the photo by the flow where it lands on the photo's person, fill unseen surface
    with its part's mean colour; then, with a trained ``refiner``
    (:class:`bodydance.stages.refiner.FrameRefiner`), refine what the photo did not show confidently.
    Without one it is the deterministic stand-in.

    (source_image ``[B,3,N,N]`` uint8, background ``[B,3,N,N]`` uint8, region_style ``[B,P,16]``,
    correspondence_flow ``[B,2,N,N]`` NDC, source_visibility ``[B,1,N,N]``, target_parsing ``[B,1,N,N]`` int32)
    -> frame ``[B,N,N,3]`` uint8, frame_alpha ``[B,N,N,1]`` uint8 (255 where the frame differs from the photo).
    """

    # Copy only photo pixels of the person (mask grown): held-out synthetic pairs +0.13 dB on the
    # person, SSIM +0.003 (benchmarks/hidden_surface.py).
    COPY_FROM_PERSON_ONLY = True

    def __init__(self, refiner: Optional[torch.nn.Module] = None):
        super().__init__()
        self.refiner = refiner

    def forward(self, source_image, background, region_style, correspondence_flow, source_visibility, target_parsing):
        source_image, background = unit_image(source_image, region_style), unit_image(background, region_style)
        grid = correspondence_flow.permute(0, 2, 3, 1)
        warped = sample_ndc(source_image, grid)
        planes = generator_planes(source_image, background, region_style, correspondence_flow, source_visibility,
                                  target_parsing, self.COPY_FROM_PERSON_ONLY)
        # Blends instead of Where: the masks are exactly 0/1, and ORT's broadcasting Where cost 1.8 ms here.
        body = planes.region_colour + planes.seen * (warped - planes.region_colour)
        out = background + planes.person * (body - background)
        generated = planes.generated
        if self.refiner is not None:
            out, generated = self.refiner(out.clamp(0.0, 1.0), background, *planes.refiner_inputs())
        frame = (out.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1)
        alpha = (generated * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1)
        return frame, alpha


@dataclasses.dataclass
class GeneratorPlanes:
    """Per-pixel planes ``[B,C,N,N]`` the generator (and its refiner) reads, made once per frame."""

    onehot: torch.Tensor  # [B,P,N,N] target parts
    person: torch.Tensor  # [B,1,N,N] {0,1}: the dancer
    seen: torch.Tensor  # [B,1,N,N] {0,1}: the flow has a source pixel to copy
    part_style: torch.Tensor  # [B,6,N,N]: each pixel's part mean and std RGB
    refilled: torch.Tensor  # [B,1,N,N] {0,1}: where the plate differs from the photo (the photo's person)
    generated: torch.Tensor  # [B,1,N,N] {0,1}: the dancer or the refilled plate

    @property
    def region_colour(self) -> torch.Tensor:
        """``[B,3,N,N]``: each pixel's part mean colour."""
        return self.part_style[:, :3]

    def refiner_inputs(self):
        """The planes :class:`~bodydance.stages.refiner.FrameRefiner` takes after (frame, background)."""
        return self.seen * self.person, self.onehot, self.refilled, self.part_style, self.generated


def generator_planes(source_image, background, region_style, correspondence_flow, source_visibility, target_parsing,
                     copy_from_person_only: bool = True) -> GeneratorPlanes:
    """Images as [0, 1] floats ``[B,3,N,N]``; the rest as the generator's inputs. ``seen`` is the
    visibility, less (``copy_from_person_only``) pixels whose flow lands off the photo's person."""
    labels = target_parsing.to(torch.int64)  # [B,1,N,N]
    ids = torch.arange(NUM_PARTS, device=labels.device).reshape(1, -1, 1, 1)
    onehot = (labels == ids).to(source_image.dtype)  # [B,P,N,N]
    # A MatMul rather than an Einsum: ONNX Runtime's Einsum made this stage 4x slower than eager PyTorch.
    style = (region_style[..., :6].transpose(1, 2) @ onehot.flatten(2)).reshape(
        source_image.shape[0], 6, *source_image.shape[2:])
    person = (labels > 0).to(source_image.dtype)
    refilled = ((background - source_image).abs().amax(1, keepdim=True) > 1.0 / 512).to(source_image.dtype)
    seen = (source_visibility > 0.5).to(source_image.dtype)
    if copy_from_person_only:
        # The fitted body's outline in the photo is not the person's: where it reaches past them, the
        # flow points at background; such pixels take their part's colour instead of a ghost of it.
        seen = seen * sample_ndc(refilled, correspondence_flow.to(refilled.dtype).permute(0, 2, 3, 1), mode="nearest")
    generated = person + refilled - person * refilled
    return GeneratorPlanes(onehot, person, seen, style, refilled, generated)
