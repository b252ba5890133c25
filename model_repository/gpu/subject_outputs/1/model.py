# Generated: the model's code lives in the bodydance package.
from bodydance.serving.edge_model import TritonPythonModel  # noqa: F401
