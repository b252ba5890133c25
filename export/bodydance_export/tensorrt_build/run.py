"""Run a built plan once through polygraphy's ``TrtRunner`` and hold it against ONNX Runtime on the same inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Mapping, Tuple

import numpy as np

from bodydance_export.onnx_runtime import onnx_input_names, run_onnxruntime
from bodydance_export.parity import Tolerance, check_outputs
from bodydance_export.tensorrt_build.runtime import import_polygraphy_trt, import_tensorrt, load_plugins

# Plan vs ONNX Runtime. FP16: about two uint8 levels, 1 % relative, on 99 % of the elements (integer
# labels exact on 99 %: FP16 moves a few label borders by a pixel). Stages built in FP32 agree closer.
FP16_PARITY = Tolerance(atol=2.0 / 255, rtol=1e-2, min_fraction=0.99)
FP32_PARITY = Tolerance(atol=1e-3, rtol=1e-3, min_fraction=0.999)


def gpu_available() -> bool:
    """Whether polygraphy can place a byte on a CUDA GPU here (False without polygraphy, libcudart or a GPU)."""
    try:
        from polygraphy import cuda

        cuda.DeviceArray(shape=(1,), dtype=np.uint8).free()
    except Exception:  # ImportError, OSError (no libcudart), polygraphy's own error (no device)
        return False
    return True


def run_plan(plan_path, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Run a plan once with polygraphy's ``TrtRunner``; outputs as numpy arrays by tensor name.

    TensorRT's bundled plugins are registered before the plan is deserialized
    (a plan holding the z-buffer's ScatterElements plugin needs them).
    """
    trt = import_tensorrt()
    polygraphy_trt = import_polygraphy_trt()
    load_plugins(trt, trt.Logger(trt.Logger.WARNING))
    engine = polygraphy_trt.EngineFromBytes(Path(plan_path).read_bytes())
    with polygraphy_trt.TrtRunner(engine) as runner:
        outputs = runner.infer(feed_dict=dict(inputs))
    return {name: np.asarray(value) for name, value in outputs.items()}


def check_plan_against_onnx(plan_path, onnx_path, inputs: Mapping[str, np.ndarray],
                            tol: Tolerance = FP16_PARITY) -> Dict[str, Dict[str, float]]:
    """Run the plan and ONNX Runtime (CPU) on the same inputs; :class:`~bodydance_export.parity.ParityError` past ``tol``.

    Needs TensorRT, polygraphy, a CUDA GPU and onnxruntime; only the inputs the
    ONNX graph declares are fed to either side. Returns, per output, the fraction
    within tolerance, the largest error, the fraction needed and whether it passed.
    """
    feed = {name: np.asarray(inputs[name]) for name in onnx_input_names(onnx_path)}
    report = check_outputs(f"{Path(plan_path)}: TensorRT", "ONNX Runtime", run_onnxruntime(onnx_path, feed),
                           run_plan(plan_path, feed), tol)
    return {a.output: {"fraction": a.fraction, "max_abs_error": a.max_abs_error, "needed": tol.min_fraction,
                       "ok": a.fraction >= tol.min_fraction} for a in report}


def parity_possible() -> Tuple[bool, str]:
    """Whether :func:`check_plan_against_onnx` can run here, and if not, why."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False, "onnxruntime is not installed"
    try:
        import_polygraphy_trt()
    except RuntimeError:
        return False, "polygraphy is not installed (the gpu extra)"
    if not gpu_available():
        return False, "no CUDA GPU is visible"
    return True, ""
