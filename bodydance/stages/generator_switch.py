"""Which learned parts an export builds: the style generator's refiner over the deterministic frame
(or the deterministic stand-in alone), and the plate inpainter over the Telea fill (or the fill alone).
Torch-free, so the export fingerprint can read it.

``BODYDANCE_GENERATOR=learned`` (at export time; the model repository is re-exported when it
changes) builds the refiner from the committed weights; ``deterministic``, the default, the
stand-in alone. The default stays the stand-in while the refiner gains 0.33 dB on held-out pairs
(issue 11 asks 1.5) and buys its better real-footage figures by softening the dancer's body
(``benchmarks/results/learned_generator.md``, ``real_footage_learned.md`` and its sheets,
``face_check_learned.md``); its per-frame cost, 1.66x, is within the 2x budget. A refiner trained
with style codes also builds their encoder into ``style_encoder`` (:func:`bodydance.stages.refiner.load_code_encoder`).

``BODYDANCE_PLATE=learned`` builds the plate inpainter from its committed weights into
``style_encoder``; ``telea``, the default, keeps the reconstruction's Telea fill as the background. The
default stays the fill: the inpainter gains 0.81 dB on synthetic holes but is level on the real
Sports2D video, leaves paler blobs where a hole meets bright sky there, and the cameraman's face is
found in fewer frames beside it (``benchmarks/results/background_plate.md``,
``real_footage_learned_plate.md``, ``face_check_learned_plate.md``).
"""

from __future__ import annotations

import os
from pathlib import Path

GENERATOR_ENV = "BODYDANCE_GENERATOR"
CHOICES = ("learned", "deterministic")
WEIGHTS = Path(__file__).resolve().parents[1] / "data" / "style_refiner.safetensors"


def generator_choice() -> str:
    """"learned" or "deterministic", from :data:`GENERATOR_ENV`; anything else is refused."""
    choice = os.environ.get(GENERATOR_ENV, "deterministic").strip().lower()
    if choice not in CHOICES:
        raise ValueError(f"{GENERATOR_ENV} must be one of {', '.join(CHOICES)}, not {choice!r}")
    return choice



PLATE_ENV = "BODYDANCE_PLATE"
PLATE_CHOICES = ("learned", "telea")
PLATE_WEIGHTS = WEIGHTS.with_name("plate_inpainter.safetensors")


def plate_choice() -> str:
    """"learned" or "telea" (the default), from :data:`PLATE_ENV`; anything else is refused."""
    choice = os.environ.get(PLATE_ENV, "telea").strip().lower()
    if choice not in PLATE_CHOICES:
        raise ValueError(f"{PLATE_ENV} must be one of {', '.join(PLATE_CHOICES)}, not {choice!r}")
    return choice
