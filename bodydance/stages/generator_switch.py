"""Which style generator an export builds: the learned refiner over the deterministic frame, or the
deterministic stand-in alone. Torch-free, so the export fingerprint can read it.

``BODYDANCE_GENERATOR=learned`` (at export time; the model repository is re-exported when it
changes) builds the refiner from the committed weights; ``deterministic``, the default, the
stand-in alone. The default stays the stand-in while the refiner misses two of issue 11's
must-holds: it costs 2.26x the deterministic frame path per frame on this CPU (budget 2x) and gains
0.37 dB on held-out pairs (goal 1.5; ``benchmarks/results/learned_generator.md``).
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

