"""The TensorRT step: its pure parts here, its refusal where TensorRT is missing (it cannot be installed here)."""

import subprocess
import sys

import onnx
import pytest
from onnx import TensorProto, helper

from bodydance_export import tensorrt_build as tb


def _model(path, second_dim="N"):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", second_dim])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 3, 16, 16])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["z"])], "g", [x, y], [z])
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_profile_shapes_bound_only_the_batch(tmp_path):
    path = tmp_path / "m.onnx"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 16, 16])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 3, 16, 16])
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["z"])], "g", [x], [z])), str(path))
    (shape,) = tb.profile_shapes(path, 1, 4, 8)
    assert (shape.name, shape.min, shape.opt, shape.max) == ("x", (1, 3, 16, 16), (4, 3, 16, 16), (8, 3, 16, 16))
    with pytest.raises(ValueError, match="min <= opt <= max"):
        tb.profile_shapes(path, 4, 2, 8)


def test_dynamic_non_batch_dimensions_are_refused(tmp_path):
    with pytest.raises(ValueError, match="dynamic non-batch"):
        tb.profile_shapes(_model(tmp_path / "m.onnx"), 1, 1, 1)


def test_overflow_prone_layers_are_kept_fp32():
    assert tb.wants_fp32("LayerType.REDUCE") and tb.wants_fp32("LayerType.NORMALIZATION")
    assert not tb.wants_fp32("LayerType.CONVOLUTION")


def test_missing_tensorrt_is_a_clear_refusal_not_a_crash():
    pytest.importorskip("onnx")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here; the refusal path does not apply")
    except ImportError:
        pass
    run = subprocess.run([sys.executable, "-m", "bodydance_export.tensorrt_build"], capture_output=True, text=True)
    assert run.returncode == tb.EXIT_NO_TENSORRT
    assert "TensorRT is not installed" in run.stderr and "NVIDIA" in run.stderr
    assert "Traceback" not in run.stderr
