"""The TensorRT build step, as far as it runs without TensorRT or a GPU.

TensorRT only installs on an NVIDIA GPU host, so here we check: the refusal
where it is missing (exit code 3, a clear message, no traceback), the pure
helpers (optimisation-profile shapes from the ONNX and the typed model
description, FP32 layer patterns, the check against the GPU ModelConfig, output
comparison), and the build and run logic against the stand-ins for the
``tensorrt`` and ``polygraphy`` modules in :mod:`tensorrt_fakes`.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import tensorrt_fakes as fakes
from bodydance.serving.model_configs import GPU_RESOLUTION, Batching, describe_models, to_model_config
from bodydance_client import contract as C
from bodydance_export.parity import ParityError
from bodydance_export.tensorrt_build import build, cli, profiles, repository, run, runtime

ROOT = Path(__file__).resolve().parents[2]


def _save(path: Path, inputs, outputs, nodes, initializers=()) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _stage_like(path: Path, n: int = 16) -> Path:
    """x [batch,3,n,n] -> y = relu(x), plus a weight initializer listed among the graph inputs (old exporters)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, n, n])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, n, n])
    nodes = [helper.make_node("Mul", ["x", "w"], ["xw"]), helper.make_node("Relu", ["xw"], ["y"])]
    return _save(path, [x, w], [y], nodes, [numpy_helper.from_array(np.ones(1, np.float32), "w")])


