"""Every ONNX stage of a model repository -> its TensorRT plan, checked before and after the build."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from bodydance.serving.model_configs import ModelDescription, describe_models, to_model_config
from bodydance_client.contract import ONNX_STAGES
from bodydance_export.parity import ParityError
from bodydance_export.precision import FP32_STAGES
from bodydance_export.sample_inputs import sample_inputs
from bodydance_export.tensorrt_build import run
from bodydance_export.tensorrt_build.build import DEFAULT_FP32_LAYER_PATTERNS, DEFAULT_TIMING_CACHE, build_engine
from bodydance_export.tensorrt_build.profiles import batch_bounds, check_against_config, exported_resolution
from bodydance_export.tensorrt_build.runtime import import_polygraphy_trt, import_tensorrt


def stage_descriptions() -> Dict[str, ModelDescription]:
    """Stage name -> typed description of every ONNX stage, in :data:`ONNX_STAGES` order."""
    described = {d.contract.name: d for d in describe_models() if d.kind == "onnx"}
    return {c.name: described[c.name] for c in ONNX_STAGES}


def _onnx(cpu_repo_dir: Path, stage: str) -> Path:
    return cpu_repo_dir / stage / "1" / "model.onnx"


def build_repository(cpu_repo_dir, gpu_repo_dir, *, stages: Optional[Sequence[str]] = None,
                     timing_cache_path=DEFAULT_TIMING_CACHE, parity: str = "auto", workspace_gib: float = 4.0,
                     fp32_layer_patterns: Sequence[str] = DEFAULT_FP32_LAYER_PATTERNS, seed: int = 7,
                     log=print) -> List[Dict[str, object]]:
    """Build ``<gpu>/<stage>/1/model.plan`` from ``<cpu>/<stage>/1/model.onnx`` for every ONNX stage.

    ``parity``: "auto" checks each plan against ONNX Runtime where onnxruntime,
    polygraphy and a GPU are present, "on" insists, "off" skips. Stages in
    :data:`bodydance_export.precision.FP32_STAGES` are built in FP32.
    """
    if parity not in ("auto", "on", "off"):
        raise ValueError(f"parity must be auto, on or off, not {parity!r}")
    cpu_repo_dir, gpu_repo_dir = Path(cpu_repo_dir), Path(gpu_repo_dir)
    known = stage_descriptions()
    chosen = list(stages) if stages else list(known)
    unknown = [s for s in chosen if s not in known]
    if unknown:
        raise ValueError(f"unknown stages {unknown}; the ONNX stages are {sorted(known)}")
    missing = [str(_onnx(cpu_repo_dir, s)) for s in chosen if not _onnx(cpu_repo_dir, s).is_file()]
    if missing:
        raise FileNotFoundError("ONNX models missing: " + ", ".join(missing)
                                + "; export them first (python -m bodydance_export --resolution 512 --repository DIR)")
    import_tensorrt()
    do_parity = parity == "on"
    if do_parity:
        import_polygraphy_trt()  # before any build: "on" without polygraphy fails in seconds
    if parity == "auto":
        do_parity, why = run.parity_possible()
        if not do_parity:
            log(f"parity check skipped: {why}")

    # Every ONNX against its GPU config first, so a wrong export fails in seconds, not after builds.
    for name in chosen:
        check_against_config(name, _onnx(cpu_repo_dir, name), to_model_config(known[name], "gpu"))

    reports = []
    for name in chosen:
        contract = known[name].contract
        onnx_path, plan_path = _onnx(cpu_repo_dir, name), gpu_repo_dir / name / "1" / "model.plan"
        lo, opt, hi = batch_bounds(known[name])
        fp16 = name not in FP32_STAGES
        log(f"{name}: building {'FP16' if fp16 else 'FP32'} plan, batch {lo}..{hi} (opt {opt}) ...")
        report = build_engine(onnx_path, plan_path, min_batch=lo, opt_batch=opt, max_batch=hi, fp16=fp16,
                              timing_cache_path=timing_cache_path, fp32_layer_patterns=fp32_layer_patterns,
                              workspace_gib=workspace_gib)
        report["stage"] = name
        if do_parity:
            inputs = sample_inputs(contract, exported_resolution(contract, onnx_path), batch=opt, seed=seed)
            try:
                report["parity_vs_onnxruntime"] = run.check_plan_against_onnx(
                    plan_path, onnx_path, inputs, run.FP16_PARITY if fp16 else run.FP32_PARITY)
            except ParityError as err:
                plan_path.unlink(missing_ok=True)  # never leave a wrong plan where Triton would load it
                raise ParityError(f"{err}; the plan was removed") from err
        log(json.dumps(report))
        reports.append(report)
    return reports
