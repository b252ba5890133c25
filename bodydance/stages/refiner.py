"""The learned half of the style generator: a small U-Net that remixes the deterministic frame.

The deterministic generator (:class:`bodydance.stages.style.StyleGenerator`) warps what the photo
shows and paints the rest flat; the refiner sees that frame together with what it was made from and
returns, per pixel, how to mix the frame, its blur, the part's colour and the plate. Pixels the
photo shows confidently (seen, and not within :data:`EDGE_PX` of unseen surface) stay the warp's
exactly, so the refiner can only change surface the photo never showed, the rims where the fit may
be off, and the refilled plate next to the dancer.

Weights are trained here (:mod:`bodydance.training`) and committed in safetensors
(``bodydance/data/style_refiner.safetensors``, with their training log beside them). Pure tensor
ops, static shapes: it exports inside ``style_generator``'s ONNX graph. ``N`` must be a multiple of 16.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from bodydance.stages.generator_switch import WEIGHTS, generator_choice
from bodydance.stages.weights import load_file, load_state, parameter_count
from bodydance_client.contract import NUM_PARTS, PART_NAMES

HEAD = PART_NAMES.index("head")

EDGE_PX = 2
# The refiner may also paint this far outside the dancer: hair and loose clothes reach past the
# fitted body (pixels at the 256 px it is trained at). The frame counts the refilled plate grown as
# much as generated (frame_alpha), but the refiner leaves the plate away from the dancer alone.
RIM_PX = 4
# Input planes: frame 3, background 3, seen 1, target parts one-hot P, refilled plate 1, part style 6.
IN_CHANNELS = 3 + 3 + 1 + NUM_PARTS + 1 + 6
# What each pixel the refiner may edit is mixed from, in the order of its output channels. A refiner
# with style codes (``code_dim``) adds a fifth, the part colour biased by the part's learned code.
CANDIDATES = ("frame", "blur", "part colour", "background")
STYLED = "styled colour"
# How far (in [0, 1] levels) the learned code may move a part's colour away from its mean.
STYLE_BIAS_RANGE = 0.5
STYLE_HIDDEN = 32
FRAME_LOGIT_AT_START = 5.0
# The blur among them (Gaussian, px at N): on held-out fitted pairs, this blur of the deterministic
# frame where the refiner may edit gains 0.5 dB on the person (benchmarks/refiner_ceiling.py).
SMOOTH_SIGMA_PX = 2.0
SMOOTH_RADIUS_PX = 4
# Channels at N/2, N/4, N/8, N/16. The network runs at half the frame's resolution and its
# mixing weights are upsampled: a first version with a full-resolution level (16 channels at N)
# cost 2.6x the deterministic frame path per frame on this CPU, past the 2x budget.
WIDTHS = (32, 64, 96, 96)
GROUPS = 8


def _block(c_in: int, c_out: int, stride: int = 1) -> torch.nn.Sequential:
    """Two 3x3 convolutions, each group-normalised: without the norm a first run's activations grew
    to 1e6 by step 1300 and the blend mask died (the refiner became the identity)."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(c_in, c_out, 3, stride, 1), torch.nn.GroupNorm(GROUPS, c_out), torch.nn.LeakyReLU(0.1),
        torch.nn.Conv2d(c_out, c_out, 3, 1, 1), torch.nn.GroupNorm(GROUPS, c_out), torch.nn.LeakyReLU(0.1))


def _grown(mask, px: int):
    return F.max_pool2d(mask, 2 * px + 1, 1, px)


def edit_reach(seen, generated, parts_onehot):
    """(editable, reach), both ``[B,1,N,N]`` {0,1}: ``generated`` grown by :data:`RIM_PX`, and the part
    of it the refiner may change: within :data:`RIM_PX` of the dancer, not confidently seen (seen and
    at least :data:`EDGE_PX` from anything unseen) and not within :data:`RIM_PX` of the head. The
    refilled plate away from the dancer stays the plate's: a refiner that could edit it painted a pale
    ghost of the photo's person there. The head and its outline stay the warp's: a smoothed face was
    the blur a viewer noticed first, and with its edges and the hands at it remixed, Face Mesh found
    the cameraman's face in fewer frames (77 % against 86 %).
    ``seen``, ``generated`` and ``parts_onehot`` as :class:`FrameRefiner` takes them."""
    editable = _grown(generated, RIM_PX)
    confident = 1.0 - _grown(1.0 - seen, EDGE_PX)
    near_dancer = _grown(1.0 - parts_onehot[:, :1], RIM_PX)
    near_head = _grown(parts_onehot[:, HEAD:HEAD + 1], RIM_PX)
    return editable, editable * near_dancer * (1.0 - confident) * (1.0 - near_head)