def _run_cli(*args, extra_path=None, cwd=ROOT):
    env = dict(os.environ)
    paths = [str(extra_path)] if extra_path else []
    env["PYTHONPATH"] = os.pathsep.join(paths + [str(ROOT / "export"), str(ROOT / "client"), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "bodydance_export.tensorrt_build", *args],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


# --- refusal where TensorRT is missing ----------------------------------------------------------------


def test_cli_without_tensorrt_exits_3_with_a_clear_message():
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here; the stand-in test below covers the refusal")
    except ImportError:
        pass
    proc = _run_cli()
    assert proc.returncode == cli.EXIT_NO_TENSORRT == 3, proc.stderr
    assert "only installable on an NVIDIA GPU host" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_cli_with_a_broken_tensorrt_install_also_exits_3(tmp_path):
    # A wheel whose shared libraries are missing fails at import with an OSError-like ImportError.
    proc = _run_cli("--parity", "off", extra_path=fakes.tensorrt_package(tmp_path, fakes.BROKEN_TENSORRT))
    assert proc.returncode == 3, proc.stderr
    assert "NVIDIA GPU host" in proc.stderr and "libnvinfer.so.10" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_import_tensorrt_raises_a_runtime_error_subclass(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` raise ImportError
    with pytest.raises(runtime.TensorRTUnavailableError, match="only installable on an NVIDIA GPU host") as err:
        runtime.import_tensorrt()
    assert isinstance(err.value, RuntimeError)


def test_cli_with_tensorrt_but_no_onnx_says_what_to_export(tmp_path):
    proc = _run_cli("--cpu-repository", str(tmp_path / "nowhere"), "--gpu-repository", str(tmp_path / "gpu"),
                    extra_path=fakes.tensorrt_package(tmp_path, fakes.BARE_TENSORRT))
    assert proc.returncode == cli.EXIT_BUILD_FAILED, proc.stderr
    assert "model.onnx" in proc.stderr and "bodydance_export" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- optimisation profile ------------------------------------------------------------------------------

def _description(contract, max_batch=None):
    """The typed description of an ONNX stage, with another ``max_batch_size`` where given."""
    (desc,) = [d for d in describe_models() if d.contract is contract]
    if max_batch is not None:
        desc = dataclasses.replace(desc, batching=Batching(max_batch))
    return desc


def test_profile_replaces_only_the_batch_dimension_and_skips_initializers(tmp_path):
    (shape,) = profiles.derive_profile(_stage_like(tmp_path / "m.onnx"), min_batch=1, opt_batch=4, max_batch=8)
    assert shape.name == "x"
    assert (shape.min, shape.opt, shape.max) == ((1, 3, 16, 16), (4, 3, 16, 16), (8, 3, 16, 16))
    assert shape.item_shape == (3, 16, 16)


def test_profile_keeps_the_order_and_ranks_of_several_inputs(tmp_path):
    a = helper.make_tensor_value_info("betas", TensorProto.FLOAT, ["b", 10])
    b = helper.make_tensor_value_info("parsing", TensorProto.INT32, ["b", 1, 8, 8])
    out = helper.make_tensor_value_info("o", TensorProto.FLOAT, ["b", 10])
    path = _save(tmp_path / "m.onnx", [a, b], [out], [helper.make_node("Identity", ["betas"], ["o"])])
    profile = profiles.derive_profile(path, min_batch=1, opt_batch=1, max_batch=1)
    assert [(p.name, p.max) for p in profile] == [("betas", (1, 10)), ("parsing", (1, 1, 8, 8))]


@pytest.mark.parametrize("bounds", [(2, 1, 8), (1, 9, 8), (0, 1, 1)])
def test_profile_refuses_unordered_batch_bounds(tmp_path, bounds):
    lo, opt, hi = bounds
    with pytest.raises(ValueError, match="min_batch <= opt_batch <= max_batch"):
        profiles.derive_profile(_stage_like(tmp_path / "m.onnx"), min_batch=lo, opt_batch=opt, max_batch=hi)


def test_profile_refuses_a_dynamic_resolution(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, "H", "W"])
    path = _save(tmp_path / "m.onnx", [x], [y], [helper.make_node("Relu", ["x"], ["y"])])
    with pytest.raises(ValueError, match="dynamic non-batch dimension 2"):
        profiles.derive_profile(path, min_batch=1, opt_batch=1, max_batch=1)


def test_a_fixed_batch_of_one_serves_only_a_batch_of_one(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    path = _save(tmp_path / "m.onnx", [x], [y], [helper.make_node("Relu", ["x"], ["y"])])
    assert profiles.derive_profile(path, min_batch=1, opt_batch=1, max_batch=1)[0].max == (1, 4)
    with pytest.raises(ValueError, match="fixed batch dimension of 1"):
        profiles.derive_profile(path, min_batch=1, opt_batch=4, max_batch=8)


def test_batch_bounds_follow_the_typed_description():
    assert profiles.batch_bounds(_description(C.STYLE_GENERATOR)) == (1, 4, C.MAX_FRAME_BATCH)
    assert profiles.batch_bounds(_description(C.STYLE_ENCODER)) == (1, 1, 1)
    assert profiles.batch_bounds(_description(C.BODY_GEOMETRY, max_batch=16)) == (1, 4, 16)
    assert profiles.batch_bounds(_description(C.BODY_GEOMETRY, max_batch=2)) == (1, 2, 2)
    with pytest.raises(ValueError, match="needs a batch dimension"):
        profiles.batch_bounds(_description(C.BODY_GEOMETRY, max_batch=0))


def test_stage_profile_takes_the_batch_from_the_description_and_the_rest_from_the_onnx(tmp_path):
    path = _onnx_like_export(tmp_path, 32, stages=[C.STYLE_ENCODER, C.PARSING_PRIOR])
    encoder = profiles.stage_profile(_description(C.STYLE_ENCODER), path / "style_encoder" / "1" / "model.onnx")
    prior = profiles.stage_profile(_description(C.PARSING_PRIOR, max_batch=6),
                                   path / "parsing_prior" / "1" / "model.onnx")
    assert [s.name for s in encoder] == [s.name for s in C.STYLE_ENCODER.inputs]
    assert all(s.min[0] == s.opt[0] == s.max[0] == 1 for s in encoder)
    assert {s.name: s.item_shape for s in encoder} == {s.name: s.concrete_shape(32) for s in C.STYLE_ENCODER.inputs}
    assert {(s.min[0], s.opt[0], s.max[0]) for s in prior} == {(1, 4, 6)}


def test_exported_resolution_is_read_from_an_N_sized_tensor(tmp_path):
    path = tmp_path / "m.onnx"
    outs = [helper.make_tensor_value_info(s.name, TensorProto.FLOAT, ["b", *s.concrete_shape(96)])
            for s in C.BODY_GEOMETRY.outputs]
    ins = [helper.make_tensor_value_info(s.name, TensorProto.FLOAT, ["b", *s.concrete_shape(96)])
           for s in C.BODY_GEOMETRY.inputs]
    nodes = [helper.make_node("ConstantOfShape", [], [o.name]) for o in outs]  # graph body is irrelevant here
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", ins, outs)), str(path))
    # body_geometry's inputs carry no resolution: it is read off its outputs.
    assert profiles.exported_resolution(C.BODY_GEOMETRY, path) == 96


# --- FP32 layer patterns ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["LayerType.REDUCE", "NORMALIZATION", "softmax", "LayerType.CUMULATIVE"])
def test_overflow_prone_layer_types_stay_fp32(name):
    assert build.matches_fp32_pattern(name)


@pytest.mark.parametrize("name", ["LayerType.CONVOLUTION", "MATRIX_MULTIPLY", "ELEMENTWISE", "GRID_SAMPLE"])
def test_compute_layers_may_run_in_fp16(name):
    assert not build.matches_fp32_pattern(name)


def test_patterns_are_configurable_and_an_enum_member_works():
    kind = enum.Enum("LayerType", "ELEMENTWISE REDUCE").ELEMENTWISE
    assert build.layer_type_name(kind) == "ELEMENTWISE"
    assert build.matches_fp32_pattern("LayerType.ELEMENTWISE", ["elementwise"])
    assert not build.matches_fp32_pattern("LayerType.REDUCE", ["elementwise"])
    assert not build.matches_fp32_pattern("LayerType.REDUCE", [])


# --- the GPU ModelConfig vs the ONNX ---------------------------------------------------------------------

def _config(input_name="x", n=16):
    """A GPU ModelConfig with one input and one output of [3, n, n] per item, as to_model_config makes them."""
    from tritonclient.grpc import model_config_pb2 as pb

    cfg = pb.ModelConfig(name="stage", platform="tensorrt_plan", max_batch_size=8)
    cfg.input.add(name=input_name, data_type=pb.TYPE_FP32, dims=[3, n, n])
    cfg.output.add(name="y", data_type=pb.TYPE_FP32, dims=[3, n, n])
    return cfg


def test_the_gpu_configs_checked_against_are_the_committed_config_pbtxt():
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    described = repository.stage_descriptions()
    assert list(described) == [s.name for s in C.ONNX_STAGES]
    for stage in C.ONNX_STAGES:
        path = ROOT / "model_repository" / "gpu" / stage.name / "config.pbtxt"
        if not path.exists():
            pytest.skip(f"{path} not generated yet")
        cfg = to_model_config(described[stage.name], "gpu")
        assert text_format.Parse(path.read_text(), pb.ModelConfig()) == cfg
        assert [t.name for t in cfg.input] == [s.name for s in stage.inputs]
        assert cfg.max_batch_size == profiles.batch_bounds(described[stage.name])[2]


def test_an_onnx_exported_at_another_resolution_is_refused(tmp_path):
    profiles.check_against_config("stage", _stage_like(tmp_path / "ok.onnx", 16), _config())  # no error
    with pytest.raises(ValueError, match=r"x: ONNX \(3, 8, 8\) vs config \(3, 16, 16\).*--resolution 512"):
        profiles.check_against_config("stage", _stage_like(tmp_path / "small.onnx", 8), _config())


def test_tensor_names_must_match_the_config(tmp_path):
    with pytest.raises(ValueError, match="ONNX inputs"):
        profiles.check_against_config("stage", _stage_like(tmp_path / "m.onnx"), _config(input_name="image"))


# --- output comparison -----------------------------------------------------------------------------------

def _by_output(report):
    return {a.output: a for a in report}


def test_compare_outputs_tolerates_small_errors_and_counts_misses():
    from bodydance_export.parity import compare_outputs

    ref = {"img": np.linspace(0, 1, 1000, dtype=np.float32), "labels": np.arange(1000, dtype=np.int32) % 8,
           "frame": np.full((10, 10, 3), 100, np.uint8)}
    cand = {"img": ref["img"] + 1e-3, "labels": ref["labels"].copy(), "frame": ref["frame"] + 1}
    cand["labels"][:5] += 1  # 0.5 % of labels moved: within 99 %
    report = _by_output(compare_outputs(ref, cand, run.FP16_PARITY))
    assert all(a.fraction >= run.FP16_PARITY.min_fraction for a in report.values()), report
    assert report["labels"].fraction == pytest.approx(0.995)
    cand["img"] = cand["img"].copy()
    cand["img"][:20] = np.nan  # NaN from an FP16 overflow counts as a miss
    cand["frame"] = ref["frame"] + 9  # 9 levels > 2/255
    report = _by_output(compare_outputs(ref, cand, run.FP16_PARITY))
    assert report["img"].fraction == pytest.approx(0.98)
    assert report["img"].fraction < run.FP16_PARITY.min_fraction
    assert report["frame"].fraction < run.FP16_PARITY.min_fraction


def test_compare_outputs_refuses_other_shapes():
    from bodydance_export.parity import compare_outputs

    with pytest.raises(ParityError, match="shape"):
        compare_outputs({"y": np.zeros((2, 3))}, {"y": np.zeros((3, 2))}, run.FP32_PARITY)
    with pytest.raises(ParityError, match="missing"):
        compare_outputs({"y": np.zeros(2)}, {"z": np.zeros(2)}, run.FP32_PARITY)


# --- build logic against the stand-in for tensorrt --------------------------------------------------------

def test_build_engine_sets_profile_fp16_constraints_and_timing_cache(tmp_path, monkeypatch):
    D = fakes.DType
    trt = fakes.install_tensorrt(monkeypatch, [("conv", "CONVOLUTION", D.HALF), ("sum", "REDUCE", D.FLOAT),
                                               ("argmax", "REDUCE", D.INT32), ("norm", "NORMALIZATION", D.FLOAT),
                                               ("add", "ELEMENTWISE", D.FLOAT)])
    cache = tmp_path / "cache" / "timing.cache"
    cache.parent.mkdir()
    cache.write_bytes(b"old")
    plan = tmp_path / "gpu" / "stage" / "1" / "model.plan"
    report = build.build_engine(_stage_like(tmp_path / "m.onnx"), plan, min_batch=1, opt_batch=4, max_batch=8,
                                timing_cache_path=cache, workspace_gib=0.5)

    calls = trt.calls
    assert plan.read_bytes() == fakes.PLAN and report["plan_bytes"] == 4
    assert calls["network_flags"] == 0  # TensorRT 10: explicit batch without a flag
    config = calls["built_with"]
    assert config.profiles[0].shapes == {"x": ((1, 3, 16, 16), (4, 3, 16, 16), (8, 3, 16, 16))}
    assert config.flags == {"fp16", "obey"}
    assert calls["workspace"] == 1 << 29
    pinned = {layer.name: layer for layer in trt.network.layers if layer.precision is not None}
    assert set(pinned) == {"sum", "norm"}  # the integer argmax and the compute layers are left alone
    assert all(layer.output_types == {0: D.FLOAT} for layer in pinned.values())
    assert report["layers_pinned_fp32"] == 2
    assert calls["cache_in"] == b"old" and cache.read_bytes() == b"old+timed"
    assert not list(plan.parent.glob(".*.tmp"))  # written atomically


def test_build_engine_in_fp32_sets_no_precision_flags(tmp_path, monkeypatch):
    trt = fakes.install_tensorrt(monkeypatch, [("sum", "REDUCE", fakes.DType.FLOAT)])
    report = build.build_engine(_stage_like(tmp_path / "m.onnx"), tmp_path / "p.plan", min_batch=1, opt_batch=1,
                                max_batch=1, fp16=False)
    assert trt.calls["built_with"].flags == set() and report["precision"] == "fp32"
    assert trt.network.layers[0].precision is None
    assert "cache_in" not in trt.calls


def test_build_engine_asks_tensorrt_8_for_explicit_batch(tmp_path, monkeypatch):
    trt = fakes.install_tensorrt(monkeypatch, version="8.6.1")
    build.build_engine(_stage_like(tmp_path / "m.onnx"), tmp_path / "p.plan", min_batch=1, opt_batch=1, max_batch=1)
    assert trt.calls["network_flags"] == 1


# --- running a plan through the stand-in for polygraphy ---------------------------------------------------

def _doubles(feed):
    return {"y": (2 * feed["x"]).astype(np.float16)}


def test_run_plan_hands_polygraphy_the_plan_and_the_inputs_after_registering_plugins(tmp_path, monkeypatch):
    trt = fakes.install_tensorrt(monkeypatch)
    calls = fakes.install_polygraphy(monkeypatch, _doubles, plugins_from=trt.calls)
    plan = tmp_path / "model.plan"
    plan.write_bytes(fakes.PLAN)
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    out = run.run_plan(plan, {"x": x})
    assert calls["plan"] == fakes.PLAN and calls["engine"] == "engine"
    assert set(calls["feed"]) == {"x"} and calls["feed"]["x"] is x
    assert calls["active"] is False  # the runner's context was left
    assert set(out) == {"y"} and out["y"].dtype == np.float16
    np.testing.assert_array_equal(out["y"], (2 * x).astype(np.float16))


def test_run_plan_reports_an_unreadable_plan_and_a_missing_polygraphy(tmp_path, monkeypatch):
    fakes.install_tensorrt(monkeypatch)
    fakes.install_polygraphy(monkeypatch, _doubles)
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="deserialize"):
        run.run_plan(plan, {"x": np.zeros((1, 3), np.float32)})
    fakes.hide_polygraphy(monkeypatch)
    with pytest.raises(runtime.TensorRTUnavailableError, match="gpu. extra"):
        run.run_plan(plan, {"x": np.zeros((1, 3), np.float32)})


def test_gpu_available_asks_polygraphy_for_a_device_allocation(monkeypatch):
    calls = fakes.install_polygraphy(monkeypatch)
    assert run.gpu_available()
    assert calls["allocated"] == ((1,), np.dtype(np.uint8)) and calls["freed"]
    fakes.install_polygraphy(monkeypatch, gpu=False)
    assert not run.gpu_available()
    fakes.hide_polygraphy(monkeypatch)
    assert not run.gpu_available()


def test_parity_is_possible_only_with_onnxruntime_polygraphy_and_a_gpu(monkeypatch):
    pytest.importorskip("onnxruntime")
    fakes.install_polygraphy(monkeypatch)
    assert run.parity_possible() == (True, "")
    fakes.install_polygraphy(monkeypatch, gpu=False)
    assert run.parity_possible() == (False, "no CUDA GPU is visible")
    fakes.hide_polygraphy(monkeypatch)
    assert run.parity_possible() == (False, "polygraphy is not installed (the gpu extra)")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert run.parity_possible() == (False, "onnxruntime is not installed")


def _plan_and_onnx(tmp_path):
    plan = tmp_path / "model.plan"
    plan.write_bytes(fakes.PLAN)
    return plan, _stage_like(tmp_path / "model.onnx", 4)


def test_a_plan_agreeing_with_onnx_runtime_passes_and_only_declared_inputs_are_fed(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    fakes.install_tensorrt(monkeypatch)
    # The stand-in plan computes what the ONNX does (relu(x * 1)), give or take half a uint8 level.
    calls = fakes.install_polygraphy(monkeypatch, lambda feed: {"y": np.maximum(feed["x"], 0) + 1e-3})
    plan, model = _plan_and_onnx(tmp_path)
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 4)).astype(np.float32)
    report = run.check_plan_against_onnx(plan, model, {"x": x, "camera": np.zeros((2, 3), np.float32)})
    assert set(calls["feed"]) == {"x"}  # not the weight initializer, nor an input the graph does not declare
    assert report["y"]["ok"] and report["y"]["fraction"] == 1.0 and report["y"]["needed"] == 0.99
    assert report["y"]["max_abs_error"] == pytest.approx(1e-3, rel=1e-3)


def test_a_plan_disagreeing_with_onnx_runtime_raises_parity_error(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    fakes.install_tensorrt(monkeypatch)
    fakes.install_polygraphy(monkeypatch, lambda feed: {"y": feed["x"]})  # no relu: negatives disagree
    plan, model = _plan_and_onnx(tmp_path)
    x = np.random.default_rng(1).normal(size=(2, 3, 4, 4)).astype(np.float32)
    with pytest.raises(ParityError, match=r"model.plan: TensorRT disagrees with ONNX Runtime \(y: "):
        run.check_plan_against_onnx(plan, model, {"x": x}, run.FP32_PARITY)


# --- the whole repository, against the stand-ins ------------------------------------------------------------

def _onnx_like_export(root: Path, resolution: int, stages=C.ONNX_STAGES) -> Path:
    """<root>/<stage>/1/model.onnx declaring each ONNX stage's contract tensors (the stand-in parses nothing)."""
    kinds = {C.F32: TensorProto.FLOAT, C.F16: TensorProto.FLOAT16, C.I32: TensorProto.INT32, C.U8: TensorProto.UINT8}
    for stage in stages:
        values = [[helper.make_tensor_value_info(s.name, kinds[s.dtype], ["batch", *s.concrete_shape(resolution)])
                   for s in specs] for specs in (stage.inputs, stage.outputs)]
        (root / stage.name / "1").mkdir(parents=True)
        onnx.save(helper.make_model(helper.make_graph([], stage.name, *values)), str(root / stage.name / "1" / "model.onnx"))
    return root


def test_build_repository_builds_every_onnx_stage_with_its_described_batch(tmp_path, monkeypatch):
    from bodydance_export.precision import FP32_STAGES

    trt = fakes.install_tensorrt(monkeypatch, [("sum", "REDUCE", fakes.DType.FLOAT)])
    cpu, gpu = _onnx_like_export(tmp_path / "onnx", GPU_RESOLUTION), tmp_path / "gpu"  # no config.pbtxt needed
    logged = []
    reports = repository.build_repository(cpu, gpu, timing_cache_path=None, parity="off", log=logged.append)
    by_stage = {r["stage"]: r for r in reports}
    assert set(by_stage) == {s.name for s in C.ONNX_STAGES}
    assert len(trt.calls["built"]) == len(C.ONNX_STAGES)
    for stage in C.ONNX_STAGES:
        assert (gpu / stage.name / "1" / "model.plan").read_bytes() == fakes.PLAN
        assert by_stage[stage.name]["batch"] == ([1, 4, C.MAX_FRAME_BATCH] if stage.frame_path else [1, 1, 1])
        assert by_stage[stage.name]["precision"] == ("fp32" if stage.name in FP32_STAGES else "fp16")
        assert by_stage[stage.name]["inputs"] == {s.name: list(s.concrete_shape(GPU_RESOLUTION)) for s in stage.inputs}
    assert not (gpu / "subject_reconstruction" / "1" / "model.plan").exists()  # python backend, no plan


def test_build_repository_refuses_a_cpu_resolution_export_before_building(tmp_path, monkeypatch):
    trt = fakes.install_tensorrt(monkeypatch)
    cpu, gpu = _onnx_like_export(tmp_path / "onnx", GPU_RESOLUTION // 2), tmp_path / "gpu"
    with pytest.raises(ValueError, match="re-export at the GPU resolution"):
        repository.build_repository(cpu, gpu, timing_cache_path=None, parity="off", log=lambda *_: None)
    assert "built" not in trt.calls and not list(gpu.glob("*/1/model.plan"))


def test_a_plan_failing_parity_is_removed(tmp_path, monkeypatch):
    fakes.install_tensorrt(monkeypatch)
    fakes.install_polygraphy(monkeypatch)

    def disagree(plan_path, onnx_path, inputs, tol):
        assert plan_path.read_bytes() == fakes.PLAN and tol == run.FP32_PARITY  # source_parser builds in FP32
        assert set(inputs) == {s.name for s in C.SOURCE_PARSER.inputs}
        raise ParityError("source_parsing: 50% within tolerance")

    monkeypatch.setattr(run, "check_plan_against_onnx", disagree)
    cpu, gpu = _onnx_like_export(tmp_path / "onnx", GPU_RESOLUTION), tmp_path / "gpu"
    with pytest.raises(ParityError, match="plan was removed"):
        repository.build_repository(cpu, gpu, stages=["source_parser"], timing_cache_path=None, parity="on",
                                    log=lambda *_: None)
    assert not (gpu / "source_parser" / "1" / "model.plan").exists()


def test_parity_on_without_polygraphy_fails_before_building(tmp_path, monkeypatch):
    trt = fakes.install_tensorrt(monkeypatch)
    fakes.hide_polygraphy(monkeypatch)
    cpu, gpu = _onnx_like_export(tmp_path / "onnx", GPU_RESOLUTION, [C.STYLE_ENCODER]), tmp_path / "gpu"
    with pytest.raises(runtime.TensorRTUnavailableError, match="polygraphy"):
        repository.build_repository(cpu, gpu, stages=["style_encoder"], timing_cache_path=None, parity="on")
    assert "built" not in trt.calls
    logged = []
    repository.build_repository(cpu, gpu, stages=["style_encoder"], timing_cache_path=None, parity="auto",
                                log=logged.append)
    assert logged[0].startswith("parity check skipped: ") and (gpu / "style_encoder" / "1" / "model.plan").exists()


def test_unknown_stages_and_parity_modes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown stages"):
        repository.build_repository(tmp_path, tmp_path, stages=["subject_reconstruction"])
    with pytest.raises(ValueError, match="parity"):
        repository.build_repository(tmp_path, tmp_path, parity="sometimes")
