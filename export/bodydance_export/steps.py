"""Export steps, one job each, each with an output that the next step (or a test) can check.

export_onnx -> cleanup_graph -> check_parity -> check_fp16 (-> tensorrt_build on a GPU host)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict

import numpy as np
import onnx
import torch

from bodydance_client.contract import StageContract
from bodydance_export.onnx_runtime import run_onnxruntime

# 18: ScatterElements with a max reduction (the mesh z-buffer). GridSample keeps its
# opset-16 mode names up to 19; opset 20 renames them and TensorRT then silently
# falls back to nearest.
ONNX_OPSET = 18


class ExportCheckError(RuntimeError):
    """An exported model disagrees with its PyTorch original beyond the stated tolerance."""


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Agreement needed between two runs of one output.

    Floats: ``|a - b| <= atol + rtol * |b|`` on at least ``min_fraction`` of the
    elements (the geometry has per-pixel ties on triangle edges, where a last
    ulp can flip a pixel). Integer outputs: exact on ``min_fraction``.
    """

    atol: float
    rtol: float
    min_fraction: float


# 5e-3: a third of a pixel of flow at 256 px and about one uint8 level. The flow past the body is a
# push-pull average over tens of pixels, so one edge tie that differs where the body passes through
# itself moves it by about 0.25 px (measured on the random sample poses).
ONNX_TOLERANCE = Tolerance(atol=5e-3, rtol=1e-3, min_fraction=0.999)
# Half precision: flow is in NDC (1 px = 2/N), images in [0, 1] or uint8 steps.
FP16_TOLERANCE = Tolerance(atol=2.0 / 256, rtol=1e-2, min_fraction=0.99)


@dataclasses.dataclass
class Agreement:
    output: str
    fraction: float
    max_abs_error: float


def compare(name: str, reference: np.ndarray, candidate: np.ndarray, tol: Tolerance) -> Agreement:
    if reference.shape != candidate.shape:
        raise ExportCheckError(f"{name}: shape {candidate.shape} != reference {reference.shape}")
    # uint8 images are compared on the [0, 1] scale the float tolerances speak.
    scale = 1.0 / 255.0 if reference.dtype == np.uint8 else 1.0
    ref = reference.astype(np.float64) * scale
    cand = candidate.astype(np.float64) * scale
    diff = np.abs(ref - cand)
    if np.issubdtype(reference.dtype, np.integer) and reference.dtype != np.uint8:
        ok = diff == 0
    else:
        ok = diff <= tol.atol + tol.rtol * np.abs(ref)
    return Agreement(name, float(ok.mean()) if ok.size else 1.0, float(diff.max()) if diff.size else 0.0)


def _torch_inputs(inputs: Dict[str, np.ndarray], dtype=None):
    tensors = []
    for value in inputs.values():
        t = torch.from_numpy(value)
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors.append(t)
    return tensors


def run_torch(module: torch.nn.Module, contract: StageContract, inputs: Dict[str, np.ndarray], dtype=None):
    with torch.no_grad():
        outs = module(*_torch_inputs(inputs, dtype))
    outs = outs if isinstance(outs, tuple) else (outs,)
    return {spec.name: o.float().numpy().astype(spec.dtype) if o.is_floating_point() else o.numpy()
            for spec, o in zip(contract.outputs, outs)}


def export_onnx(module: torch.nn.Module, contract: StageContract, example: Dict[str, np.ndarray], path: Path) -> Path:
    """PyTorch -> ONNX at the pinned opset, batch dimension dynamic, names from the contract."""
    path.parent.mkdir(parents=True, exist_ok=True)
    names_in = [s.name for s in contract.inputs]
    names_out = [s.name for s in contract.outputs]
    dynamic = {name: {0: "batch"} for name in names_in + names_out}
    torch.onnx.export(
        module.eval(), tuple(_torch_inputs(example)), str(path), input_names=names_in, output_names=names_out,
        dynamic_axes=dynamic, opset_version=ONNX_OPSET, dynamo=False, do_constant_folding=True)
    onnx.checker.check_model(str(path))
    return path


def cleanup_graph(path: Path) -> Dict[str, int]:
    """onnx-graphsurgeon: fold constants, drop dead nodes, sort. Returns node counts before/after."""
    import onnx_graphsurgeon as gs

    model = onnx.load(str(path))
    before = len(model.graph.node)
    graph = gs.import_onnx(model)
    graph.fold_constants().cleanup().toposort()
    cleaned = gs.export_onnx(graph)
    cleaned.opset_import[0].version = model.opset_import[0].version
    onnx.checker.check_model(cleaned)
    onnx.save(cleaned, str(path))
    return {"nodes_before": before, "nodes_after": len(cleaned.graph.node)}


def _check(label: str, reference, candidate, tol: Tolerance, strict: bool = True):
    report = [compare(name, reference[name], candidate[name], tol) for name in reference]
    failed = [a for a in report if a.fraction < tol.min_fraction]
    if failed and strict:
        worst = ", ".join(f"{a.output}: {a.fraction:.4%} within tolerance, max |err| {a.max_abs_error:.3g}" for a in failed)
        raise ExportCheckError(f"{label} disagrees with PyTorch FP32 ({worst}); needed {tol.min_fraction:.1%}")
    return [dataclasses.asdict(a) for a in report]


def check_parity(module, contract, onnx_path: Path, inputs, tol: Tolerance = ONNX_TOLERANCE):
    """PyTorch FP32 vs ONNX Runtime on the same inputs; raises ExportCheckError past ``tol``."""
    return _check(f"ONNX Runtime ({onnx_path.name})", run_torch(module, contract, inputs),
                  run_onnxruntime(onnx_path, inputs), tol)


def check_fp16(module, contract, inputs, tol: Tolerance = FP16_TOLERANCE, strict: bool = True):
    """The module in half precision vs FP32, so FP16 overflow shows up before any GPU build.

    ``strict=False`` measures without failing, for stages that are built in FP32.
    """
    reference = run_torch(module, contract, inputs)
    half = run_torch(module.half(), contract, inputs, dtype=torch.float16)
    module.float()
    return _check("FP16 PyTorch", reference, half, tol, strict)
