"""The TensorRT build step, as far as it runs without TensorRT or a GPU.

TensorRT only installs on an NVIDIA GPU host, so here we check: the refusal
where it is missing (exit code 3, a clear message, no traceback), the pure
helpers (optimisation-profile shapes, FP32 layer patterns, config checks,
output comparison), and the build and run logic against small stand-ins for
the ``tensorrt`` module and the CUDA runtime that record what they are asked.
"""

from __future__ import annotations

import ctypes
import enum
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bodydance_client import contract as C
from bodydance_export import tensorrt_build as tb

ROOT = Path(__file__).resolve().parents[1]


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
    run = _run_cli()
    assert run.returncode == tb.EXIT_NO_TENSORRT == 3, run.stderr
    assert "only installable on an NVIDIA GPU host" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout


def test_cli_with_a_broken_tensorrt_install_also_exits_3(tmp_path):
    # A wheel whose shared libraries are missing fails at import with an OSError-like ImportError.
    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "__init__.py").write_text(
        "raise OSError('libnvinfer.so.10: cannot open shared object file')\n")
    run = _run_cli("--parity", "off", extra_path=tmp_path)
    assert run.returncode == 3, run.stderr
    assert "NVIDIA GPU host" in run.stderr and "libnvinfer.so.10" in run.stderr
    assert "Traceback" not in run.stderr


