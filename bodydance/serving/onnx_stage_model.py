"""Triton python-backend model that runs one exported stage (``1/model.onnx``) in ONNX Runtime.

This is the ``cpu`` profile's stand-in for a TensorRT plan: same tensors, same
batching. Triton has already checked input names, dtypes and shapes against
the generated config; requests of a dynamic batch are concatenated, run once
and split back.
"""

from __future__ import annotations

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        if not os.path.exists(path):
            raise pb_utils.TritonModelException(
                f"{config['name']}: {path} is missing; run the export first (python -m bodydance_export)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "1"))
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        # A learned model may not read every contract input (the baselines do not): feed what it declares.
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o["name"] for o in config["output"]]

    def execute(self, requests):
        feeds = [{name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.input_names}
                 for r in requests]
        # A request holding NaN or inf is answered with its own error and left out of the batch, so
        # it cannot poison the requests dynamic batching put beside it.
        problems = [_non_finite(feed) for feed in feeds]
        good = [feed for feed, problem in zip(feeds, problems) if problem is None]
        outputs = self._run(good) if good else []
        responses, start = [], 0
        for feed, problem in zip(feeds, problems):
            if problem is not None:
                responses.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(problem, pb_utils.TritonError.INVALID_ARG)))
                continue
            size = next(iter(feed.values())).shape[0]
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(out[start:start + size]))
                       for name, out in zip(self.output_names, outputs)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses

    def _run(self, feeds):
        batch = {name: np.concatenate([f[name] for f in feeds]) if len(feeds) > 1 else feeds[0][name]
                 for name in self.input_names}
        return self.session.run(self.output_names, batch)


def _non_finite(feed):
    """A message naming the first float input that holds NaN or inf, or None."""
    for name, value in feed.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            return f"input '{name}' holds NaN or infinite values"
    return None
