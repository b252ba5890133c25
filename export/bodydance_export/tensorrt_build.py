"""Last export step: ONNX -> TensorRT FP16 engine (``model.plan``), on the GPU that will serve it.

Plans are tied to the GPU architecture and TensorRT version, so they are never
committed; ``docker-compose.yml``'s ``engine-builder`` service runs this on the
serving host. TensorRT installs only from NVIDIA's own index or the NGC
containers: where it is missing this step says so and exits with code 3.

    python -m bodydance_export.tensorrt_build --onnx-repository model_repository/cpu \
        --plan-repository model_repository/gpu
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence, Tuple

import onnx

from bodydance_client.contract import MAX_FRAME_BATCH, ONNX_STAGES
from bodydance_export.precision import FP32_STAGES

EXIT_NO_TENSORRT = 3

# Layer types kept in FP32 inside FP16 engines: reductions and normalisations
# whose sums overflow FP16's 65504 (the export's FP16 check found one such sum).
FP32_LAYER_TYPES = ("REDUCE", "NORMALIZATION", "SOFTMAX", "MATRIX_MULTIPLY")


class TensorRTUnavailableError(RuntimeError):
    """TensorRT (and a CUDA GPU) is needed for this step and is not here."""


def import_tensorrt():
    try:
        import tensorrt as trt  # noqa: F401
    except ImportError as err:
        raise TensorRTUnavailableError(
            "TensorRT is not installed. It installs only on an NVIDIA GPU host, from NVIDIA's package index "
            "(pip install --extra-index-url https://pypi.nvidia.com tensorrt) or inside the NGC TensorRT / "
            "Triton containers; run `docker-compose up engine-builder` there. The ONNX models and the "
            "cpu profile do not need it.") from err
    return trt


@dataclasses.dataclass(frozen=True)
class ShapeProfile:
    """min/opt/max shape of one input; the batch dimension is the only dynamic one."""

    name: str
    min: Tuple[int, ...]
    opt: Tuple[int, ...]
    max: Tuple[int, ...]


def profile_shapes(onnx_path: Path, min_batch: int, opt_batch: int, max_batch: int) -> Sequence[ShapeProfile]:
    """Read the inputs' shapes from the ONNX file and bound the (dynamic) batch dimension."""
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise ValueError(f"need 1 <= min <= opt <= max batch, got {min_batch}, {opt_batch}, {max_batch}")
    model = onnx.load(str(onnx_path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    shapes = []
    for tensor in model.graph.input:
        if tensor.name in initializers:
            continue
        dims = tensor.type.tensor_type.shape.dim
        rest = []
        for d in dims[1:]:
            if not d.HasField("dim_value"):
                raise ValueError(f"{onnx_path.name}: input {tensor.name} has a dynamic non-batch dimension "
                                 f"({d.dim_param!r}); resolution is fixed at export time")
            rest.append(d.dim_value)
        shapes.append(ShapeProfile(tensor.name, (min_batch, *rest), (opt_batch, *rest), (max_batch, *rest)))
    return shapes


def wants_fp32(layer_type_name: str, patterns: Iterable[str] = FP32_LAYER_TYPES) -> bool:
    return any(p in layer_type_name.upper() for p in patterns)


def build_engine(onnx_path: Path, plan_path: Path, *, min_batch: int = 1, opt_batch: int = 4,
                 max_batch: int = MAX_FRAME_BATCH, fp16: bool = True, timing_cache_path: Optional[Path] = None,
                 fp32_layer_types: Sequence[str] = FP32_LAYER_TYPES, workspace_gib: float = 4.0) -> Dict:
    """Build and write one serialized engine; returns a small report."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx_path}: TensorRT could not parse the ONNX model: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
    profile = builder.create_optimization_profile()
    for shape in profile_shapes(onnx_path, min_batch, opt_batch, max_batch):
        profile.set_shape(shape.name, shape.min, shape.opt, shape.max)
    config.add_optimization_profile(profile)

    kept_fp32 = 0
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if wants_fp32(str(layer.type), fp32_layer_types):
                layer.precision = trt.float32
                for k in range(layer.num_outputs):
                    if layer.get_output(k).dtype in (trt.float32, trt.float16):
                        layer.set_output_type(k, trt.float32)
                kept_fp32 += 1

    cache = None
    if timing_cache_path is not None:
        blob = timing_cache_path.read_bytes() if timing_cache_path.exists() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)

    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{onnx_path}: TensorRT engine build failed (see the log above)")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_bytes(bytes(serialized))
    if cache is not None:
        timing_cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    return {"onnx": str(onnx_path), "plan": str(plan_path), "fp16": fp16, "layers_kept_fp32": kept_fp32,
            "batch": [min_batch, opt_batch, max_batch], "seconds": round(time.perf_counter() - started, 1),
            "tensorrt": trt.__version__}


def check_plan_against_onnx(plan_path: Path, onnx_path: Path, inputs: Dict, atol: float = 2e-2) -> Dict[str, float]:
    """Run the plan (polygraphy's TrtRunner) and ONNX Runtime on ``inputs``; max |diff| per output."""
    import numpy as np
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    from bodydance_export.onnx_runtime import run_onnxruntime

    reference = run_onnxruntime(onnx_path, inputs)
    with TrtRunner(EngineFromBytes(plan_path.read_bytes())) as runner:
        outputs = runner.infer(feed_dict=inputs)
    errors = {name: float(np.abs(np.asarray(outputs[name], np.float64) - ref.astype(np.float64)).max())
              for name, ref in reference.items()}
    bad = {k: v for k, v in errors.items() if v > atol}
    if bad:
        raise RuntimeError(f"{plan_path.name}: TensorRT disagrees with ONNX Runtime: {bad} (atol {atol})")
    return errors


def build_repository(onnx_repository: Path, plan_repository: Path, timing_cache: Optional[Path] = None,
                     check: bool = True) -> list:
    """Build a plan for every ONNX stage: frame-path stages batch 1..8, subject-side ones batch 1."""
    from bodydance_export.sample_inputs import sample_inputs

    reports = []
    for contract in ONNX_STAGES:
        onnx_path = onnx_repository / contract.name / "1" / "model.onnx"
        if not onnx_path.exists():
            raise FileNotFoundError(f"{onnx_path} is missing; run python -m bodydance_export first")
        batch = (1, 4, MAX_FRAME_BATCH) if contract.frame_path else (1, 1, 1)
        plan_path = plan_repository / contract.name / "1" / "model.plan"
        report = build_engine(onnx_path, plan_path, min_batch=batch[0], opt_batch=batch[1], max_batch=batch[2],
                              fp16=contract.name not in FP32_STAGES, timing_cache_path=timing_cache)
        if check:
            resolution = int(profile_shapes(onnx_path, 1, 1, 1)[0].max[-1])
            report["max_abs_error_vs_onnx"] = check_plan_against_onnx(
                plan_path, onnx_path, sample_inputs(contract, resolution, batch=batch[1], seed=7))
        print(json.dumps(report), flush=True)
        reports.append(report)
    return reports


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Build TensorRT FP16 plans from the exported ONNX stages.")
    parser.add_argument("--onnx-repository", type=Path, default=Path("model_repository/cpu"))
    parser.add_argument("--plan-repository", type=Path, default=Path("model_repository/gpu"))
    parser.add_argument("--timing-cache", type=Path, default=Path("model_repository/gpu/timing.cache"))
    parser.add_argument("--no-check", action="store_true", help="skip the TensorRT vs ONNX Runtime comparison")
    args = parser.parse_args(argv)
    try:
        import_tensorrt()
    except TensorRTUnavailableError as err:
        print(f"bodydance_export.tensorrt_build: {err}", file=sys.stderr)
        return EXIT_NO_TENSORRT
    build_repository(args.onnx_repository, args.plan_repository, args.timing_cache, check=not args.no_check)
    return 0


if __name__ == "__main__":
    sys.exit(main())
