"""Stand-ins for the GPU-only modules (``tensorrt``, ``polygraphy``) that record what they are asked.

TensorRT and polygraphy install only on an NVIDIA GPU host, so the TensorRT
build step's tests run against these: just enough of the TensorRT 10 builder
API for ``build_engine``, polygraphy's ``EngineFromBytes`` / ``TrtRunner`` /
``cuda.DeviceArray`` for running a plan, and on-disk ``tensorrt`` packages for
the command line run in a subprocess. Each ``install_*`` puts its stand-in into
``sys.modules`` through ``monkeypatch``, so the code's own lazy imports find it.
"""

from __future__ import annotations

import enum
import sys
import types
from pathlib import Path

import numpy as np

# `import tensorrt` in a subprocess: a wheel whose shared libraries are missing, and a bare one that imports.
BROKEN_TENSORRT = "raise OSError('libnvinfer.so.10: cannot open shared object file')\n"
BARE_TENSORRT = "__version__ = '10.5.0'\n"

PLAN = b"PLAN"  # what the stand-in builder serializes, and the only plan the stand-in runner deserializes


def tensorrt_package(root: Path, source: str) -> Path:
    """``<root>/tensorrt/__init__.py`` holding ``source``; put ``root`` on PYTHONPATH to import it."""
    (root / "tensorrt").mkdir(parents=True, exist_ok=True)
    (root / "tensorrt" / "__init__.py").write_text(source)
    return root


class DType(enum.Enum):
    FLOAT = np.float32
    HALF = np.float16
    INT32 = np.int32


def fake_tensorrt(layers=(), calls=None, version: str = "10.5.0"):
    """Just enough of the TensorRT Python API for ``build_engine``, recording every call in ``calls``.

    ``layers``: ``(name, layer type, output dtype)`` of the parsed network.
    """
    calls = {} if calls is None else calls
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
            calls.setdefault("built", []).append(config)
            calls["built_with"] = config
            return PLAN

    class OnnxParser:
        def __init__(self, net, logger):
            pass

        def parse_from_file(self, path):
            assert "plugins" in calls, "plugins must be registered before parsing (ScatterElements reductions)"
            calls["parsed"] = path
            return True

    def init_libnvinfer_plugins(logger, namespace):
        calls["plugins"] = namespace

    class Logger:
        WARNING, VERBOSE = 2, 4

        def __init__(self, level):
            self.level = level

    return types.SimpleNamespace(
        __version__=version, Logger=Logger, Builder=Builder, OnnxParser=OnnxParser, network=network,
        init_libnvinfer_plugins=init_libnvinfer_plugins, calls=calls,
        float32=DType.FLOAT, float16=DType.HALF, int32=DType.INT32,
        MemoryPoolType=types.SimpleNamespace(WORKSPACE="workspace"),
        BuilderFlag=types.SimpleNamespace(FP16="fp16", OBEY_PRECISION_CONSTRAINTS="obey"),
        NetworkDefinitionCreationFlag=types.SimpleNamespace(EXPLICIT_BATCH=0))


def install_tensorrt(monkeypatch, layers=(), version: str = "10.5.0"):
    """:func:`fake_tensorrt` as the ``tensorrt`` module; its ``calls`` record what was asked."""
    trt = fake_tensorrt(layers, version=version)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt


def fake_polygraphy(infer, calls, *, gpu: bool = True, plugins_from=None):
    """``polygraphy``, ``polygraphy.backend.trt`` and ``polygraphy.cuda`` modules, by dotted name.

    The runner answers ``infer(feed_dict)``; only :data:`PLAN` deserializes. With
    ``plugins_from`` (a :func:`fake_tensorrt` calls dict), deserializing asserts
    that TensorRT's plugins were registered first. ``gpu=False``: allocating fails
    as polygraphy does on a host without a CUDA device.
    """

    class EngineFromBytes:
        def __init__(self, serialized_engine):
            calls["plan"] = serialized_engine
            self._blob = serialized_engine

        def __call__(self):
            if plugins_from is not None:
                assert "plugins" in plugins_from, "plugins must be registered before the plan is deserialized"
            if self._blob != PLAN:
                raise RuntimeError("Could not deserialize engine. See log for details.")
            return "engine"

    class TrtRunner:
        def __init__(self, engine):
            self._engine = engine

        def __enter__(self):
            calls["engine"] = self._engine()
            calls["active"] = True
            return self

        def __exit__(self, *exc):
            calls["active"] = False

        def infer(self, feed_dict):
            assert calls.get("active"), "infer outside the runner's context"
            calls["feed"] = dict(feed_dict)
            return infer(feed_dict)

    class DeviceArray:
        def __init__(self, shape=(), dtype=np.float32):
            if not gpu:
                raise RuntimeError("CUDA Error: 100. no CUDA-capable device is detected")
            calls["allocated"] = (tuple(shape), np.dtype(dtype))

        def free(self):
            calls["freed"] = True

    trt = types.ModuleType("polygraphy.backend.trt")
    trt.EngineFromBytes, trt.TrtRunner = EngineFromBytes, TrtRunner
    backend = types.ModuleType("polygraphy.backend")
    backend.trt = trt
    cuda = types.ModuleType("polygraphy.cuda")
    cuda.DeviceArray = DeviceArray
    root = types.ModuleType("polygraphy")
    root.backend, root.cuda = backend, cuda
    return {"polygraphy": root, "polygraphy.backend": backend, "polygraphy.backend.trt": trt, "polygraphy.cuda": cuda}


def install_polygraphy(monkeypatch, infer=lambda feed: {}, *, gpu: bool = True, plugins_from=None) -> dict:
    """:func:`fake_polygraphy` in ``sys.modules``; returns the dict its calls are recorded in."""
    calls: dict = {}
    for name, module in fake_polygraphy(infer, calls, gpu=gpu, plugins_from=plugins_from).items():
        monkeypatch.setitem(sys.modules, name, module)
    return calls


def hide_polygraphy(monkeypatch) -> None:
    """Make ``import polygraphy...`` fail, as where the gpu extra is not installed."""
    for name in ("polygraphy", "polygraphy.backend", "polygraphy.backend.trt", "polygraphy.cuda"):
        monkeypatch.setitem(sys.modules, name, None)
