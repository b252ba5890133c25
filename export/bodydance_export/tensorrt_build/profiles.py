"""Optimisation profile shapes of a stage: per-item dims from its ONNX, batch bounds from its typed description.

The description is :class:`bodydance.serving.model_configs.ModelDescription`,
the same object the stage's generated ``config.pbtxt`` is rendered from, and the
ONNX is checked against its GPU ``ModelConfig`` (tensor names, resolution)
before anything is built, since Triton refuses a plan that differs from its config.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import List, Tuple

from bodydance_client.contract import StageContract
from bodydance_export.onnx_runtime import load_graph, onnx_input_dims, onnx_output_dims

# The batch the kernels are tuned for: what a busy frame path batches (never past the stage's maximum).
OPT_BATCH = 4


@dataclasses.dataclass(frozen=True)
class ProfileShape:
    """min / opt / max shape of one engine input; only the batch (first) dimension varies."""

    name: str
    min: Tuple[int, ...]
    opt: Tuple[int, ...]
    max: Tuple[int, ...]

    @property
    def item_shape(self) -> Tuple[int, ...]:
        return self.max[1:]


def batch_bounds(description) -> Tuple[int, int, int]:
    """(min, opt, max) batch of a stage's plan: 1, up to :data:`OPT_BATCH`, and the description's
    ``max_batch_size`` (frame-path stages MAX_FRAME_BATCH, subject-side 1), so the plan covers what Triton sends."""
    top = description.batching.max_batch_size
    if top < 1:
        raise ValueError(f"{description.contract.name}: max_batch_size {top}; a plan needs a batch dimension")
    return 1, min(OPT_BATCH, top), top


def _label(model_or_path) -> str:
    if isinstance(model_or_path, (str, os.PathLike)):
        return Path(model_or_path).name
    return model_or_path.graph.name or "model"


def derive_profile(model_or_path, *, min_batch: int, opt_batch: int, max_batch: int) -> List[ProfileShape]:
    """One :class:`ProfileShape` per ONNX input: the ONNX shape with its first dim set to min/opt/max batch.

    Every other dimension must be static: the working resolution is fixed at
    export time, and an engine built for a range of resolutions would be slower.
    """
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise ValueError(f"need 1 <= min_batch <= opt_batch <= max_batch, got {min_batch}, {opt_batch}, {max_batch}")
    label = _label(model_or_path)
    profile = []
    for tensor, dims in onnx_input_dims(model_or_path).items():
        if not dims:
            raise ValueError(f"{label}: input {tensor!r} is a scalar; every input needs a batch dimension")
        batch, rest = dims[0], dims[1:]
        if isinstance(batch, int) and batch > 0 and not min_batch == max_batch == batch:
            raise ValueError(f"{label}: input {tensor!r} has a fixed batch dimension of {batch}, but the profile "
                             f"needs {min_batch}..{max_batch}; export with a dynamic first dimension")
        for axis, d in enumerate(rest, start=1):
            if not isinstance(d, int) or d <= 0:
                raise ValueError(f"{label}: input {tensor!r} has a dynamic non-batch dimension {axis} ({d!r}); "
                                 "the resolution is fixed at export time")
        rest = tuple(int(d) for d in rest)
        profile.append(ProfileShape(tensor, (min_batch, *rest), (opt_batch, *rest), (max_batch, *rest)))
    if not profile:
        raise ValueError(f"{label}: the ONNX graph has no inputs")
    return profile


def stage_profile(description, onnx_path) -> List[ProfileShape]:
    """The profile of one stage: :func:`derive_profile` at the description's :func:`batch_bounds`."""
    lo, opt, hi = batch_bounds(description)
    return derive_profile(onnx_path, min_batch=lo, opt_batch=opt, max_batch=hi)


def check_against_config(stage: str, onnx_path, config) -> None:
    """Raise where the ONNX model would not serve the GPU ``ModelConfig``: other tensor names, or another resolution.

    ``config`` is the stage's ``model_config_pb2.ModelConfig`` (``to_model_config(description, "gpu")``).
    Inputs and outputs are both compared (per item, batch dim dropped), since
    some stages show the resolution only in their outputs; ONNX dims that are
    symbolic are not compared.
    """
    model = load_graph(onnx_path)
    problems = []
    for kind, onnx_dims, tensors in (("inputs", onnx_input_dims(model), config.input),
                                     ("outputs", onnx_output_dims(model), config.output)):
        wanted = {t.name: tuple(t.dims) for t in tensors}
        if set(onnx_dims) != set(wanted):
            raise ValueError(f"{stage}: ONNX {kind} {sorted(onnx_dims)} != GPU config {kind} {sorted(wanted)}; "
                             "Triton's TensorRT backend refuses a plan whose tensors differ from its config")
        for name, dims in onnx_dims.items():
            item = dims[1:]
            if len(item) != len(wanted[name]) or any(
                    isinstance(a, int) and a > 0 and b > 0 and a != b for a, b in zip(item, wanted[name])):
                problems.append(f"{name}: ONNX {tuple(item)} vs config {wanted[name]}")
    if problems:
        raise ValueError(f"{stage}: the ONNX was exported for other shapes than the GPU config expects "
                         f"({', '.join(problems)}); "
                         "re-export at the GPU resolution, e.g. `python -m bodydance_export --resolution 512 "
                         "--repository <dir>`, and pass that dir as --cpu-repository")


def exported_resolution(contract: StageContract, onnx_path, default: int = 256) -> int:
    """The working resolution ``N`` an ONNX stage was exported at, read off a contract tensor with an "N" dim."""
    model = load_graph(onnx_path)
    dims = {**onnx_input_dims(model), **onnx_output_dims(model)}
    for spec in contract.inputs + contract.outputs:
        if spec.name in dims and "N" in spec.shape:
            value = dims[spec.name][1 + spec.shape.index("N")]
            if isinstance(value, int) and value > 0:
                return value
    return default
