"""Integration: the real embedded tritonserver, both ensembles, the SDK and raw tritonclient."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from bodydance_client import contract as C
from bodydance_client.errors import BadImageError, NoPersonError, ServerStartError
from bodydance_client.templates import load_bundled

pytestmark = pytest.mark.server


def _raw_input(name, array, dtype=None):
    tensor = grpcclient.InferInput(name, list(array.shape), dtype or C.TRITON_DTYPE[array.dtype.type])
    tensor.set_data_from_numpy(array)
    return tensor


def test_prepare_returns_the_subject_contract(subject):
    n = C.DEFAULT_RESOLUTION
    for spec in C.SUBJECT_TENSORS:
        value = subject.tensors[spec.name]
        assert value.dtype == spec.dtype, spec.name
        assert value.shape == (1,) + spec.concrete_shape(n), spec.name
        assert np.isfinite(value).all() if value.dtype.kind == "f" else True
    assert subject.person_count >= 1
    mask = subject.tensors["person_mask"][0, 0]
    assert 0.05 < (mask > 0.5).mean() < 0.9  # the astronaut fills a good part of the photo
    parsing = subject.tensors["source_parsing"][0, 0]
    assert {1, 2} <= set(np.unique(parsing).tolist())  # head and torso are seen


def test_frames_are_valid_images_that_move(client, subject):
    template = load_bundled(sorted(__import__("bodydance_client.templates", fromlist=["x"]).bundled_templates())[0])
    frames = []
    for i, frame in enumerate(client.frames(subject, template, window=3)):
        frames.append(frame)
        if i == 8:
            break
    assert len(frames) == 9
    h, w = subject.photo_size
    for frame in frames:
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
        assert abs(frame.shape[0] / frame.shape[1] - h / w) < 0.05
        assert frame.std() > 10  # not a blank image
    assert np.abs(frames[0].astype(int) - frames[8].astype(int)).mean() > 0.5  # the dancer moved


def test_bad_photos_get_typed_errors_and_the_server_stays_up(client, subject):
    with pytest.raises(BadImageError):
        client.prepare(b"\x89PNG but not really")
    with pytest.raises(NoPersonError):
        client.prepare(np.full((200, 160, 3), 127, np.uint8))
    assert client.prepare(subject.photo).person_count >= 1


def test_raw_requests_with_wrong_tensors_are_invalid_argument(server, subject):
    raw = grpcclient.InferenceServerClient(server.grpc_url)
    cases = {
        "dtype": [_raw_input("photo", np.zeros((1, 64, 64, 3), np.float32), "FP32")],
        "shape": [_raw_input("photo", np.zeros((1, 64, 64), np.uint8))],
        "name": [_raw_input("picture", np.zeros((1, 64, 64, 3), np.uint8))],
        "oversized": [_raw_input("photo", np.zeros((1, C.MAX_PHOTO_SIDE + 1, 32, 3), np.uint8))],
        "empty": [_raw_input("photo", np.zeros((1, 0, 32, 3), np.uint8))],
    }
    for case, inputs in cases.items():
        with pytest.raises(InferenceServerException) as err:
            raw.infer(C.SUBJECT_ENSEMBLE.name, inputs)
        assert "INVALID_ARGUMENT" in str(err.value.status()), case
        assert err.value.message(), case
    wrong_pose = [_raw_input(s.name, subject.tensors[s.name]) for s in C.FRAME_SUBJECT_TENSORS]
    wrong_pose += [_raw_input("target_pose", np.zeros((1, 23, 3), np.float32)),
                   _raw_input("target_translation", np.zeros((1, 3), np.float32))]
    with pytest.raises(InferenceServerException) as err:
        raw.infer(C.FRAME_ENSEMBLE.name, wrong_pose)
    assert "INVALID_ARGUMENT" in str(err.value.status())
    assert raw.is_server_ready() and raw.is_model_ready(C.FRAME_ENSEMBLE.name)
    raw.close()


def test_a_model_that_fails_to_load_is_named_at_startup(cpu_repository, tmp_path):
    import shutil

    from bodydance.serving.server import EmbeddedTritonServer

    broken = tmp_path / "repo"
    shutil.copytree(cpu_repository, broken)
    (broken / "parsing_prior" / "1" / "model.onnx").write_bytes(b"this is not onnx")
    with pytest.raises(ServerStartError) as err:
        EmbeddedTritonServer(broken, startup_timeout_s=120).start()
    assert "parsing_prior" in str(err.value)


def test_stop_leaves_no_server_or_stub_processes(cpu_repository, tmp_path):
    from bodydance.serving.server import EmbeddedTritonServer

    server = EmbeddedTritonServer(cpu_repository, log_path=tmp_path / "log.txt").start()
    group = server.process.pid
    stubs = [p for p in os.listdir("/proc") if p.isdigit() and _in_group(int(p), group)]
    assert len(stubs) > 1  # tritonserver and its python-backend stubs share the process group
    server.stop()
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)
    assert (tmp_path / "log.txt").stat().st_size > 0


def _in_group(pid: int, group: int) -> bool:
    try:
        return os.getpgid(pid) == group
    except ProcessLookupError:
        return False

