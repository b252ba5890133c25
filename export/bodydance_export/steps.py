"""Export steps, one job each, each with an output that the next step (or a test) can check.

export_onnx -> cleanup_graph -> check_parity -> check_fp16 (-> tensorrt_build on a GPU host).
The comparisons themselves are :mod:`bodydance_export.parity`'s, shared with the TensorRT check.
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
from bodydance_export.parity import ParityError, Tolerance, check_outputs

# 18: ScatterElements with a max reduction (the mesh z-buffer). GridSample keeps its
# opset-16 mode names up to 19; opset 20 renames them and TensorRT then silently
# falls back to nearest.
ONNX_OPSET = 18


# The export's name for a parity failure (PyTorch vs ONNX Runtime, or vs half precision).
ExportCheckError = ParityError


# 5e-3: a third of a pixel of flow at 256 px and about one uint8 level. The flow past the body is a
# push-pull average over tens of pixels, so one edge tie that differs where the body passes through
# itself moves it by about 0.25 px (measured on the random sample poses).
ONNX_TOLERANCE = Tolerance(atol=5e-3, rtol=1e-3, min_fraction=0.999)
# Half precision: flow is in NDC (1 px = 2/N), images in [0, 1] or uint8 steps.
FP16_TOLERANCE = Tolerance(atol=2.0 / 256, rtol=1e-2, min_fraction=0.99)


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


def check_parity(module, contract, onnx_path: Path, inputs, tol: Tolerance = ONNX_TOLERANCE):
    """PyTorch FP32 vs ONNX Runtime on the same inputs; raises ExportCheckError past ``tol``."""
    report = check_outputs(f"ONNX Runtime ({onnx_path.name})", "PyTorch FP32", run_torch(module, contract, inputs),
                           run_onnxruntime(onnx_path, inputs), tol)
    return [dataclasses.asdict(a) for a in report]


def check_fp16(module, contract, inputs, tol: Tolerance = FP16_TOLERANCE, strict: bool = True):
    """The module in half precision vs FP32, so FP16 overflow shows up before any GPU build.

    ``strict=False`` measures without failing, for stages that are built in FP32.
    """
    reference = run_torch(module, contract, inputs)
    half = run_torch(module.half(), contract, inputs, dtype=torch.float16)
    module.float()
    report = check_outputs("FP16 PyTorch", "PyTorch FP32", reference, half, tol, strict)
    return [dataclasses.asdict(a) for a in report]
