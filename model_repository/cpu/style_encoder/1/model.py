# Generated: the model's code lives in the bodydance package.
from bodydance.serving.onnx_stage_model import TritonPythonModel  # noqa: F401
