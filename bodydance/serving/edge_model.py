"""Triton python-backend model for the edges of the ensembles (numpy only; both profiles, on CPU).

``frame_guard`` (first step of ``bodydance_frame``): every request tensor against its valid range
in the contract (:func:`bodydance_client.contract.range_problem`: NaN, infinity, out-of-range
poses, translations, camera, betas, style codes, depth, part labels). A request that breaks one is
answered INVALID_ARGUMENT naming the tensor and the range, on its own: the requests dynamic
batching put beside it go on. Good requests get their small tensors back as ``checked_<name>``,
which ``body_geometry`` reads, so no stage model (ONNX Runtime or TensorRT plan) starts before
the check passed.

``subject_outputs`` (last step of ``bodydance_subject``): hands every subject tensor on, so that
whichever outputs a request asks for were made by the last step (see ``contract.SUBJECT_OUTPUTS``).
"""

from __future__ import annotations

import json

import triton_python_backend_utils as pb_utils

from bodydance_client import contract as C
from bodydance_client.errors import InvalidRequestError, tag

# model name -> (input name, output name) pairs it hands on
_PASSED = {
    C.FRAME_GUARD.name: [(o.name[len("checked_"):], o.name) for o in C.FRAME_GUARD.outputs],
    C.SUBJECT_OUTPUTS.name: [(C.staged(o).name, o.name) for o in C.SUBJECT_OUTPUTS.outputs],
}
_CHECKED = {C.FRAME_GUARD.name: [s for s in C.FRAME_GUARD.inputs], C.SUBJECT_OUTPUTS.name: []}


class TritonPythonModel:
    def initialize(self, args):
        name = json.loads(args["model_config"])["name"]
        self.passed = _PASSED[name]
        self.checked = _CHECKED[name]

    def execute(self, requests):
        return [self._one(r) for r in requests]

    def _one(self, request):
        for spec in self.checked:
            problem = C.range_problem(spec, pb_utils.get_input_tensor_by_name(request, spec.name).as_numpy())
            if problem is not None:
                return pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    tag(InvalidRequestError.kind, problem), pb_utils.TritonError.INVALID_ARG))
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor(out, pb_utils.get_input_tensor_by_name(request, name).as_numpy())
            for name, out in self.passed])
