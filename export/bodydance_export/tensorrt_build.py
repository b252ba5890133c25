"""Last export hop: ONNX -> TensorRT FP16 engine (``model.plan``), built on the GPU that serves it.

Plans are tied to the GPU architecture and the TensorRT version, so they are
never committed: ``docker-compose.yml``'s one-shot ``engine-builder`` service
runs this module on the serving host before ``triton`` starts::

    PYTHONPATH=export:client python -m bodydance_export.tensorrt_build \\
        --cpu-repository model_repository/cpu --gpu-repository model_repository/gpu

It reads ``<cpu>/<stage>/1/model.onnx`` for every stage in
:data:`bodydance_client.contract.ONNX_STAGES` and writes
``<gpu>/<stage>/1/model.plan``, with one optimisation profile whose batch
bounds come from the stage's generated ``config.pbtxt`` (frame-path stages
1..8, subject-side stages 1..1). Layers whose sums overflow half precision
(reductions, normalisations, softmax) are pinned to FP32. Where ONNX Runtime
is importable each plan is then run against the ONNX model on the same inputs
(polygraphy when installed, else the TensorRT runtime directly).

TensorRT is imported lazily: it installs only on an NVIDIA GPU host, so where
it is missing :class:`TensorRTUnavailableError` says so and the command line
exits with :data:`EXIT_NO_TENSORRT` (3). Nothing here needs torch.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import dataclasses
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from bodydance_client.contract import MAX_FRAME_BATCH, ONNX_STAGES, StageContract

EXIT_OK = 0
EXIT_BUILD_FAILED = 1
EXIT_NO_TENSORRT = 3
EXIT_PARITY_FAILED = 4

# TensorRT layer types kept in FP32 inside FP16 engines: their accumulations
# (sums over a whole image, variance, exp-normalisation) exceed FP16's 65504
# or lose the small differences that matter. Matched case-insensitively as
# substrings of the layer type name (``LayerType.REDUCE`` -> "REDUCE").
DEFAULT_FP32_LAYER_PATTERNS: Tuple[str, ...] = ("REDUCE", "NORMALIZATION", "SOFTMAX", "CUMULATIVE")

DEFAULT_TIMING_CACHE = Path("build/tensorrt/timing.cache")

TENSORRT_MISSING_MESSAGE = (
    "TensorRT is not available here. TensorRT is only installable on an NVIDIA GPU host: from NVIDIA's own "
    "Python package index (the `tensorrt` package on PyPI only fetches its libraries from there) or inside "
    "an NGC container (nvcr.io/nvidia/tensorrt, nvcr.io/nvidia/tritonserver). On the GPU host run "
    "`docker-compose up engine-builder`. The cpu profile (ONNX Runtime) does not need TensorRT.")


class TensorRTUnavailableError(RuntimeError):
    """TensorRT (which only installs on an NVIDIA GPU host) is needed for this step and is missing."""


class ParityError(RuntimeError):
    """A built plan disagrees with ONNX Runtime beyond the tolerance."""


def import_tensorrt():
    """The ``tensorrt`` module, or :class:`TensorRTUnavailableError` with what to do about it."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as err:  # OSError: the wheel is there but libnvinfer is not
        raise TensorRTUnavailableError(f"{TENSORRT_MISSING_MESSAGE} ({type(err).__name__}: {err})") from err
    return trt


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


# --- optimisation profile from the ONNX inputs ------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ProfileShape:
    """min / opt / max shape of one engine input; only the batch (first) dimension varies."""

    name: str
    min: Tuple[int, ...]
    opt: Tuple[int, ...]
    max: Tuple[int, ...]

    @property
    def item_shape(self) -> Tuple[int, ...]:
        return self.max[1:]


def _load_onnx(model_or_path):
    import onnx

    if isinstance(model_or_path, (str, os.PathLike)):
        # The graph's inputs are all we read; leave external weight files alone.
        return onnx.load(str(model_or_path), load_external_data=False)
    return model_or_path


