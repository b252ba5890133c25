"""Run an exported ONNX file once in ONNX Runtime (no torch, so GPU build hosts can use it too)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np


def onnx_input_names(path: Path) -> list:
    """The inputs a model declares (its initializers excluded)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in initializers]


def run_onnxruntime(path: Path, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Feed the inputs the model declares (a baseline may ignore some contract inputs)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: inputs[i.name] for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feed)))
