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
