"""Triton model configs, generated from one typed description per model.

Each model is described once (:class:`ModelDescription`, built from the stage
contracts) and rendered into Triton's own ``ModelConfig`` protobuf for a
deployment profile; nothing is string-templated. ``cpu`` runs every stage in
the python backend (ONNX Runtime, or MediaPipe for the reconstruction);
``gpu`` runs the ONNX stages as TensorRT FP16 plans.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from bodydance_client.contract import (
    BODY_GEOMETRY, DEFAULT_RESOLUTION, FRAME_ENSEMBLE, FRAME_GUARD, FRAME_STAGES, MAX_FRAME_BATCH, ONNX_STAGES,
    SUBJECT_ENSEMBLE, SUBJECT_OUTPUTS, SUBJECT_RECONSTRUCTION, SUBJECT_STAGES, TRITON_DTYPE, StageContract,
    checked, staged,
)

PROFILES = ("cpu", "gpu")
GPU_RESOLUTION = 512
RESOLUTION = {"cpu": DEFAULT_RESOLUTION, "gpu": GPU_RESOLUTION}

_DTYPE = {name: pb.DataType.Value(f"TYPE_{name}") for name in TRITON_DTYPE.values()}


@dataclasses.dataclass(frozen=True)
class Batching:
    """Dynamic batching of one model; delays in microseconds."""

    max_batch_size: int
    dynamic: bool = False
    preferred: Tuple[int, ...] = ()
    max_queue_delay_us: int = 0
    max_queue_size: int = 0  # 0: unbounded
    queue_timeout_us: int = 0  # 0: no timeout


@dataclasses.dataclass(frozen=True)
class ModelDescription:
    """What one model is, independent of the profile that serves it."""

    contract: StageContract
    batching: Batching
    instances: int = 1
    kind: str = "onnx"  # "onnx" (ORT in python backend / TensorRT plan), "python", "edge", or "ensemble"
    steps: Tuple[Tuple[str, Dict[str, str], Dict[str, str]], ...] = ()  # ensemble: (model, input_map, output_map)
    parameters: Tuple[Tuple[str, str], ...] = ()


# Frame-path stages batch only what is already queued (no delay) and run two instances: on this
# 2-core CPU that measured best among the variants of benchmarks/batching_sweep.py (26 fps at
# concurrency 1, 41 at 4, against 19 and 24 with a 2 ms batching delay and one instance).
# Overload policy: at most 16 frames wait per stage (about half a second of work); a frame waiting
# longer than 3 s is rejected (UNAVAILABLE) rather than served late. Clients retry idempotent frames
# with backoff, so a burst costs latency, not frames, and the queue cannot grow without bound.
FRAME_BATCHING = Batching(MAX_FRAME_BATCH, dynamic=True, max_queue_delay_us=0, max_queue_size=16,
                          queue_timeout_us=3_000_000)
FRAME_INSTANCES = 2
SUBJECT_BATCHING = Batching(1)


def _identity_map(specs):
    return {s.name: s.name for s in specs}


def _step(contract: StageContract):
    # Stage tensors keep their contract names inside the ensembles, so every map is the identity.
    return (contract.name, _identity_map(contract.inputs), _identity_map(contract.outputs))


def _subject_steps():
    """The subject stages, whose outputs are kept as ``staged_<name>``, then ``subject_outputs`` handing them on."""
    steps = []
    for contract in SUBJECT_STAGES:
        steps.append((contract.name, {s.name: s.name if s in SUBJECT_ENSEMBLE.inputs else staged(s).name
                                      for s in contract.inputs}, {s.name: staged(s).name for s in contract.outputs}))
    steps.append(_step(SUBJECT_OUTPUTS))
    return tuple(steps)


def _frame_steps():
    """``frame_guard`` first; body_geometry reads its checked tensors, so every stage waits on the check."""
    guarded = {s.name[len("checked_"):]: s.name for s in FRAME_GUARD.outputs}
    steps = [_step(FRAME_GUARD)]
    for contract in FRAME_STAGES:
        inputs = _identity_map(contract.inputs)
        if contract is BODY_GEOMETRY:
            inputs.update({name: checked_name for name, checked_name in guarded.items() if name in inputs})
        steps.append((contract.name, inputs, _identity_map(contract.outputs)))
    return tuple(steps)


def describe_models() -> Tuple[ModelDescription, ...]:
    stages = []
    for contract in SUBJECT_STAGES + FRAME_STAGES:
        stages.append(ModelDescription(
            contract,
            FRAME_BATCHING if contract.frame_path else SUBJECT_BATCHING,
            instances=FRAME_INSTANCES if contract.frame_path else 1,
            kind="python" if contract is SUBJECT_RECONSTRUCTION else "onnx",
            # One ONNX Runtime thread per instance: the stages run in processes of their own, and more
            # threads oversubscribe two cores (2 threads: 13.6 fps sequential; 1 thread: 21.5 fps).
            parameters=(("intra_op_threads", "1"),),
        ))
    # The edges: python backend on CPU in both profiles (numpy only; a plan cannot answer INVALID_ARGUMENT).
    # The guard batches what is queued like the stages behind it and runs one instance (it only compares).
    edges = (
        ModelDescription(FRAME_GUARD, FRAME_BATCHING, instances=1, kind="edge"),
        ModelDescription(SUBJECT_OUTPUTS, SUBJECT_BATCHING, instances=1, kind="edge"),
    )
    ensembles = (
        ModelDescription(SUBJECT_ENSEMBLE, SUBJECT_BATCHING, kind="ensemble", steps=_subject_steps()),
        ModelDescription(FRAME_ENSEMBLE, Batching(MAX_FRAME_BATCH), kind="ensemble", steps=_frame_steps()),
    )
    return tuple(stages) + edges + ensembles


def _tensor(spec, resolution: int, io_cls):
    return io_cls(name=spec.name, data_type=_DTYPE[TRITON_DTYPE[spec.dtype]],
                  dims=list(spec.concrete_shape(resolution)))


def to_model_config(desc: ModelDescription, profile: str, resolution: Optional[int] = None) -> pb.ModelConfig:
    """Render one description as Triton's ModelConfig for ``profile`` (at its resolution unless given)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    resolution = resolution or RESOLUTION[profile]
    cfg = pb.ModelConfig(name=desc.contract.name, max_batch_size=desc.batching.max_batch_size)
    cfg.input.extend(_tensor(s, resolution, pb.ModelInput) for s in desc.contract.inputs)
    cfg.output.extend(_tensor(s, resolution, pb.ModelOutput) for s in desc.contract.outputs)

    if desc.kind == "ensemble":
        cfg.platform = "ensemble"
        for model, inputs, outputs in desc.steps:
            cfg.ensemble_scheduling.step.add(model_name=model, model_version=-1, input_map=inputs, output_map=outputs)
        return cfg

    if desc.kind == "onnx" and profile == "gpu":
        cfg.platform = "tensorrt_plan"
        kind = pb.ModelInstanceGroup.Kind.KIND_GPU
    else:
        cfg.backend = "python"
        kind = pb.ModelInstanceGroup.Kind.KIND_CPU
        for key, value in desc.parameters:
            cfg.parameters[key].string_value = value
    cfg.instance_group.add(kind=kind, count=desc.instances)

    b = desc.batching
    if b.dynamic:
        cfg.dynamic_batching.preferred_batch_size.extend(b.preferred)
        cfg.dynamic_batching.max_queue_delay_microseconds = b.max_queue_delay_us
        if b.max_queue_size or b.queue_timeout_us:
            policy = cfg.dynamic_batching.default_queue_policy
            policy.max_queue_size = b.max_queue_size
            policy.default_timeout_microseconds = b.queue_timeout_us
            policy.timeout_action = pb.ModelQueuePolicy.TimeoutAction.REJECT
            policy.allow_timeout_override = True
    return cfg


def render(cfg: pb.ModelConfig) -> str:
    return "# Generated by bodydance.serving.repository from bodydance_client.contract; do not edit.\n" + \
        text_format.MessageToString(cfg)


def onnx_stage_names() -> Tuple[str, ...]:
    return tuple(c.name for c in ONNX_STAGES)