class FrameRefiner(torch.nn.Module):
    """(frame ``[B,3,N,N]`` [0,1], background ``[B,3,N,N]`` [0,1], seen ``[B,1,N,N]`` {0,1},
    parts_onehot ``[B,P,N,N]``, refilled ``[B,1,N,N]`` {0,1}, part_style ``[B,6,N,N]`` (mean, std RGB of
    each pixel's part), generated ``[B,1,N,N]`` {0,1}: the dancer or the refilled plate, and with
    ``code_dim`` > 0 part_code ``[B,code_dim,N,N]``: each pixel's part's learned style code,
    :mod:`bodydance.stages.style_codes`)
    -> (refined frame ``[B,3,N,N]`` in [0,1], editable ``[B,1,N,N]`` {0,1}: ``generated`` grown by
    :data:`RIM_PX`, where the refined frame may differ from the photo).

    Where it may edit (:func:`edit_reach`) each pixel becomes a convex mix, by predicted weights, of
    :data:`CANDIDATES`: the frame, its Gaussian blur, its part's mean colour and the background plate.
    It chooses among colours the photo and the plate hold and invents none: a first refiner that
    added a free residual painted brown skin onto the grey cameraman and paled a backlit dancer
    on real footage. The background is mixed in only within :data:`RIM_PX` of the dancer's outline
    (deeper, a body mixed with the plate is a translucent one).

    With style codes (*style biasing*, as SPADE's generator takes its encoder's codes): the codes are
    input planes of the network, so they bias its features per part, and they move the part's colour
    into a fifth candidate, :data:`STYLED` (the part's mean plus a bias of at most
    :data:`STYLE_BIAS_RANGE` that one 1x1 network reads, channel by channel, from the part's statistics
    and code): a grey photo still gives grey, and there is no free residual.

    Four halvings with two 3x3 convolutions at each level: the receptive field spans an arm at 256.
    """

    def __init__(self, code_dim: int = 0):
        super().__init__()
        self.code_dim = code_dim
        self.candidates = CANDIDATES + ((STYLED,) if code_dim else ())
        if code_dim:
            # One function for every channel, of that channel's mean and std and the code.
            self.style_bias = torch.nn.Sequential(torch.nn.Conv2d(2 + code_dim, STYLE_HIDDEN, 1), torch.nn.LeakyReLU(0.1),
                                                  torch.nn.Conv2d(STYLE_HIDDEN, 1, 1))
            torch.nn.init.zeros_(self.style_bias[-1].weight)  # starts as the part's mean colour
            torch.nn.init.zeros_(self.style_bias[-1].bias)
        self.down = torch.nn.ModuleList()
        c_in = IN_CHANNELS + code_dim
        for width in WIDTHS:
            self.down.append(_block(c_in, width, 2))
            c_in = width
        self.up = torch.nn.ModuleList(_block(WIDTHS[k + 1] + WIDTHS[k], WIDTHS[k]) for k in reversed(range(len(WIDTHS) - 1)))
        self.head = torch.nn.Conv2d(WIDTHS[0], len(self.candidates), 3, 1, 1)  # one mixing logit per candidate
        # Starts next to the identity (the frame's weight about 0.98), so training begins at the
        # deterministic frame; not exactly at it, which would leave the trunk without gradients at first.
        torch.nn.init.normal_(self.head.weight, std=1e-3)
        torch.nn.init.zeros_(self.head.bias)
        with torch.no_grad():
            self.head.bias[CANDIDATES.index("frame")] = FRAME_LOGIT_AT_START
        taps = torch.arange(-SMOOTH_RADIUS_PX, SMOOTH_RADIUS_PX + 1, dtype=torch.float32)
        kernel = torch.exp(-0.5 * (taps / SMOOTH_SIGMA_PX) ** 2)
        self.register_buffer("smoothing", (kernel / kernel.sum()).reshape(1, 1, 1, -1).repeat(3, 1, 1, 1))

    def smoothed(self, frame):
        """``frame`` ``[B,3,N,N]`` under the separable Gaussian (edges mirrored)."""
        r = SMOOTH_RADIUS_PX
        rows = F.conv2d(F.pad(frame, (r, r, 0, 0), mode="reflect"), self.smoothing, groups=3)
        return F.conv2d(F.pad(rows, (0, 0, r, r), mode="reflect"), self.smoothing.transpose(2, 3), groups=3)

    def mixing_weights(self, frame, background, seen, parts_onehot, refilled, part_style, part_code=None):
        """``[B,K,N,N]`` the weight of each of :attr:`candidates` per pixel (summing to 1), before the
        reach: the background's weight deeper inside the dancer than :data:`RIM_PX` goes to the frame."""
        planes = [frame, background, seen, parts_onehot, refilled, part_style] + ([part_code] if self.code_dim else [])
        x = torch.cat(planes, 1)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = block(torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skip], 1))
        logits = F.interpolate(self.head(x), scale_factor=2.0, mode="bilinear", align_corners=False)
        frame_weight, blur_weight, colour_weight, plate_weight, *styled = torch.softmax(logits, 1).split(1, 1)
        near_outline = _grown(parts_onehot[:, :1], RIM_PX)  # off the dancer, and its outer RIM_PX
        allowed_plate = plate_weight * near_outline
        return torch.cat([frame_weight + plate_weight - allowed_plate, blur_weight, colour_weight, allowed_plate, *styled], 1)

    def styled_colour(self, part_style, part_code):
        """``[B,3,N,N]``: each pixel's part mean colour, each channel moved by one learned function of that
        channel's mean and std and the part's code. The same function for every channel: a grey photo's
        parts stay grey (the lesson of the free residual), and shuffling the channels shuffles the result."""
        b, _, h, w = part_style.shape
        per_channel = torch.cat([part_style[:, :3].reshape(b * 3, 1, h, w), part_style[:, 3:].reshape(b * 3, 1, h, w),
                                 part_code[:, None].expand(-1, 3, -1, -1, -1).reshape(b * 3, -1, h, w)], 1)  # [B*3, 2+code_dim, N, N]
        bias = STYLE_BIAS_RANGE * torch.tanh(self.style_bias(per_channel)).reshape(b, 3, h, w)
        return (part_style[:, :3] + bias).clamp(0.0, 1.0)

    def forward(self, frame, background, seen, parts_onehot, refilled, part_style, generated, part_code=None):
        editable, reach = edit_reach(seen, generated, parts_onehot)
        _, blur_weight, colour_weight, plate_weight, *styled_weight = self.mixing_weights(
            frame, background, seen, parts_onehot, refilled, part_style, part_code).split(1, 1)
        change = (blur_weight * (self.smoothed(frame) - frame) + colour_weight * (part_style[:, :3] - frame)
                  + plate_weight * (background - frame))
        if self.code_dim:
            change = change + styled_weight[0] * (self.styled_colour(part_style, part_code) - frame)
        return (frame + reach * change).clamp(0.0, 1.0), editable

    def parameter_count(self) -> int:
        return parameter_count(self)


