from bodydance.serving import repository
from bodydance.serving.model_configs import describe_models, to_model_config
from bodydance_client import contract as C


def test_committed_configs_match_the_generator():
    for profile in ("cpu", "gpu"):
        diff = repository.drift(repository.REPOSITORY_ROOT, profile)
        assert diff == "", f"model_repository/{profile} drifted; run python -m bodydance.serving.repository\n{diff}"


def test_drift_is_detected(tmp_path):
    repository.write(tmp_path, "cpu")
    assert repository.drift(tmp_path, "cpu") == ""
    cfg = tmp_path / "cpu" / "body_geometry" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace("max_batch_size: 8", "max_batch_size: 4"))
    assert "max_batch_size: 4" in repository.drift(tmp_path, "cpu")


def test_frame_stages_batch_dynamically_and_profiles_pick_backends():
    for desc in describe_models():
        cpu, gpu = to_model_config(desc, "cpu"), to_model_config(desc, "gpu")
        if desc.kind == "ensemble":
            assert cpu.platform == gpu.platform == "ensemble"
            continue
        assert cpu.backend == "python"
        if desc.kind == "onnx":
            assert gpu.platform == "tensorrt_plan"
        if desc.contract.frame_path:
            assert cpu.HasField("dynamic_batching") and gpu.HasField("dynamic_batching")
            assert cpu.dynamic_batching.default_queue_policy.max_queue_size > 0  # bounded under overload
            assert cpu.max_batch_size == C.MAX_FRAME_BATCH
    geometry = next(d for d in describe_models() if d.contract.name == "body_geometry")
    assert list(to_model_config(geometry, "gpu").output[0].dims) == [2, 512, 512]
    assert list(to_model_config(geometry, "cpu").output[0].dims) == [2, 256, 256]


def test_ensembles_are_wired_completely():
    for desc in describe_models():
        if desc.kind != "ensemble":
            continue
        available = {s.name for s in desc.contract.inputs}
        for model, inputs, outputs in desc.steps:
            stage = next(d for d in describe_models() if d.contract.name == model).contract
            assert set(inputs) == {s.name for s in stage.inputs}
            missing = set(inputs.values()) - available
            assert not missing, f"{desc.contract.name}: step {model} reads {missing} before anything writes it"
            available |= set(outputs.values())
        assert {s.name for s in desc.contract.outputs} <= available


def _steps(ensemble_name):
    return next(d for d in describe_models() if d.contract.name == ensemble_name).steps


def test_every_frame_stage_waits_on_the_range_check_in_both_profiles():
    """No stage model (ONNX Runtime on cpu, a TensorRT plan on gpu) starts on a request that frame_guard
    has not passed: body_geometry reads the guard's checked tensors and every later stage reads its outputs."""
    steps = _steps(C.FRAME_ENSEMBLE.name)
    assert steps[0][0] == C.FRAME_GUARD.name
    produced_by = {tensor: model for model, _, outputs in steps for tensor in outputs.values()}
    behind_guard = {C.FRAME_GUARD.name}
    for model, inputs, _ in steps[1:]:
        assert any(produced_by.get(t) in behind_guard for t in inputs.values()), model
        behind_guard.add(model)
    geometry = dict((m, i) for m, i, _ in steps)[C.BODY_GEOMETRY.name]
    for spec in C.FRAME_GUARD.outputs:  # the small tensors body_geometry reads come checked
        assert geometry[spec.name[len("checked_"):]] == spec.name
    # every frame input but the uint8 images (whose every value is valid) is checked
    assert {s.name for s in C.FRAME_GUARD.inputs} == {s.name for s in C.FRAME_ENSEMBLE.inputs
                                                       if s.dtype is not C.U8 or s.valid_range != (0, 255)}
    guard = next(d for d in describe_models() if d.contract is C.FRAME_GUARD)
    for profile in ("cpu", "gpu"):
        cfg = to_model_config(guard, profile)
        assert cfg.backend == "python" and cfg.instance_group[0].kind == cfg.instance_group[0].KIND_CPU
        assert to_model_config(next(d for d in describe_models() if d.contract.name == "body_geometry"),
                               profile).input[0].name == "betas"


def test_every_request_tensor_has_a_valid_range():
    for spec in C.FRAME_ENSEMBLE.inputs:
        assert spec.valid_range is not None, spec.name
    assert C.SOURCE_PARSING.valid_range == (0, C.NUM_PARTS - 1)


def test_the_subject_ensemble_ends_with_one_step_that_makes_every_output():
    steps = _steps(C.SUBJECT_ENSEMBLE.name)
    assert steps[-1][0] == C.SUBJECT_OUTPUTS.name
    assert set(steps[-1][2].values()) == {s.name for s in C.SUBJECT_ENSEMBLE.outputs}
    for _, _, outputs in steps[:-1]:  # nothing else writes an ensemble output
        assert not set(outputs.values()) & {s.name for s in C.SUBJECT_ENSEMBLE.outputs}


def test_a_frame_request_is_slim():
    """Bytes on the wire per frame (issue 12): at most 0.7 MB at 256, counted from the contract and as
    tritonclient serialises the gRPC request (the tensors plus names, shapes and dtypes)."""
    import numpy as np
    from tritonclient.grpc import _utils

    from bodydance_client.transport import tensor_input

    assert C.frame_request_bytes(256) == 590_976  # was 2_100_352 with float32 images, int32 labels, float32 depth
    assert C.frame_request_bytes(512) == 2_360_448
    inputs = [tensor_input(s, np.zeros((1,) + s.concrete_shape(256), s.dtype)) for s in C.FRAME_ENSEMBLE.inputs]
    request = _utils._get_inference_request(
        model_name=C.FRAME_ENSEMBLE.name, inputs=inputs, model_version="", request_id="", outputs=None,
        sequence_id=0, sequence_start=False, sequence_end=False, priority=0, timeout=None, parameters=None)
    assert C.frame_request_bytes(256) < request.ByteSize() <= 0.7e6


def test_the_readme_table_of_refused_requests_follows_the_contract():
    readme = (repository.REPOSITORY_ROOT.parent / "README.md").read_text()
    table = readme.split("### Requests the server refuses", 1)[1].split("\n\n`bodydance_subject`", 1)[0]
    for spec in C.FRAME_ENSEMBLE.inputs:
        row = next(line for line in table.splitlines() if f"`{spec.name}`" in line)
        if spec.every_value_valid:
            assert "every value" in row
        elif isinstance(spec.valid_range[0], tuple):
            for low, high in zip(*spec.valid_range):
                assert f"[{C._num(low)}, {C._num(high)}]" in row, spec.name
        else:
            assert spec.range_text() in row, spec.name