def _dims(value) -> Tuple[object, ...]:
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                 for d in value.type.tensor_type.shape.dim)


def onnx_input_dims(model_or_path) -> Dict[str, Tuple[object, ...]]:
    """Graph inputs (initializers excluded) -> dims: an int when static, the symbol (or None) when dynamic."""
    model = _load_onnx(model_or_path)
    initializers = {init.name for init in model.graph.initializer}
    return {v.name: _dims(v) for v in model.graph.input if v.name not in initializers}


def onnx_output_dims(model_or_path) -> Dict[str, Tuple[object, ...]]:
    """Graph outputs -> dims, as :func:`onnx_input_dims`."""
    return {v.name: _dims(v) for v in _load_onnx(model_or_path).graph.output}


def derive_profile(model_or_path, *, min_batch: int, opt_batch: int, max_batch: int) -> List[ProfileShape]:
    """One :class:`ProfileShape` per ONNX input: the ONNX shape with its first dim set to min/opt/max batch.

    Every other dimension must be static: the working resolution is fixed at
    export time, and an engine built for a range of resolutions would be slower.
    """
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise ValueError(f"need 1 <= min_batch <= opt_batch <= max_batch, got {min_batch}, {opt_batch}, {max_batch}")
    is_path = isinstance(model_or_path, (str, os.PathLike))
    label = Path(model_or_path).name if is_path else (model_or_path.graph.name or "model")
    profile = []
    for tensor, dims in onnx_input_dims(model_or_path).items():
        if not dims:
            raise ValueError(f"{label}: input {tensor!r} is a scalar; every input needs a batch dimension")
        batch, rest = dims[0], dims[1:]
        if isinstance(batch, int) and batch > 0 and not min_batch == max_batch == batch:
            raise ValueError(f"{label}: input {tensor!r} has a fixed batch dimension of {batch}, but the profile "
                             f"needs {min_batch}..{max_batch}; export with a dynamic first dimension")
        for axis, d in enumerate(rest, start=1):
            if not isinstance(d, int) or d <= 0:
                raise ValueError(f"{label}: input {tensor!r} has a dynamic non-batch dimension {axis} ({d!r}); "
                                 "the resolution is fixed at export time")
        rest = tuple(int(d) for d in rest)
        profile.append(ProfileShape(tensor, (min_batch, *rest), (opt_batch, *rest), (max_batch, *rest)))
    if not profile:
        raise ValueError(f"{label}: the ONNX graph has no inputs")
    return profile


def batch_bounds(contract: StageContract, config_max_batch: Optional[int] = None) -> Tuple[int, int, int]:
    """(min, opt, max) batch for a stage: frame-path stages 1..MAX_FRAME_BATCH (opt 4), subject-side 1..1.

    ``config_max_batch`` (the stage's ``max_batch_size`` in its generated
    config.pbtxt) wins where given, so the plan always covers what Triton sends.
    """
    top = MAX_FRAME_BATCH if contract.frame_path else 1
    if config_max_batch is not None and config_max_batch > 0:
        top = config_max_batch
    return 1, min(4, top), top


# --- which layers stay FP32 --------------------------------------------------------------------------

def layer_type_name(layer_or_type) -> str:
    """"REDUCE" for a layer of type ``trt.LayerType.REDUCE`` (or for the type itself, or its str())."""
    kind = getattr(layer_or_type, "type", layer_or_type)
    name = getattr(kind, "name", None) or str(kind)
    return name.rsplit(".", 1)[-1].upper()


def matches_fp32_pattern(type_name: str, patterns: Iterable[str] = DEFAULT_FP32_LAYER_PATTERNS) -> bool:
    name = layer_type_name(type_name) if not isinstance(type_name, str) else type_name.rsplit(".", 1)[-1].upper()
    return any(p.upper() in name for p in patterns if p)