REFINER_PREFIX, CODES_PREFIX = "refiner.", "codes."  # a jointly trained file's two halves


def read_refiner(path: Path = WEIGHTS) -> FrameRefiner:
    """The refiner with the weights at ``path`` (safetensors), whatever the switch says: a refiner's own
    weights, or the ``refiner.`` half of one trained with style codes (its ``code_dim`` read from them)."""
    state = _part(load_file(str(path)), REFINER_PREFIX)
    code_dim = state["down.0.0.weight"].shape[1] - IN_CHANNELS
    return load_state(FrameRefiner(code_dim), state)


def read_code_encoder(path: Path = WEIGHTS):
    """The region code encoder trained with the refiner at ``path``, or None when it was trained without."""
    from bodydance.stages.style_codes import RegionCodeEncoder

    state = load_file(str(path))
    if not any(key.startswith(CODES_PREFIX) for key in state):
        return None
    return load_state(RegionCodeEncoder(), _part(state, CODES_PREFIX))


def _part(state, prefix: str):
    """The tensors under ``prefix`` (unprefixed), or all of them when none has it."""
    if not any(key.startswith(prefix) for key in state):
        return state
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def load_refiner(path: Path = WEIGHTS) -> Optional[FrameRefiner]:
    """The trained refiner when :mod:`~bodydance.stages.generator_switch` asks for it and its weights
    are present, else None (the deterministic generator)."""
    if generator_choice() == "deterministic" or not path.exists():
        return None
    return read_refiner(path)


def load_code_encoder(path: Path = WEIGHTS):
    """The region code encoder when the switch asks for the learned generator and its weights hold one."""
    if generator_choice() == "deterministic" or not path.exists():
        return None
    return read_code_encoder(path)
