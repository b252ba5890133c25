"""Every stage model as an ``nn.Module``, keyed by the contract's model names, and the frame path chained.

The MediaPipe reconstruction (the subject side of stage 1) runs in the python backend
and is not here; every other model is exported to ONNX from these modules.
"""

from __future__ import annotations

from typing import Callable, Dict

import torch

from bodydance.stages.parsing import ParsingPrior, SourceParser
from bodydance.stages.reconstruction.frame import BodyGeometry
from bodydance.stages.plate_inpainter import load_inpainter
from bodydance.stages.refiner import load_code_encoder, load_refiner
from bodydance.stages.style import StyleEncoder, StyleGenerator
from bodydance_client import contract as C

STAGE_MODULES: Dict[str, Callable[[int], torch.nn.Module]] = {
    C.SOURCE_PARSER.name: SourceParser,
    # The plate inpainter's trained weights when BODYDANCE_PLATE=learned, and the region code encoder
    # trained with the refiner when BODYDANCE_GENERATOR=learned and it has one (stages/generator_switch.py).
    C.STYLE_ENCODER.name: lambda resolution: StyleEncoder(resolution, load_inpainter(), load_code_encoder()),
    C.BODY_GEOMETRY.name: BodyGeometry,
    C.PARSING_PRIOR.name: ParsingPrior,
    # The trained refiner when BODYDANCE_GENERATOR=learned (stages/generator_switch.py).
    C.STYLE_GENERATOR.name: lambda resolution: StyleGenerator(load_refiner()),
}
assert set(STAGE_MODULES) == {m.name for m in C.ONNX_STAGES}


class FramePath(torch.nn.Module):
    """The three frame-path stages chained in-process, as the frame ensemble chains them.

    For benchmarks (eager PyTorch vs ONNX Runtime vs Triton) and GPU checks;
    inputs are the frame ensemble's, in contract order; returns (frame, frame_alpha).
    """

    def __init__(self, resolution: int):
        super().__init__()
        self.geometry = BodyGeometry(resolution)
        self.parsing = ParsingPrior(resolution)
        self.generator = StyleGenerator(load_refiner())

    def forward(self, source_image, betas, source_pose, camera, source_parsing, source_depth, region_style,
                background, target_pose, target_translation):
        flow, visibility, parts = self.geometry(betas, source_pose, camera, source_depth, source_parsing, target_pose,
                                                target_translation)
        parsing = self.parsing(source_parsing, parts, flow)
        return self.generator(source_image, background, region_style, flow, visibility, parsing)
