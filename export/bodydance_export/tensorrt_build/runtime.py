"""The lazily imported GPU-only modules: TensorRT itself, its bundled plugins, and polygraphy's TensorRT backend."""

from __future__ import annotations

TENSORRT_MISSING_MESSAGE = (
    "TensorRT is not available here. TensorRT is only installable on an NVIDIA GPU host: from NVIDIA's own "
    "Python package index (the `tensorrt` package on PyPI only fetches its libraries from there) or inside "
    "an NGC container (nvcr.io/nvidia/tensorrt, nvcr.io/nvidia/tritonserver). On the GPU host run "
    "`docker-compose up engine-builder`. The cpu profile (ONNX Runtime) does not need TensorRT.")

POLYGRAPHY_MISSING_MESSAGE = (
    "polygraphy is needed to run a plan (the parity check); it is in the project's `gpu` extra "
    "(pip install 'polygraphy>=0.49'), or pass --parity off")


class TensorRTUnavailableError(RuntimeError):
    """TensorRT (which only installs on an NVIDIA GPU host) is needed for this step and is missing."""


def import_tensorrt():
    """The ``tensorrt`` module, or :class:`TensorRTUnavailableError` with what to do about it."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as err:  # OSError: the wheel is there but libnvinfer is not
        raise TensorRTUnavailableError(f"{TENSORRT_MISSING_MESSAGE} ({type(err).__name__}: {err})") from err
    return trt


def import_polygraphy_trt():
    """``polygraphy.backend.trt`` (EngineFromBytes, TrtRunner), or :class:`TensorRTUnavailableError`."""
    try:
        from polygraphy.backend import trt as polygraphy_trt
    except ImportError as err:
        raise TensorRTUnavailableError(f"{POLYGRAPHY_MISSING_MESSAGE} ({type(err).__name__}: {err})") from err
    return polygraphy_trt


def load_plugins(trt, logger) -> None:
    """Register TensorRT's bundled plugins: the mesh z-buffer's ScatterElements(reduction="max")
    parses to the ScatterElements plugin, and plans that hold it need it again to deserialize."""
    init = getattr(trt, "init_libnvinfer_plugins", None)
    if init is not None:
        init(logger, "")


def tensorrt_major(trt) -> int:
    try:
        return int(str(trt.__version__).split(".")[0])
    except (AttributeError, ValueError):
        return 0
