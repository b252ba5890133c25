"""Triton python-backend model for stage 1, subject side: photo -> fitted body, mask, camera.

Input errors come back as INVALID_ARGUMENT with a ``[kind]`` tag the client
turns into a typed exception; the model stays loaded for the next request.
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from bodydance_client.contract import SUBJECT_RECONSTRUCTION
from bodydance_client.errors import BodyDanceError, tag


class TritonPythonModel:
    def initialize(self, args):
        from bodydance.stages.reconstruction.subject import Reconstructor

        config = json.loads(args["model_config"])
        self.resolution = int(config["output"][0]["dims"][-1])
        self.reconstructor = Reconstructor(resolution=self.resolution)

    def execute(self, requests):
        return [self._one(r) for r in requests]

    def _one(self, request):
        photo = pb_utils.get_input_tensor_by_name(request, "photo").as_numpy()[0]
        try:
            result = self.reconstructor(photo)
        except BodyDanceError as err:
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(tag(err.kind, str(err)), pb_utils.TritonError.INVALID_ARG))
        tensors = [pb_utils.Tensor(spec.name, np.ascontiguousarray(getattr(result, spec.name)[None], dtype=spec.dtype))
                   for spec in SUBJECT_RECONSTRUCTION.outputs]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def finalize(self):
        close = getattr(self.reconstructor, "close", None)
        if close:
            close()
