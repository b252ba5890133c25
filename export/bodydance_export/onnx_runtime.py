"""Read an exported ONNX file's tensors, and run it once in ONNX Runtime (no torch, so GPU build hosts can use it too)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Tuple

import numpy as np


def load_graph(model_or_path):
    """An ONNX ModelProto as given, or loaded from a path without its external weight files (only the graph is read)."""
    import onnx

    if isinstance(model_or_path, (str, os.PathLike)):
        return onnx.load(str(model_or_path), load_external_data=False)
    return model_or_path


def _dims(value) -> Tuple[object, ...]:
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                 for d in value.type.tensor_type.shape.dim)


def onnx_input_dims(model_or_path) -> Dict[str, Tuple[object, ...]]:
    """Graph inputs (initializers excluded) -> dims: an int when static, the symbol (or None) when dynamic."""
    model = load_graph(model_or_path)
    initializers = {init.name for init in model.graph.initializer}
    return {v.name: _dims(v) for v in model.graph.input if v.name not in initializers}


def onnx_output_dims(model_or_path) -> Dict[str, Tuple[object, ...]]:
    """Graph outputs -> dims, as :func:`onnx_input_dims`."""
    return {v.name: _dims(v) for v in load_graph(model_or_path).graph.output}


def onnx_input_names(model_or_path) -> list:
    """The inputs a model declares (its initializers excluded)."""
    return list(onnx_input_dims(model_or_path))


def run_onnxruntime(path: Path, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Feed the inputs the model declares (a baseline may ignore some contract inputs)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: inputs[i.name] for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feed)))