def _pin_fp32_layers(trt, network, patterns: Sequence[str]) -> List[str]:
    """Set precision and output types to FP32 on matching layers with floating outputs; returns their names."""
    floating = {trt.float32, trt.float16}
    pinned = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if not matches_fp32_pattern(layer_type_name(layer), patterns):
            continue
        outputs = [layer.get_output(k) for k in range(layer.num_outputs)]
        # Integer reductions (argmax, max of labels) have no precision to pin; TensorRT would reject it.
        if not outputs or any(t.dtype not in floating for t in outputs):
            continue
        layer.precision = trt.float32
        for k in range(layer.num_outputs):
            layer.set_output_type(k, trt.float32)
        if hasattr(layer, "compute_precision"):  # INormalizationLayer (TensorRT >= 8.6)
            layer.compute_precision = trt.float32
        pinned.append(layer.name)
    return pinned


# --- the build ---------------------------------------------------------------------------------------

def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def build_engine(onnx_path, plan_path, *, min_batch: int, opt_batch: int, max_batch: int, fp16: bool = True,
                 timing_cache_path=None, fp32_layer_patterns: Sequence[str] = DEFAULT_FP32_LAYER_PATTERNS,
                 workspace_gib: float = 4.0, verbose: bool = False) -> Dict[str, object]:
    """Parse ``onnx_path``, build a serialized engine and write it (atomically) to ``plan_path``.

    One optimisation profile: each input's ONNX shape with the batch dimension
    set to ``min_batch`` / ``opt_batch`` / ``max_batch``. With ``fp16`` the
    builder may use half precision everywhere except layers whose type matches
    ``fp32_layer_patterns`` (kept FP32 under OBEY_PRECISION_CONSTRAINTS). The
    timing cache at ``timing_cache_path`` is read when present and written
    back, so rebuilds on the same GPU skip most kernel timing.
    """
    trt = import_tensorrt()
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"{onnx_path} is missing; export the stages first (python -m bodydance_export)")
    profile_shapes = derive_profile(onnx_path, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch)

    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    load_plugins(trt, logger)
    builder = trt.Builder(logger)
    flags = 0
    if tensorrt_major(trt) < 10:  # TensorRT 10 networks are always explicit-batch; 8.x must ask for it
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx_path}: TensorRT could not parse the ONNX model: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    profile = builder.create_optimization_profile()
    for shape in profile_shapes:
        profile.set_shape(shape.name, shape.min, shape.opt, shape.max)
    config.add_optimization_profile(profile)

    pinned: List[str] = []
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
        if fp32_layer_patterns:
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
            pinned = _pin_fp32_layers(trt, network, fp32_layer_patterns)

    timing_cache = None
    if timing_cache_path is not None:
        timing_cache_path = Path(timing_cache_path)
        blob = timing_cache_path.read_bytes() if timing_cache_path.is_file() else b""
        timing_cache = config.create_timing_cache(blob)
        # A cache from another GPU or TensorRT version is ignored rather than trusted.
        config.set_timing_cache(timing_cache, ignore_mismatch=False)

    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{onnx_path}: the TensorRT engine build failed (see TensorRT's log above)")
    _atomic_write(plan_path, bytes(serialized))
    if timing_cache is not None:
        _atomic_write(timing_cache_path, bytes(config.get_timing_cache().serialize()))
    return {
        "onnx": str(onnx_path), "plan": str(plan_path), "tensorrt": str(trt.__version__),
        "precision": "fp16" if fp16 else "fp32", "batch": [min_batch, opt_batch, max_batch],
        "inputs": {s.name: list(s.item_shape) for s in profile_shapes},
        "layers": network.num_layers, "layers_pinned_fp32": len(pinned),
        "plan_bytes": plan_path.stat().st_size, "build_seconds": round(time.perf_counter() - started, 2),
    }


# --- parity: plan vs ONNX Runtime ---------------------------------------------------------------------

class CudaError(RuntimeError):
    pass


def _cudart_candidates() -> List[str]:
    names = []
    found = ctypes.util.find_library("cudart")
    if found:
        names.append(found)
    names += ["libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"]
    roots = [os.environ.get("CUDA_HOME", ""), "/usr/local/cuda"]
    names += [str(Path(r) / "lib64" / "libcudart.so") for r in roots if r]
    import site
    import sysconfig

    for sp in {sysconfig.get_paths()["purelib"], *getattr(site, "getsitepackages", lambda: [])()}:
        for pattern in ("nvidia/cuda_runtime/lib/libcudart.so*", "nvidia/cu*/lib/libcudart.so*"):
            names += sorted(str(p) for p in Path(sp).glob(pattern))
    return names


class CudaRuntime:
    """The few CUDA runtime calls the parity check needs, through ctypes (no pycuda / cuda-python needed)."""

    H2D, D2H = 1, 2  # cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost

    def __init__(self, library: Optional[str] = None):
        errors = []
        self._lib = None
        for name in [library] if library else _cudart_candidates():
            try:
                self._lib = ctypes.CDLL(name)
                break
            except OSError as err:
                errors.append(f"{name}: {err}")
        if self._lib is None:
            raise CudaError("libcudart could not be loaded: " + "; ".join(errors[-3:]))
        lib, vp, sz = self._lib, ctypes.c_void_p, ctypes.c_size_t
        lib.cudaGetDeviceCount.argtypes = [ctypes.POINTER(ctypes.c_int)]
        lib.cudaMalloc.argtypes = [ctypes.POINTER(vp), sz]
        lib.cudaFree.argtypes = [vp]
        lib.cudaMemcpy.argtypes = [vp, vp, sz, ctypes.c_int]
        lib.cudaStreamCreate.argtypes = [ctypes.POINTER(vp)]
        lib.cudaStreamSynchronize.argtypes = [vp]
        lib.cudaStreamDestroy.argtypes = [vp]
        lib.cudaGetErrorString.argtypes = [ctypes.c_int]
        lib.cudaGetErrorString.restype = ctypes.c_char_p
        for fn in ("cudaGetDeviceCount", "cudaMalloc", "cudaFree", "cudaMemcpy", "cudaStreamCreate",
                   "cudaStreamSynchronize", "cudaStreamDestroy"):
            getattr(lib, fn).restype = ctypes.c_int

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            text = self._lib.cudaGetErrorString(status)
            raise CudaError(f"{what} failed: CUDA error {status} ({text.decode() if text else '?'})")

    def device_count(self) -> int:
        count = ctypes.c_int(0)
        status = self._lib.cudaGetDeviceCount(ctypes.byref(count))
        return count.value if status == 0 else 0

    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self._check(self._lib.cudaMalloc(ctypes.byref(ptr), max(int(nbytes), 1)), f"cudaMalloc({nbytes})")
        return int(ptr.value)

    def free(self, ptr: int) -> None:
        self._check(self._lib.cudaFree(ctypes.c_void_p(ptr)), "cudaFree")

    def to_device(self, ptr: int, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        self._check(self._lib.cudaMemcpy(ctypes.c_void_p(ptr), ctypes.c_void_p(array.ctypes.data),
                                         array.nbytes, self.H2D), "cudaMemcpy host->device")

    def to_host(self, array: np.ndarray, ptr: int) -> None:
        if not array.flags.c_contiguous:
            raise ValueError("destination array must be C-contiguous")
        self._check(self._lib.cudaMemcpy(ctypes.c_void_p(array.ctypes.data), ctypes.c_void_p(ptr),
                                         array.nbytes, self.D2H), "cudaMemcpy device->host")

    def stream_create(self) -> int:
        stream = ctypes.c_void_p()
        self._check(self._lib.cudaStreamCreate(ctypes.byref(stream)), "cudaStreamCreate")
        return int(stream.value or 0)

    def stream_synchronize(self, stream: int) -> None:
        self._check(self._lib.cudaStreamSynchronize(ctypes.c_void_p(stream)), "cudaStreamSynchronize")

    def stream_destroy(self, stream: int) -> None:
        self._check(self._lib.cudaStreamDestroy(ctypes.c_void_p(stream)), "cudaStreamDestroy")


def gpu_available() -> bool:
    try:
        return CudaRuntime().device_count() > 0
    except CudaError:
        return False


def run_plan_with_tensorrt(plan_bytes: bytes, inputs: Mapping[str, np.ndarray], *, trt=None,
                           cuda: Optional[CudaRuntime] = None) -> Dict[str, np.ndarray]:
    """Run a serialized engine once with the TensorRT 10 runtime (named tensors, ``execute_async_v3``).

    Device buffers come from :class:`CudaRuntime`; inputs are cast to the
    engine's input dtypes; outputs come back as numpy arrays of the shapes the
    context reports once every input shape is set.
    """
    trt = trt if trt is not None else import_tensorrt()
    cuda = cuda if cuda is not None else CudaRuntime()
    logger = trt.Logger(trt.Logger.WARNING)
    load_plugins(trt, logger)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(plan_bytes)
    if engine is None:
        raise RuntimeError("TensorRT could not deserialize the plan (built by another TensorRT version or GPU?)")
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    input_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    output_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
    missing = [n for n in input_names if n not in inputs]
    if missing:
        raise KeyError(f"the engine needs inputs {missing}; got {sorted(inputs)}")

    allocations: List[int] = []
    stream = cuda.stream_create()
    try:
        for name in input_names:
            host = np.ascontiguousarray(inputs[name], dtype=np.dtype(trt.nptype(engine.get_tensor_dtype(name))))
            if not context.set_input_shape(name, tuple(host.shape)):
                raise ValueError(f"input {name!r}: shape {host.shape} is outside the plan's optimisation profile")
            ptr = cuda.malloc(host.nbytes)
            allocations.append(ptr)
            cuda.to_device(ptr, host)
            context.set_tensor_address(name, ptr)
        results: Dict[str, Tuple[np.ndarray, int]] = {}
        for name in output_names:
            shape = tuple(int(d) for d in context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise RuntimeError(f"output {name!r} has a data-dependent shape {shape}; not supported here")
            host = np.empty(shape, dtype=np.dtype(trt.nptype(engine.get_tensor_dtype(name))))
            ptr = cuda.malloc(host.nbytes)
            allocations.append(ptr)
            context.set_tensor_address(name, ptr)
            results[name] = (host, ptr)
        if not context.execute_async_v3(stream):
            raise RuntimeError("TensorRT execute_async_v3 failed (see TensorRT's log above)")
        cuda.stream_synchronize(stream)
        for host, ptr in results.values():
            cuda.to_host(host, ptr)
        return {name: host for name, (host, _) in results.items()}
    finally:
        for ptr in allocations:
            cuda.free(ptr)
        cuda.stream_destroy(stream)


def run_plan(plan_path, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Run a plan once: polygraphy's TrtRunner when importable, else :func:`run_plan_with_tensorrt`."""
    plan_bytes = Path(plan_path).read_bytes()
    try:
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner
    except ImportError:
        return run_plan_with_tensorrt(plan_bytes, inputs)
    with TrtRunner(EngineFromBytes(plan_bytes)) as runner:
        outputs = runner.infer(feed_dict=dict(inputs))
    return {name: np.asarray(value) for name, value in outputs.items()}


@dataclasses.dataclass(frozen=True)
class ParityTolerance:
    """Floats: ``|plan - onnx| <= atol + rtol |onnx|`` on at least ``min_fraction`` of the elements
    (uint8 images compared on the [0, 1] scale). Integer labels: equal on ``min_label_fraction``
    (FP16 moves a few label borders by a pixel)."""

    atol: float = 2.0 / 255
    rtol: float = 1e-2
    min_fraction: float = 0.99
    min_label_fraction: float = 0.99


FP16_PARITY = ParityTolerance()
FP32_PARITY = ParityTolerance(atol=1e-3, rtol=1e-3, min_fraction=0.999, min_label_fraction=0.999)


def compare_outputs(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray],
                    tol: ParityTolerance) -> Dict[str, Dict[str, float]]:
    """Per output: fraction within tolerance, max |error|, and whether it passes. Raises on a shape mismatch."""
    report = {}
    for name, ref in reference.items():
        if name not in candidate:
            raise ParityError(f"output {name!r} is missing from the plan's outputs {sorted(candidate)}")
        cand = np.asarray(candidate[name])
        if cand.shape != ref.shape:
            raise ParityError(f"output {name!r}: plan shape {cand.shape} != ONNX Runtime shape {ref.shape}")
        scale = 1.0 / 255 if ref.dtype == np.uint8 else 1.0
        r, c = ref.astype(np.float64) * scale, cand.astype(np.float64) * scale
        err = np.abs(r - c)
        labels = np.issubdtype(ref.dtype, np.integer) and ref.dtype != np.uint8
        # NaN or inf in the plan's output compares False, so it counts as a miss.
        ok = (err == 0) if labels else (err <= tol.atol + tol.rtol * np.abs(r))
        fraction = float(ok.mean()) if ok.size else 1.0
        need = tol.min_label_fraction if labels else tol.min_fraction
        report[name] = {"fraction": fraction, "max_abs_error": float(err.max()) if err.size else 0.0,
                        "needed": need, "ok": fraction >= need}
    return report


def check_plan_against_onnx(plan_path, onnx_path, inputs: Mapping[str, np.ndarray],
                            tol: ParityTolerance = FP16_PARITY) -> Dict[str, Dict[str, float]]:
    """Run the plan and ONNX Runtime (CPU) on the same inputs; :class:`ParityError` past ``tol``.

    Needs TensorRT, a CUDA GPU and onnxruntime; only the inputs the ONNX graph
    declares are fed to either side.
    """
    from bodydance_export.onnx_runtime import onnx_input_names, run_onnxruntime

    feed = {name: np.asarray(inputs[name]) for name in onnx_input_names(onnx_path)}
    report = compare_outputs(run_onnxruntime(onnx_path, feed), run_plan(plan_path, feed), tol)
    bad = {k: v for k, v in report.items() if not v["ok"]}
    if bad:
        detail = ", ".join(f"{k}: {v['fraction']:.3%} within tolerance (need {v['needed']:.1%}), "
                           f"max |err| {v['max_abs_error']:.3g}" for k, v in bad.items())
        raise ParityError(f"{Path(plan_path)}: TensorRT disagrees with ONNX Runtime: {detail}")
    return report


# --- the model repository -----------------------------------------------------------------------------

def _blocks(text: str, keyword: str) -> List[str]:
    """Bodies of the top-level ``keyword { ... }`` blocks of a protobuf text file (nesting respected)."""
    text = re.sub(r"#[^\n]*", "", text)
    bodies, depth, i = [], 0, 0
    while i < len(text):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif depth == 0:
            m = re.match(rf"{keyword}\s*:?\s*{{", text[i:])
            if m and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
                start = i + m.end()
                level, j = 1, start
                while j < len(text) and level:
                    level += {"{": 1, "}": -1}.get(text[j], 0)
                    j += 1
                bodies.append(text[start:j - 1])
                i = j
                continue
        i += 1
    return bodies


@dataclasses.dataclass(frozen=True)
class ConfigTensors:
    """What the engine build needs from a generated ``config.pbtxt``: batch bound and per-item dims."""

    max_batch_size: Optional[int]
    inputs: Dict[str, Tuple[int, ...]]
    outputs: Dict[str, Tuple[int, ...]]


def read_config(config_text: str) -> ConfigTensors:
    """Parse the fields of a generated ``config.pbtxt`` that a plan must agree with."""
    top = re.sub(r"#[^\n]*", "", config_text)
    while re.search(r"\{[^{}]*\}", top):  # drop nested blocks, innermost first, to read top-level fields
        top = re.sub(r"\{[^{}]*\}", "", top)
    m = re.search(r"\bmax_batch_size\s*:\s*(-?\d+)", top)

    def tensors(keyword):
        found = {}
        for body in _blocks(config_text, keyword):
            name = re.search(r'\bname\s*:\s*"([^"]+)"', body)
            if name:
                found[name.group(1)] = tuple(int(d) for d in re.findall(r"\bdims\s*:\s*(-?\d+)", body))
        return found

    return ConfigTensors(int(m.group(1)) if m else None, tensors("input"), tensors("output"))


def check_against_config(stage: str, onnx_path, config: ConfigTensors) -> None:
    """Raise where the ONNX model would not serve the GPU config: other tensor names, or another resolution.

    Inputs and outputs are both compared (per item, batch dim dropped), since
    some stages show the resolution only in their outputs; ONNX dims that are
    symbolic are not compared.
    """
    model = _load_onnx(onnx_path)
    problems = []
    for kind, onnx_dims, wanted in (("inputs", onnx_input_dims(model), config.inputs),
                                    ("outputs", onnx_output_dims(model), config.outputs)):
        if set(onnx_dims) != set(wanted):
            raise ValueError(f"{stage}: ONNX {kind} {sorted(onnx_dims)} != config.pbtxt {kind} {sorted(wanted)}; "
                             "Triton's TensorRT backend refuses a plan whose tensors differ from its config")
        for name, dims in onnx_dims.items():
            item = dims[1:]
            if len(item) != len(wanted[name]) or any(
                    isinstance(a, int) and a > 0 and b > 0 and a != b for a, b in zip(item, wanted[name])):
                problems.append(f"{name}: ONNX {tuple(item)} vs config {wanted[name]}")
    if problems:
        raise ValueError(f"{stage}: the ONNX was exported for other shapes than the GPU config expects "
                         f"({', '.join(problems)}); "
                         "re-export at the GPU resolution, e.g. `python -m bodydance_export --resolution 512 "
                         "--repository <dir>`, and pass that dir as --cpu-repository")


def exported_resolution(contract: StageContract, onnx_path, default: int = 256) -> int:
    """The working resolution ``N`` an ONNX stage was exported at, read off a contract tensor with an "N" dim."""
    dims = {**onnx_input_dims(onnx_path), **onnx_output_dims(onnx_path)}
    for spec in contract.inputs + contract.outputs:
        if spec.name in dims and "N" in spec.shape:
            value = dims[spec.name][1 + spec.shape.index("N")]
            if isinstance(value, int) and value > 0:
                return value
    return default


def _parity_possible() -> Tuple[bool, str]:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False, "onnxruntime is not installed"
    if not gpu_available():
        return False, "no CUDA GPU is visible"
    return True, ""


def build_repository(cpu_repo_dir, gpu_repo_dir, *, stages: Optional[Sequence[str]] = None,
                     timing_cache_path=DEFAULT_TIMING_CACHE, parity: str = "auto", workspace_gib: float = 4.0,
                     fp32_layer_patterns: Sequence[str] = DEFAULT_FP32_LAYER_PATTERNS, seed: int = 7,
                     log=print) -> List[Dict[str, object]]:
    """Build ``<gpu>/<stage>/1/model.plan`` from ``<cpu>/<stage>/1/model.onnx`` for every ONNX stage.

    ``parity``: "auto" checks each plan against ONNX Runtime where onnxruntime
    and a GPU are present, "on" insists, "off" skips. Stages in
    :data:`bodydance_export.precision.FP32_STAGES` are built in FP32.
    """
    if parity not in ("auto", "on", "off"):
        raise ValueError(f"parity must be auto, on or off, not {parity!r}")
    from bodydance_export.precision import FP32_STAGES

    cpu_repo_dir, gpu_repo_dir = Path(cpu_repo_dir), Path(gpu_repo_dir)
    known = {c.name: c for c in ONNX_STAGES}
    chosen = list(stages) if stages else list(known)
    unknown = [s for s in chosen if s not in known]
    if unknown:
        raise ValueError(f"unknown stages {unknown}; the ONNX stages are {sorted(known)}")
    missing = [str(cpu_repo_dir / s / "1" / "model.onnx") for s in chosen
               if not (cpu_repo_dir / s / "1" / "model.onnx").is_file()]
    if missing:
        raise FileNotFoundError("ONNX models missing: " + ", ".join(missing)
                                + "; export them first (python -m bodydance_export --resolution 512 --repository DIR)")
    import_tensorrt()
    do_parity = parity == "on"
    if parity == "auto":
        do_parity, why = _parity_possible()
        if not do_parity:
            log(f"parity check skipped: {why}")
    if do_parity:
        from bodydance_export.sample_inputs import sample_inputs

    # Every ONNX against its generated config first, so a wrong export fails in seconds, not after builds.
    config_max_batch: Dict[str, Optional[int]] = {}
    for name in chosen:
        config_path = gpu_repo_dir / name / "config.pbtxt"
        if config_path.is_file():
            config = read_config(config_path.read_text())
            check_against_config(name, cpu_repo_dir / name / "1" / "model.onnx", config)
            config_max_batch[name] = config.max_batch_size

    reports = []
    for name in chosen:
        contract = known[name]
        onnx_path = cpu_repo_dir / name / "1" / "model.onnx"
        plan_path = gpu_repo_dir / name / "1" / "model.plan"
        lo, opt, hi = batch_bounds(contract, config_max_batch.get(name))
        fp16 = name not in FP32_STAGES
        log(f"{name}: building {'FP16' if fp16 else 'FP32'} plan, batch {lo}..{hi} (opt {opt}) ...")
        report = build_engine(onnx_path, plan_path, min_batch=lo, opt_batch=opt, max_batch=hi, fp16=fp16,
                              timing_cache_path=timing_cache_path, fp32_layer_patterns=fp32_layer_patterns,
                              workspace_gib=workspace_gib)
        report["stage"] = name
        if do_parity:
            inputs = sample_inputs(contract, exported_resolution(contract, onnx_path), batch=opt, seed=seed)
            try:
                report["parity_vs_onnxruntime"] = check_plan_against_onnx(
                    plan_path, onnx_path, inputs, FP16_PARITY if fp16 else FP32_PARITY)
            except ParityError as err:
                plan_path.unlink(missing_ok=True)  # never leave a wrong plan where Triton would load it
                raise ParityError(f"{err}; the plan was removed") from err
        log(json.dumps(report))
        reports.append(report)
    return reports


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bodydance_export.tensorrt_build",
        description="Build TensorRT FP16 plans for the ONNX stages on this GPU (never committed: tied to the "
                    "GPU architecture and TensorRT version).")
    parser.add_argument("--cpu-repository", "--onnx-repository", dest="cpu", type=Path,
                        default=Path("model_repository/cpu"), help="where <stage>/1/model.onnx are read")
    parser.add_argument("--gpu-repository", "--plan-repository", dest="gpu", type=Path,
                        default=Path("model_repository/gpu"), help="where <stage>/1/model.plan are written")
    parser.add_argument("--stages", default="", help="comma-separated subset of the ONNX stages (default: all)")
    parser.add_argument("--timing-cache", default=str(DEFAULT_TIMING_CACHE),
                        help="TensorRT timing cache to read and update ('' for none; default %(default)s)")
    parser.add_argument("--parity", choices=("auto", "on", "off"), default="auto",
                        help="compare each plan with ONNX Runtime (auto: where onnxruntime and a GPU are present)")
    parser.add_argument("--workspace-gib", type=float, default=4.0)
    parser.add_argument("--report", type=Path, help="also write the build reports here as JSON")
    args = parser.parse_args(argv)

    prog = "bodydance_export.tensorrt_build"
    try:
        import_tensorrt()
    except TensorRTUnavailableError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return EXIT_NO_TENSORRT
    try:
        reports = build_repository(
            args.cpu, args.gpu, stages=[s for s in args.stages.split(",") if s] or None,
            timing_cache_path=Path(args.timing_cache) if args.timing_cache else None,
            parity=args.parity, workspace_gib=args.workspace_gib)
    except ParityError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return EXIT_PARITY_FAILED
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return EXIT_BUILD_FAILED
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(reports, indent=2))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
