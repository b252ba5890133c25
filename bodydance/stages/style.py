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
from bodydance.stages.style_codes import CODE_DIMS, FIRST_CODE_DIM, parts_onehot
from bodydance_client.contract import NUM_PARTS, PART_NAMES, STYLE_DIM

HEAD, HAND = PART_NAMES.index("head"), PART_NAMES.index("hand")


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
    -> region_style ``[B,P,16]`` (mean RGB, std RGB, area fraction, then zeros, or with ``codes``
    (:class:`bodydance.stages.style_codes.RegionCodeEncoder`) each part's learned style code), background
    ``[B,3,N,N]`` uint8: the fill's hole refined by ``inpainter``
    (:class:`bodydance.stages.plate_inpainter.PlateInpainter`) when one is given, else the fill as it came.

    The codes do not read ``person_mask``: the parsing already follows it. Mask-weighted, outlier-trimmed
    statistics were tried and cost 0.1 dB on the real-footage benchmark, so the plain ones stay.
    A part the photo never showed takes the torso's colour, except hands, which take the face's skin
    (:attr:`UNSEEN_HAND_COLOUR`, :attr:`HAND_STATISTICS`).
    """

    # What colour hands take when the photo shows neither: "skin" (the face's, :func:`skin_colour`;
    # the torso's where no skin is found, e.g. on a grey photo) or "torso" (an orange hand on the
    # astronaut in her suit). With "skin", HAND_STATISTICS "prior" also pulls a hand the photo shows
    # towards the face's skin by HAND_PRIOR_SHARE of the image; "plain" takes its pixels' mean alone.
    # benchmarks/hidden_surface.py --study hands.
    UNSEEN_HAND_COLOUR = "skin"
    HAND_STATISTICS = "prior"

    def __init__(self, resolution: int, inpainter: Optional[torch.nn.Module] = None,
                 codes: Optional[torch.nn.Module] = None):
        super().__init__()
        self.resolution = resolution
        self.inpainter = inpainter
        self.codes = codes

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
        onehot = parts_onehot(source_parsing, source_image.dtype)  # [B,P,N,N]
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
        fallback = torch.where(area[:, 2:3, None] > 0, torso, person_mean).expand(-1, NUM_PARTS, -1)
        is_hand = (torch.arange(NUM_PARTS, device=mean.device) == HAND).reshape(1, -1, 1)
        if self.UNSEEN_HAND_COLOUR == "skin":
            skin, found = skin_colour(source_image, onehot[:, HEAD])
            fallback = torch.where(is_hand & found[:, None, None], skin[:, None], fallback)
            if self.HAND_STATISTICS == "prior":
                # As if the photo also showed HAND_PRIOR_SHARE of the image of the face's skin on the
                # hands: a few pixels of sleeve or helmet the fit calls hand no longer set its colour.
                prior = (total[:, HAND] + HAND_PRIOR_SHARE * skin) / (area[:, HAND] + HAND_PRIOR_SHARE)[:, None]
                mean = torch.where(is_hand & found[:, None, None], prior[:, None], mean)
        mean = torch.where(area[..., None] > 0, mean, fallback)
        if self.codes is not None:
            codes, _ = self.codes(source_image, onehot)  # the Gaussian's mean: serving does not sample
        else:
            codes = torch.zeros_like(mean[..., :1]).expand(-1, -1, STYLE_DIM - FIRST_CODE_DIM)
        return torch.cat([mean, std, fraction[..., None], codes], dim=-1)


# Chroma of skin in JPEG's YCrCb, 0-255 (the skin-detection box of Chai and Ngan, 1999), and a floor
# on luma that leaves out black hair and shadow but keeps the darkest skin tones of the scenes (Y 68).
SKIN_CR, SKIN_CB, SKIN_MIN_LUMA = (133.0, 173.0), (77.0, 127.0), 40.0
# Fewest skin pixels, as a share of the head's, for the estimate to count.
SKIN_MIN_SHARE = 0.05


# The skin prior's weight on the hands, as a share of the image: 65 px at 256.
HAND_PRIOR_SHARE = 1e-3


def skin_box(image):
    """``[B,N,N]`` {0,1}: pixels of ``image`` ``[B,3,N,N]`` [0,1] whose colour lies in the skin box."""
    r, g, b = (image[:, k] * 255.0 for k in range(3))
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    cr = 128.0 + 0.5 * r - 0.4187 * g - 0.0813 * b
    cb = 128.0 - 0.1687 * r - 0.3313 * g + 0.5 * b
    return ((cr > SKIN_CR[0]) & (cr < SKIN_CR[1]) & (cb > SKIN_CB[0]) & (cb < SKIN_CB[1])
            & (luma > SKIN_MIN_LUMA)).to(image.dtype)


def skin_colour(image, head):
    """The photo's skin colour, from its face: the head part's pixels within one standard deviation of
    the head's centre in rows and columns (the face, not the hair around it) whose colour lies in the
    skin chroma box. image ``[B,3,N,N]`` [0,1], head ``[B,N,N]`` {0,1} -> (mean RGB ``[B,3]`` [0,1],
    found ``[B]`` bool: at least :data:`SKIN_MIN_SHARE` of the head's pixels counted). No face (a grey
    photo, a head seen from behind): not found."""
    n = head.shape[-1]
    # Shares of the image rather than pixel counts: a count over a 512 px head overflows FP16.
    head = head / (n * n)
    share = head.sum((1, 2)).clamp_min(0.5 / (n * n))
    coordinate = torch.arange(n, device=image.device, dtype=image.dtype) / n

    def centred(c):  # [B,N,N] {0,1}: |coordinate - the head's mean| < the head's std along c's axis
        mean = (head * c).sum((1, 2)) / share
        offset = c - mean[:, None, None]
        spread = ((head * offset * offset).sum((1, 2)) / share).sqrt()
        return (offset.abs() < spread[:, None, None]).to(image.dtype)

    skin = head * centred(coordinate.reshape(1, n, 1)) * centred(coordinate.reshape(1, 1, n)) * skin_box(image)
    skin_share = skin.sum((1, 2))
    colour = (image.flatten(2) @ skin.flatten(1)[..., None])[..., 0] / skin_share.clamp_min(0.5 / (n * n))[:, None]
    return colour, skin_share >= SKIN_MIN_SHARE * share


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
            codes = (part_planes(region_style[..., CODE_DIMS], planes.onehot),) if self.refiner.code_dim else ()
            out, generated = self.refiner(out.clamp(0.0, 1.0), background, *planes.refiner_inputs(), *codes)
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


def part_planes(per_part, onehot):
    """``[B,C,N,N]``: each pixel's part's values, from ``per_part`` ``[B,P,C]`` and ``onehot`` ``[B,P,N,N]``."""
    # A MatMul rather than an Einsum: ONNX Runtime's Einsum made this stage 4x slower than eager PyTorch.
    return (per_part.transpose(1, 2).to(onehot.dtype) @ onehot.flatten(2)).reshape(
        onehot.shape[0], per_part.shape[-1], *onehot.shape[2:])


def generator_planes(source_image, background, region_style, correspondence_flow, source_visibility, target_parsing,
                     copy_from_person_only: bool = True) -> GeneratorPlanes:
    """Images as [0, 1] floats ``[B,3,N,N]``; the rest as the generator's inputs. ``seen`` is the
    visibility, less (``copy_from_person_only``) pixels whose flow lands off the photo's person."""
    onehot = parts_onehot(target_parsing, source_image.dtype)  # [B,P,N,N]
    style = part_planes(region_style[..., :6], onehot)
    person = (target_parsing.to(torch.int64) > 0).to(source_image.dtype)
    refilled = ((background - source_image).abs().amax(1, keepdim=True) > 1.0 / 512).to(source_image.dtype)
    seen = (source_visibility > 0.5).to(source_image.dtype)
    if copy_from_person_only:
        # The fitted body's outline in the photo is not the person's: where it reaches past them, the
        # flow points at background; such pixels take their part's colour instead of a ghost of it.
        seen = seen * sample_ndc(refilled, correspondence_flow.to(refilled.dtype).permute(0, 2, 3, 1), mode="nearest")
    generated = person + refilled - person * refilled
    return GeneratorPlanes(onehot, person, seen, style, refilled, generated)
