"""The learned half of the background plate: a small U-Net that refines the Telea fill of the person's hole.

The reconstruction takes the person out of the photo and fills the hole with OpenCV's fast-marching
inpainting (:mod:`bodydance.stages.reconstruction.plate`), which carries the colours at the hole's
edge inwards and leaves a person-sized hole smooth. This network sees that fill and the hole and
returns a residual inside the hole only: every pixel outside it stays the photo's. It runs at half the
working resolution (the residual is upsampled), once per photo, inside ``style_encoder``'s ONNX graph.

Weights are trained here (``python -m bodydance.training plate``: crops of package photos with
person-shaped holes, :mod:`bodydance.training.plate_training`) and committed in safetensors with their
log (``bodydance/data/plate_inpainter.safetensors``). ``BODYDANCE_PLATE=learned`` at export time
builds it in; the default, ``telea``, keeps the Telea fill alone (why: :mod:`bodydance.stages.generator_switch`).
``N`` must be a multiple of 16.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from bodydance.stages.generator_switch import PLATE_WEIGHTS, plate_choice
from bodydance.stages.reconstruction.plate import GROW_SHARE, HOLE_PROBABILITY
from bodydance.stages.weights import parameter_count, read_weights

# Channels at N/2 (where it runs), N/4, N/8, N/16; the last level's dilated convolutions widen the
# receptive field past a torso's width at 256.
WIDTHS = (16, 32, 64, 96)
DILATIONS = (2, 4)
GROUPS = 8


def person_hole(person_mask: torch.Tensor, resolution: int) -> torch.Tensor:
    """``[B,1,N,N]`` {0,1}: the pixels the plate refilled, as
    :func:`~bodydance.stages.reconstruction.plate.person_hole` chooses them (mask above the hole
    probability, grown; a square here where OpenCV grows a disc, so it may reach a pixel further at the
    corners, where the Telea fill and the photo both lie). ``resolution`` is ``N`` as an int, so the
    export traces a constant."""
    grow = max(2, int(round(resolution * GROW_SHARE)))
    return F.max_pool2d((person_mask > HOLE_PROBABILITY).to(person_mask.dtype), 2 * grow + 1, 1, grow)


def _block(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> torch.nn.Sequential:
    return torch.nn.Sequential(
        torch.nn.Conv2d(c_in, c_out, 3, stride, dilation, dilation), torch.nn.GroupNorm(GROUPS, c_out),
        torch.nn.LeakyReLU(0.1),
        torch.nn.Conv2d(c_out, c_out, 3, 1, 1), torch.nn.GroupNorm(GROUPS, c_out), torch.nn.LeakyReLU(0.1))


class PlateInpainter(torch.nn.Module):
    """(filled ``[B,3,N,N]`` in [0,1]: the photo with the hole Telea-filled, hole ``[B,1,N,N]`` {0,1})
    -> ``[B,3,N,N]`` in [0,1], equal to ``filled`` outside the hole."""

    def __init__(self):
        super().__init__()
        self.stem = _block(4, WIDTHS[0])
        self.down = torch.nn.ModuleList(_block(a, b, 2) for a, b in zip(WIDTHS[:-1], WIDTHS[1:]))
        self.context = torch.nn.Sequential(*(_block(WIDTHS[-1], WIDTHS[-1], dilation=d) for d in DILATIONS))
        self.up = torch.nn.ModuleList(_block(WIDTHS[k + 1] + WIDTHS[k], WIDTHS[k]) for k in reversed(range(len(WIDTHS) - 1)))
        self.head = torch.nn.Conv2d(WIDTHS[0], 3, 3, 1, 1)
        # Starts at the Telea fill (a residual of about a hundredth).
        torch.nn.init.normal_(self.head.weight, std=1e-3)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, filled, hole):
        x = self.stem(torch.cat([F.avg_pool2d(filled, 2) * 2.0 - 1.0, F.max_pool2d(hole, 2)], 1))  # at N/2
        skips = [x]
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = self.context(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = block(torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skip], 1))
        residual = F.interpolate(self.head(x), scale_factor=2.0, mode="bilinear", align_corners=False)
        return (filled + hole * residual).clamp(0.0, 1.0)

    def parameter_count(self) -> int:
        return parameter_count(self)


def read_inpainter(path: Path = PLATE_WEIGHTS) -> PlateInpainter:
    """The inpainter with the weights at ``path`` (safetensors), whatever the switch says."""
    return read_weights(PlateInpainter(), path)


def load_inpainter(path: Path = PLATE_WEIGHTS) -> Optional[PlateInpainter]:
    """The trained inpainter when ``BODYDANCE_PLATE=learned`` asks for it and its weights are present,
    else None (the Telea fill alone, the default)."""
    if plate_choice() == "telea" or not path.exists():
        return None
    return read_inpainter(path)
