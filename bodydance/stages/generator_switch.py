"""Which style generator an export builds: the learned refiner over the deterministic frame, or the
deterministic stand-in alone. Torch-free, so the export fingerprint can read it.

``BODYDANCE_GENERATOR=deterministic`` (at export time; the model repository is re-exported when it
changes) switches back to the stand-in; ``learned`` (the default) uses the committed weights when
they are present.
"""

from __future__ import annotations

import os
from pathlib import Path

GENERATOR_ENV = "BODYDANCE_GENERATOR"
CHOICES = ("learned", "deterministic")
WEIGHTS = Path(__file__).resolve().parents[1] / "data" / "style_refiner.safetensors"


def generator_choice() -> str:
    """"learned" or "deterministic", from :data:`GENERATOR_ENV`; anything else is refused."""
    choice = os.environ.get(GENERATOR_ENV, "learned").strip().lower()
    if choice not in CHOICES:
        raise ValueError(f"{GENERATOR_ENV} must be one of {', '.join(CHOICES)}, not {choice!r}")
    return choice


def uses_learned_generator() -> bool:
    return generator_choice() == "learned" and WEIGHTS.exists()
