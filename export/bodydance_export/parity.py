"""Agreement between two runs of one model, output by output (numpy only: no torch, no ONNX Runtime).

Every parity check of the export compares through here: PyTorch vs ONNX Runtime
and FP32 vs FP16 (:mod:`bodydance_export.steps`), and a TensorRT plan vs ONNX
Runtime (:mod:`bodydance_export.tensorrt_build.run`).
"""

from __future__ import annotations

import dataclasses
from typing import List, Mapping

import numpy as np

from bodydance_client.contract import PART_LABEL_TENSORS

# Part labels are compared exactly, whatever their dtype (source_parsing is uint8, not an image).
_LABELS = frozenset(s.name for s in PART_LABEL_TENSORS)


class ParityError(RuntimeError):
    """Two runs of one model disagree beyond the tolerance, or do not give the same outputs."""


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Agreement needed between two runs of one output.

    Floats: ``|a - b| <= atol + rtol * |b|`` on at least ``min_fraction`` of the
    elements (the geometry has per-pixel ties on triangle edges, where a last
    ulp can flip a pixel); uint8 images are compared on the [0, 1] scale.
    Integer labels (``contract.PART_LABEL_TENSORS``, uint8 or int32): exact on ``min_fraction``
    (FP16 moves a few label borders).
    """

    atol: float
    rtol: float
    min_fraction: float


@dataclasses.dataclass
class Agreement:
    output: str
    fraction: float
    max_abs_error: float


def compare(name: str, reference: np.ndarray, candidate: np.ndarray, tol: Tolerance) -> Agreement:
    """How much of ``candidate`` agrees with ``reference`` within ``tol``; :class:`ParityError` on another shape."""
    reference, candidate = np.asarray(reference), np.asarray(candidate)
    if reference.shape != candidate.shape:
        raise ParityError(f"output {name!r}: shape {candidate.shape} != reference shape {reference.shape}")
    labels = name in _LABELS or (np.issubdtype(reference.dtype, np.integer) and reference.dtype != np.uint8)
    scale = 1.0 / 255.0 if reference.dtype == np.uint8 and not labels else 1.0
    ref = reference.astype(np.float64) * scale
    cand = candidate.astype(np.float64) * scale
    diff = np.abs(ref - cand)
    if labels:
        ok = diff == 0
    else:
        # NaN or inf in the candidate compares False, so it counts as a miss.
        ok = diff <= tol.atol + tol.rtol * np.abs(ref)
    return Agreement(name, float(ok.mean()) if ok.size else 1.0, float(diff.max()) if diff.size else 0.0)


def compare_outputs(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray],
                    tol: Tolerance) -> List[Agreement]:
    """:func:`compare` for every reference output; :class:`ParityError` where the candidate lacks one."""
    missing = [name for name in reference if name not in candidate]
    if missing:
        raise ParityError(f"outputs {missing} are missing from the candidate's outputs {sorted(candidate)}")
    return [compare(name, reference[name], candidate[name], tol) for name in reference]


def check_outputs(label: str, baseline: str, reference, candidate, tol: Tolerance,
                  strict: bool = True) -> List[Agreement]:
    """Compare every output; with ``strict``, :class:`ParityError` naming each output short of ``tol``.

    ``label`` names the candidate run and ``baseline`` the reference run in the message.
    """
    report = compare_outputs(reference, candidate, tol)
    failed = [a for a in report if a.fraction < tol.min_fraction]
    if failed and strict:
        worst = ", ".join(f"{a.output}: {a.fraction:.4%} within tolerance, max |err| {a.max_abs_error:.3g}"
                          for a in failed)
        raise ParityError(f"{label} disagrees with {baseline} ({worst}); needed {tol.min_fraction:.1%}")
    return report