def test_import_tensorrt_raises_a_runtime_error_subclass(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` raise ImportError
    with pytest.raises(tb.TensorRTUnavailableError, match="only installable on an NVIDIA GPU host") as err:
        tb.import_tensorrt()
    assert isinstance(err.value, RuntimeError)


def test_cli_with_tensorrt_but_no_onnx_says_what_to_export(tmp_path):
    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "__init__.py").write_text("__version__ = '10.5.0'\n")
    run = _run_cli("--cpu-repository", str(tmp_path / "nowhere"), "--gpu-repository", str(tmp_path / "gpu"),
                   extra_path=tmp_path)
    assert run.returncode == tb.EXIT_BUILD_FAILED, run.stderr
    assert "model.onnx" in run.stderr and "bodydance_export" in run.stderr
    assert "Traceback" not in run.stderr


# --- optimisation profile ------------------------------------------------------------------------------

def test_profile_replaces_only_the_batch_dimension_and_skips_initializers(tmp_path):
    (shape,) = tb.derive_profile(_stage_like(tmp_path / "m.onnx"), min_batch=1, opt_batch=4, max_batch=8)
    assert shape.name == "x"
    assert (shape.min, shape.opt, shape.max) == ((1, 3, 16, 16), (4, 3, 16, 16), (8, 3, 16, 16))
    assert shape.item_shape == (3, 16, 16)


def test_profile_keeps_the_order_and_ranks_of_several_inputs(tmp_path):
    a = helper.make_tensor_value_info("betas", TensorProto.FLOAT, ["b", 10])
    b = helper.make_tensor_value_info("parsing", TensorProto.INT32, ["b", 1, 8, 8])
    out = helper.make_tensor_value_info("o", TensorProto.FLOAT, ["b", 10])
    path = _save(tmp_path / "m.onnx", [a, b], [out], [helper.make_node("Identity", ["betas"], ["o"])])
    profile = tb.derive_profile(path, min_batch=1, opt_batch=1, max_batch=1)
    assert [(p.name, p.max) for p in profile] == [("betas", (1, 10)), ("parsing", (1, 1, 8, 8))]


@pytest.mark.parametrize("bounds", [(2, 1, 8), (1, 9, 8), (0, 1, 1)])
def test_profile_refuses_unordered_batch_bounds(tmp_path, bounds):
    lo, opt, hi = bounds
    with pytest.raises(ValueError, match="min_batch <= opt_batch <= max_batch"):
        tb.derive_profile(_stage_like(tmp_path / "m.onnx"), min_batch=lo, opt_batch=opt, max_batch=hi)


def test_profile_refuses_a_dynamic_resolution(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, "H", "W"])
    path = _save(tmp_path / "m.onnx", [x], [y], [helper.make_node("Relu", ["x"], ["y"])])
    with pytest.raises(ValueError, match="dynamic non-batch dimension 2"):
        tb.derive_profile(path, min_batch=1, opt_batch=1, max_batch=1)


def test_a_fixed_batch_of_one_serves_only_a_batch_of_one(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    path = _save(tmp_path / "m.onnx", [x], [y], [helper.make_node("Relu", ["x"], ["y"])])
    assert tb.derive_profile(path, min_batch=1, opt_batch=1, max_batch=1)[0].max == (1, 4)
    with pytest.raises(ValueError, match="fixed batch dimension of 1"):
        tb.derive_profile(path, min_batch=1, opt_batch=4, max_batch=8)


def test_batch_bounds_follow_the_contract_and_the_generated_config():
    assert tb.batch_bounds(C.STYLE_GENERATOR) == (1, 4, C.MAX_FRAME_BATCH)
    assert tb.batch_bounds(C.STYLE_ENCODER) == (1, 1, 1)
    assert tb.batch_bounds(C.BODY_GEOMETRY, config_max_batch=16) == (1, 4, 16)
    assert tb.batch_bounds(C.BODY_GEOMETRY, config_max_batch=2) == (1, 2, 2)


def test_exported_resolution_is_read_from_an_N_sized_tensor(tmp_path):
    path = tmp_path / "m.onnx"
    outs = [helper.make_tensor_value_info(s.name, TensorProto.FLOAT, ["b", *s.concrete_shape(96)])
            for s in C.BODY_GEOMETRY.outputs]
    ins = [helper.make_tensor_value_info(s.name, TensorProto.FLOAT, ["b", *s.concrete_shape(96)])
           for s in C.BODY_GEOMETRY.inputs]
    nodes = [helper.make_node("ConstantOfShape", [], [o.name]) for o in outs]  # graph body is irrelevant here
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", ins, outs)), str(path))
    # body_geometry's inputs carry no resolution: it is read off its outputs.
    assert tb.exported_resolution(C.BODY_GEOMETRY, path) == 96


# --- FP32 layer patterns ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["LayerType.REDUCE", "NORMALIZATION", "softmax", "LayerType.CUMULATIVE"])
def test_overflow_prone_layer_types_stay_fp32(name):
    assert tb.matches_fp32_pattern(name)


@pytest.mark.parametrize("name", ["LayerType.CONVOLUTION", "MATRIX_MULTIPLY", "ELEMENTWISE", "GRID_SAMPLE"])
def test_compute_layers_may_run_in_fp16(name):
    assert not tb.matches_fp32_pattern(name)


def test_patterns_are_configurable_and_an_enum_member_works():
    kind = enum.Enum("LayerType", "ELEMENTWISE REDUCE").ELEMENTWISE
    assert tb.layer_type_name(kind) == "ELEMENTWISE"
    assert tb.matches_fp32_pattern("LayerType.ELEMENTWISE", ["elementwise"])
    assert not tb.matches_fp32_pattern("LayerType.REDUCE", ["elementwise"])
    assert not tb.matches_fp32_pattern("LayerType.REDUCE", [])


# --- the generated config vs the ONNX --------------------------------------------------------------------

CONFIG = textwrap.dedent("""\
    # Generated; do not edit.
    name: "stage"
    platform: "tensorrt_plan"
    max_batch_size: 8
    input {
      name: "x"
      data_type: TYPE_FP32
      dims: 3
      dims: 16
      dims: 16
    }
    output {
      name: "y"
      data_type: TYPE_FP32
      dims: 3
      dims: 16
      dims: 16
    }
    dynamic_batching {
      preferred_batch_size: 4
      default_queue_policy { max_queue_size: 16 }
    }
    """)


def test_read_config_finds_batch_and_tensor_dims():
    config = tb.read_config(CONFIG)
    assert config.max_batch_size == 8
    assert config.inputs == {"x": (3, 16, 16)} and config.outputs == {"y": (3, 16, 16)}


def test_read_config_reads_the_committed_gpu_configs():
    for stage in C.ONNX_STAGES:
        path = ROOT / "model_repository" / "gpu" / stage.name / "config.pbtxt"
        if not path.exists():
            pytest.skip(f"{path} not generated yet")
        config = tb.read_config(path.read_text())
        assert set(config.inputs) == {s.name for s in stage.inputs}
        assert set(config.outputs) == {s.name for s in stage.outputs}
        assert config.max_batch_size == (C.MAX_FRAME_BATCH if stage.frame_path else 1)


def test_an_onnx_exported_at_another_resolution_is_refused(tmp_path):
    config = tb.read_config(CONFIG)
    tb.check_against_config("stage", _stage_like(tmp_path / "ok.onnx", 16), config)  # no error
    with pytest.raises(ValueError, match=r"x: ONNX \(3, 8, 8\) vs config \(3, 16, 16\).*--resolution 512"):
        tb.check_against_config("stage", _stage_like(tmp_path / "small.onnx", 8), config)


def test_tensor_names_must_match_the_config(tmp_path):
    config = tb.read_config(CONFIG.replace('name: "x"', 'name: "image"'))
    with pytest.raises(ValueError, match="ONNX inputs"):
        tb.check_against_config("stage", _stage_like(tmp_path / "m.onnx"), config)


# --- output comparison -----------------------------------------------------------------------------------

def test_compare_outputs_tolerates_small_errors_and_counts_misses():
    ref = {"img": np.linspace(0, 1, 1000, dtype=np.float32), "labels": np.arange(1000, dtype=np.int32) % 8,
           "frame": np.full((10, 10, 3), 100, np.uint8)}
    cand = {"img": ref["img"] + 1e-3, "labels": ref["labels"].copy(), "frame": ref["frame"] + 1}
    cand["labels"][:5] += 1  # 0.5 % of labels moved: within 99 %
    report = tb.compare_outputs(ref, cand, tb.FP16_PARITY)
    assert all(r["ok"] for r in report.values()), report
    assert report["labels"]["fraction"] == pytest.approx(0.995)
    cand["img"] = cand["img"].copy()
    cand["img"][:20] = np.nan  # NaN from an FP16 overflow counts as a miss
    cand["frame"] = ref["frame"] + 9  # 9 levels > 2/255
    report = tb.compare_outputs(ref, cand, tb.FP16_PARITY)
    assert not report["img"]["ok"] and report["img"]["fraction"] == pytest.approx(0.98)
    assert not report["frame"]["ok"]


def test_compare_outputs_refuses_other_shapes():
    with pytest.raises(tb.ParityError, match="shape"):
        tb.compare_outputs({"y": np.zeros((2, 3))}, {"y": np.zeros((3, 2))}, tb.FP32_PARITY)
    with pytest.raises(tb.ParityError, match="missing"):
        tb.compare_outputs({"y": np.zeros(2)}, {"z": np.zeros(2)}, tb.FP32_PARITY)


# --- build and run logic against stand-ins for tensorrt and CUDA -----------------------------------------

class _DType(enum.Enum):
    FLOAT = np.float32
    HALF = np.float16
    INT32 = np.int32


def _fake_tensorrt(layers, calls):
    """Just enough of the TensorRT 10 Python API for build_engine, recording every call."""
    LayerType = enum.Enum("LayerType", "CONVOLUTION REDUCE NORMALIZATION SOFTMAX ELEMENTWISE")

    class Tensor:
        def __init__(self, dtype):
            self.dtype = dtype

    class Layer:
        def __init__(self, name, kind, dtype):
            self.name, self.type, self.num_outputs = name, LayerType[kind], 1
            self._out = Tensor(dtype)
            self.precision = None
            self.output_types = {}

        def get_output(self, k):
            return self._out

        def set_output_type(self, k, dtype):
            self.output_types[k] = dtype

    network = types.SimpleNamespace(layers=[Layer(*spec) for spec in layers])
    network.num_layers = len(network.layers)
    network.get_layer = lambda i: network.layers[i]

    class Cache:
        def __init__(self, blob):
            self.blob = blob

        def serialize(self):
            return self.blob + b"+timed"

    class Config:
        def __init__(self):
            self.flags, self.profiles, self.cache = set(), [], None

        def set_memory_pool_limit(self, pool, size):
            calls["workspace"] = size

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)

        def set_flag(self, flag):
            self.flags.add(flag)

        def create_timing_cache(self, blob):
            calls["cache_in"] = bytes(blob)
            return Cache(bytes(blob))

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache

        def get_timing_cache(self):
            return self.cache

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls["network_flags"] = flags
            return network

        def create_builder_config(self):
            calls["config"] = Config()
            return calls["config"]

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, net, config):
            assert net is network
            calls["built_with"] = config
            return b"PLAN"

    class OnnxParser:
        def __init__(self, net, logger):
            pass

        def parse_from_file(self, path):
            assert "plugins" in calls, "plugins must be registered before parsing (ScatterElements reductions)"
            calls["parsed"] = path
            return True

    def init_libnvinfer_plugins(logger, namespace):
        calls["plugins"] = namespace

    return types.SimpleNamespace(
        __version__="10.5.0", Logger=type("Logger", (), {"WARNING": 2, "VERBOSE": 4, "__init__": lambda s, lvl: None}),
        Builder=Builder, OnnxParser=OnnxParser, network=network, init_libnvinfer_plugins=init_libnvinfer_plugins,
        float32=_DType.FLOAT, float16=_DType.HALF, int32=_DType.INT32,
        MemoryPoolType=types.SimpleNamespace(WORKSPACE="workspace"),
        BuilderFlag=types.SimpleNamespace(FP16="fp16", OBEY_PRECISION_CONSTRAINTS="obey"),
        NetworkDefinitionCreationFlag=types.SimpleNamespace(EXPLICIT_BATCH=0))


def test_build_engine_sets_profile_fp16_constraints_and_timing_cache(tmp_path, monkeypatch):
    calls = {}
    trt = _fake_tensorrt([("conv", "CONVOLUTION", _DType.HALF), ("sum", "REDUCE", _DType.FLOAT),
                          ("argmax", "REDUCE", _DType.INT32), ("norm", "NORMALIZATION", _DType.FLOAT),
                          ("add", "ELEMENTWISE", _DType.FLOAT)], calls)
    monkeypatch.setattr(tb, "import_tensorrt", lambda: trt)
    cache = tmp_path / "cache" / "timing.cache"
    cache.parent.mkdir()
    cache.write_bytes(b"old")
    plan = tmp_path / "gpu" / "stage" / "1" / "model.plan"
    report = tb.build_engine(_stage_like(tmp_path / "m.onnx"), plan, min_batch=1, opt_batch=4, max_batch=8,
                             timing_cache_path=cache, workspace_gib=0.5)

    assert plan.read_bytes() == b"PLAN" and report["plan_bytes"] == 4
    assert calls["network_flags"] == 0  # TensorRT 10: explicit batch without a flag
    config = calls["built_with"]
    assert config.profiles[0].shapes == {"x": ((1, 3, 16, 16), (4, 3, 16, 16), (8, 3, 16, 16))}
    assert config.flags == {"fp16", "obey"}
    assert calls["workspace"] == 1 << 29
    pinned = {layer.name: layer for layer in trt.network.layers if layer.precision is not None}
    assert set(pinned) == {"sum", "norm"}  # the integer argmax and the compute layers are left alone
    assert all(layer.output_types == {0: _DType.FLOAT} for layer in pinned.values())
    assert report["layers_pinned_fp32"] == 2
    assert calls["cache_in"] == b"old" and cache.read_bytes() == b"old+timed"
    assert not list(plan.parent.glob(".*.tmp"))  # written atomically


def test_build_engine_in_fp32_sets_no_precision_flags(tmp_path, monkeypatch):
    calls = {}
    trt = _fake_tensorrt([("sum", "REDUCE", _DType.FLOAT)], calls)
    monkeypatch.setattr(tb, "import_tensorrt", lambda: trt)
    report = tb.build_engine(_stage_like(tmp_path / "m.onnx"), tmp_path / "p.plan", min_batch=1, opt_batch=1,
                             max_batch=1, fp16=False)
    assert calls["built_with"].flags == set() and report["precision"] == "fp32"
    assert trt.network.layers[0].precision is None
    assert "cache_in" not in calls


def test_build_engine_asks_tensorrt_8_for_explicit_batch(tmp_path, monkeypatch):
    calls = {}
    trt = _fake_tensorrt([], calls)
    trt.__version__ = "8.6.1"
    trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH = 0
    monkeypatch.setattr(tb, "import_tensorrt", lambda: trt)
    tb.build_engine(_stage_like(tmp_path / "m.onnx"), tmp_path / "p.plan", min_batch=1, opt_batch=1, max_batch=1)
    assert calls["network_flags"] == 1


class _HostCuda:
    """CudaRuntime's interface over host memory, so the run logic can be followed without a GPU."""

    def __init__(self):
        self.live, self.streams, self.synced = {}, set(), 0

    def malloc(self, nbytes):
        buf = ctypes.create_string_buffer(max(nbytes, 1))
        self.live[ctypes.addressof(buf)] = buf
        return ctypes.addressof(buf)

    def free(self, ptr):
        del self.live[ptr]

    def to_device(self, ptr, array):
        ctypes.memmove(ptr, np.ascontiguousarray(array).ctypes.data, array.nbytes)

    def to_host(self, array, ptr):
        ctypes.memmove(array.ctypes.data, ptr, array.nbytes)

    def stream_create(self):
        self.streams.add(42)
        return 42

    def stream_synchronize(self, stream):
        self.synced += 1

    def stream_destroy(self, stream):
        self.streams.remove(stream)


def _fake_runtime(max_batch=8):
    """An 'engine' computing y = 2 x (float32 in, float16 out) through the named-tensor API."""
    Mode = enum.Enum("TensorIOMode", "INPUT OUTPUT")
    state = {}

    class Context:
        def set_input_shape(self, name, shape):
            if not 1 <= shape[0] <= max_batch:
                return False
            state["shape"] = tuple(shape)
            return True

        def get_tensor_shape(self, name):
            return state["shape"]

        def set_tensor_address(self, name, ptr):
            state[name] = ptr

        def execute_async_v3(self, stream):
            n = int(np.prod(state["shape"]))
            x = np.ctypeslib.as_array((ctypes.c_float * n).from_address(state["x"]))
            y = np.ctypeslib.as_array((ctypes.c_uint16 * n).from_address(state["y"])).view(np.float16)
            y[:] = 2 * x
            state["stream"] = stream
            return True

    class Engine:
        num_io_tensors = 2

        def get_tensor_name(self, i):
            return ["x", "y"][i]

        def get_tensor_mode(self, name):
            return Mode.INPUT if name == "x" else Mode.OUTPUT

        def get_tensor_dtype(self, name):
            return _DType.FLOAT if name == "x" else _DType.HALF

        def create_execution_context(self):
            return Context()

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, blob):
            return Engine() if blob == b"PLAN" else None

    trt = types.SimpleNamespace(Logger=lambda level: None, Runtime=Runtime, TensorIOMode=Mode,
                                nptype=lambda dtype: dtype.value)
    trt.Logger.WARNING = 2
    return trt, state


def test_run_plan_with_tensorrt_binds_named_tensors_and_copies_back():
    trt, state = _fake_runtime()
    cuda = _HostCuda()
    x = np.arange(24, dtype=np.float64).reshape(2, 3, 4)  # float64 in: cast to the engine's float32
    out = tb.run_plan_with_tensorrt(b"PLAN", {"x": x, "unused": np.zeros(1)}, trt=trt, cuda=cuda)
    assert set(out) == {"y"} and out["y"].dtype == np.float16 and out["y"].shape == (2, 3, 4)
    np.testing.assert_array_equal(out["y"], (2 * x).astype(np.float16))
    assert state["stream"] == 42 and cuda.synced == 1
    assert not cuda.live and not cuda.streams  # every buffer and the stream released


def test_run_plan_with_tensorrt_refuses_shapes_outside_the_profile_and_frees_memory():
    trt, _ = _fake_runtime(max_batch=8)
    cuda = _HostCuda()
    with pytest.raises(ValueError, match="outside the plan's optimisation profile"):
        tb.run_plan_with_tensorrt(b"PLAN", {"x": np.zeros((9, 3), np.float32)}, trt=trt, cuda=cuda)
    with pytest.raises(KeyError, match="needs inputs"):
        tb.run_plan_with_tensorrt(b"PLAN", {}, trt=trt, cuda=cuda)
    with pytest.raises(RuntimeError, match="deserialize"):
        tb.run_plan_with_tensorrt(b"garbage", {}, trt=trt, cuda=cuda)
    assert not cuda.live and not cuda.streams


def test_cuda_runtime_without_a_gpu_fails_clearly():
    try:
        cuda = tb.CudaRuntime()
    except tb.CudaError as err:
        assert "libcudart" in str(err)
        return
    if cuda.device_count() > 0:
        pytest.skip("a CUDA GPU is visible here")
    assert not tb.gpu_available()
    with pytest.raises(tb.CudaError, match="cudaMalloc"):
        cuda.malloc(16)


# --- the whole repository, against the stand-in ------------------------------------------------------------

def _onnx_like_export(root: Path, resolution: int) -> Path:
    """<root>/<stage>/1/model.onnx declaring each ONNX stage's contract tensors (the stand-in parses nothing)."""
    kinds = {C.F32: TensorProto.FLOAT, C.I32: TensorProto.INT32, C.U8: TensorProto.UINT8}
    for stage in C.ONNX_STAGES:
        values = [[helper.make_tensor_value_info(s.name, kinds[s.dtype], ["batch", *s.concrete_shape(resolution)])
                   for s in specs] for specs in (stage.inputs, stage.outputs)]
        (root / stage.name / "1").mkdir(parents=True)
        onnx.save(helper.make_model(helper.make_graph([], stage.name, *values)), str(root / stage.name / "1" / "model.onnx"))
    return root


@pytest.fixture
def gpu_repo(tmp_path):
    import shutil

    source = ROOT / "model_repository" / "gpu"
    if not all((source / s.name / "config.pbtxt").exists() for s in C.ONNX_STAGES):
        pytest.skip("the gpu configs are not generated yet")
    shutil.copytree(source, tmp_path / "gpu", ignore=shutil.ignore_patterns("*.plan"))
    return tmp_path / "gpu", tb.read_config((source / "style_generator" / "config.pbtxt").read_text())


def test_build_repository_builds_every_onnx_stage_with_its_config_batch(tmp_path, monkeypatch, gpu_repo):
    from bodydance_export.precision import FP32_STAGES

    gpu, frame_config = gpu_repo
    resolution = frame_config.inputs["source_image"][-1]
    monkeypatch.setattr(tb, "import_tensorrt", lambda: _fake_tensorrt([("sum", "REDUCE", _DType.FLOAT)], {}))
    cpu = _onnx_like_export(tmp_path / "onnx", resolution)
    logged = []
    reports = tb.build_repository(cpu, gpu, timing_cache_path=None, parity="off", log=logged.append)
    by_stage = {r["stage"]: r for r in reports}
    assert set(by_stage) == {s.name for s in C.ONNX_STAGES}
    for stage in C.ONNX_STAGES:
        assert (gpu / stage.name / "1" / "model.plan").read_bytes() == b"PLAN"
        assert by_stage[stage.name]["batch"] == ([1, 4, C.MAX_FRAME_BATCH] if stage.frame_path else [1, 1, 1])
        assert by_stage[stage.name]["precision"] == ("fp32" if stage.name in FP32_STAGES else "fp16")
    assert not (gpu / "subject_reconstruction" / "1" / "model.plan").exists()  # python backend, no plan


def test_build_repository_refuses_a_cpu_resolution_export_before_building(tmp_path, monkeypatch, gpu_repo):
    gpu, frame_config = gpu_repo
    resolution = frame_config.inputs["source_image"][-1]
    monkeypatch.setattr(tb, "import_tensorrt", lambda: _fake_tensorrt([], {}))
    cpu = _onnx_like_export(tmp_path / "onnx", resolution // 2)
    with pytest.raises(ValueError, match="re-export at the GPU resolution"):
        tb.build_repository(cpu, gpu, timing_cache_path=None, parity="off", log=lambda *_: None)
    assert not list(gpu.glob("*/1/model.plan"))


def test_a_plan_failing_parity_is_removed(tmp_path, monkeypatch, gpu_repo):
    gpu, frame_config = gpu_repo
    monkeypatch.setattr(tb, "import_tensorrt", lambda: _fake_tensorrt([], {}))

    def disagree(plan_path, onnx_path, inputs, tol):
        assert set(inputs) == {s.name for s in C.SOURCE_PARSER.inputs}
        raise tb.ParityError("source_parsing: 50% within tolerance")

    monkeypatch.setattr(tb, "check_plan_against_onnx", disagree)
    cpu = _onnx_like_export(tmp_path / "onnx", frame_config.inputs["source_image"][-1])
    with pytest.raises(tb.ParityError, match="plan was removed"):
        tb.build_repository(cpu, gpu, stages=["source_parser"], timing_cache_path=None, parity="on",
                            log=lambda *_: None)
    assert not (gpu / "source_parser" / "1" / "model.plan").exists()


def test_unknown_stages_and_parity_modes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown stages"):
        tb.build_repository(tmp_path, tmp_path, stages=["subject_reconstruction"])
    with pytest.raises(ValueError, match="parity"):
        tb.build_repository(tmp_path, tmp_path, parity="sometimes")
