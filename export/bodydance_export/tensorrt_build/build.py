"""One engine build: ONNX -> serialized TensorRT plan, FP16 with the overflow-prone layers pinned to FP32."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

from bodydance_export.tensorrt_build.profiles import derive_profile
from bodydance_export.tensorrt_build.runtime import import_tensorrt, load_plugins, tensorrt_major

# TensorRT layer types kept in FP32 inside FP16 engines: their accumulations
# (sums over a whole image, variance, exp-normalisation) exceed FP16's 65504
# or lose the small differences that matter. Matched case-insensitively as
# substrings of the layer type name (``LayerType.REDUCE`` -> "REDUCE").
DEFAULT_FP32_LAYER_PATTERNS: Tuple[str, ...] = ("REDUCE", "NORMALIZATION", "SOFTMAX", "CUMULATIVE")

DEFAULT_TIMING_CACHE = Path("build/tensorrt/timing.cache")


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


def atomic_write(path: Path, data: bytes) -> None:
    """Write through a temporary file beside ``path``, so Triton never loads half a plan."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _parse(trt, builder, logger, onnx_path: Path):
    flags = 0
    if tensorrt_major(trt) < 10:  # TensorRT 10 networks are always explicit-batch; 8.x must ask for it
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx_path}: TensorRT could not parse the ONNX model: {errors}")
    return network, parser


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
    load_plugins(trt, logger)  # before parsing: the z-buffer's ScatterElements parses to a plugin
    builder = trt.Builder(logger)
    network, _parser = _parse(trt, builder, logger, onnx_path)  # the parser owns the weights until the build

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
    atomic_write(plan_path, bytes(serialized))
    if timing_cache is not None:
        atomic_write(timing_cache_path, bytes(config.get_timing_cache().serialize()))
    return {
        "onnx": str(onnx_path), "plan": str(plan_path), "tensorrt": str(trt.__version__),
        "precision": "fp16" if fp16 else "fp32", "batch": [min_batch, opt_batch, max_batch],
        "inputs": {s.name: list(s.item_shape) for s in profile_shapes},
        "layers": network.num_layers, "layers_pinned_fp32": len(pinned),
        "plan_bytes": plan_path.stat().st_size, "build_seconds": round(time.perf_counter() - started, 2),
    }
