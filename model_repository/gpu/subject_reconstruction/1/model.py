# Generated: the model's code lives in the bodydance package.
from bodydance.serving.reconstruction_model import TritonPythonModel  # noqa: F401
