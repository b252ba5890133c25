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
    template = load_bundled("disco")
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


def test_a_photo_framed_too_close_warns_and_still_dances(client, subject):
    """Grace Hopper's head-and-shoulders portrait fits a camera scale of about 3.6, past the scale the frame
    raster's windows are sized for: prepare() says so; the astronaut (2.5) does not trigger it."""
    import warnings
    from pathlib import Path

    import matplotlib

    assert subject.tensors["camera"][0, 0] < C.MAX_CAMERA_SCALE
    portrait = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    with pytest.warns(RuntimeWarning, match="camera scale 3"):
        close = client.prepare(portrait)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        client.prepare(subject.photo)
    frame = next(iter(client.frames(close, "wave")))
    assert frame.std() > 10


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


def test_a_request_holding_nan_gets_its_own_error_and_spares_its_batch_mates(server, subject):
    """NaN in a subject tensor sent straight to the frame ensemble: INVALID_ARGUMENT naming the tensor,
    while good requests sent at the same time (and maybe batched with it) still get their frames."""
    import queue

    raw = grpcclient.InferenceServerClient(server.grpc_url)
    pose, shift = np.zeros((1, 24, 3), np.float32), np.zeros((1, 3), np.float32)

    def inputs(camera):
        tensors = {s.name: subject.tensors[s.name] for s in C.FRAME_SUBJECT_TENSORS}
        tensors["camera"] = camera
        return [_raw_input(name, value) for name, value in tensors.items()] + [
            _raw_input("target_pose", pose), _raw_input("target_translation", shift)]

    bad_camera = subject.tensors["camera"].copy()
    bad_camera[0, 0] = np.nan
    answers = queue.Queue()
    for label, camera in [("good", subject.tensors["camera"]), ("bad", bad_camera), ("good", subject.tensors["camera"])]:
        raw.async_infer(C.FRAME_ENSEMBLE.name, inputs(camera),
                        callback=lambda result, error, label=label: answers.put((label, result, error)))
    outcomes = [answers.get(timeout=60) for _ in range(3)]
    for label, result, error in outcomes:
        if label == "good":
            assert error is None, error
            assert result.as_numpy(C.FRAME.name).shape[0] == 1
        else:
            assert error is not None and "INVALID_ARGUMENT" in str(error.status())
            assert "camera" in error.message() and "NaN" in error.message()
    raw.close()


# (tensor, a nonsense value put into one element): each quietly gave a background-only frame before
# issue 12; the ranges are the contract's (TensorSpec.valid_range).
_NONSENSE = [("betas", 1e30), ("source_pose", 1e30), ("target_pose", -1e30), ("target_translation", 1e30),
             ("camera", 1e30), ("camera", 0.0), ("region_style", 1e30), ("source_depth", 60000.0),
             ("source_parsing", C.NUM_PARTS), ("source_parsing", 255), ("target_pose", np.inf)]


def test_out_of_range_tensors_are_refused_naming_the_tensor_and_its_range(server, subject):
    raw = grpcclient.InferenceServerClient(server.grpc_url)
    good = {s.name: subject.tensors[s.name] for s in C.FRAME_SUBJECT_TENSORS}
    good["target_pose"], good["target_translation"] = np.zeros((1, 24, 3), np.float32), np.zeros((1, 3), np.float32)
    for name, bad_value in _NONSENSE:
        tensors = dict(good)
        tensors[name] = tensors[name].copy()
        tensors[name].reshape(-1)[0] = bad_value
        with pytest.raises(InferenceServerException) as err:
            raw.infer(C.FRAME_ENSEMBLE.name, [_raw_input(n, v) for n, v in tensors.items()])
        spec = C.TENSORS_BY_NAME[name]
        assert "INVALID_ARGUMENT" in str(err.value.status()), name
        assert f"'{name}'" in err.value.message() and spec.range_text() in err.value.message(), err.value.message()
        assert "[invalid_request]" in err.value.message()
    result = raw.infer(C.FRAME_ENSEMBLE.name, [_raw_input(n, v) for n, v in good.items()])
    assert result.as_numpy(C.FRAME.name).std() > 10  # and good requests still dance
    raw.close()


def test_the_sdk_raises_invalid_request_for_an_out_of_range_subject(client, subject):
    import dataclasses

    from bodydance_client.errors import InvalidRequestError

    tensors = dict(subject.tensors)
    tensors["camera"] = np.array([[1e30, 0.0, 0.0]], np.float32)
    with pytest.raises(InvalidRequestError, match=r"camera.*\[0\.01, 50\]"):
        next(iter(client.frames(dataclasses.replace(subject, tensors=tensors), "wave")))


def test_any_subset_of_the_subject_outputs_can_be_asked_for(server, subject):
    """Triton's ensemble scheduler answered only when the last step made a requested output; asking for
    betas alone (or anything but region_style) failed with "unexpected deadlock"."""
    raw = grpcclient.InferenceServerClient(server.grpc_url)
    photo = _raw_input("photo", subject.photo[None])
    full = raw.infer(C.SUBJECT_ENSEMBLE.name, [photo])
    names = [s.name for s in C.SUBJECT_ENSEMBLE.outputs]
    for subset in [["betas"], ["source_image"], ["person_count"], ["source_parsing", "camera"], ["photo_square"],
                   ["region_style"], names]:
        result = raw.infer(C.SUBJECT_ENSEMBLE.name, [photo], outputs=[grpcclient.InferRequestedOutput(n) for n in subset])
        for name in names:
            if name in subset:
                assert np.array_equal(result.as_numpy(name), full.as_numpy(name)), (subset, name)
            else:
                assert result.as_numpy(name) is None, (subset, name)
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



def test_the_generated_person_moves_with_the_template(client, subject):
    """Where two template frames' true silhouettes differ, each output frame must side with its own.

    Truth: the open-body mesh with the fitted shape and camera, posed by the template, drawn by the
    exact rasteriser. The output's person: pixels that differ from the subject's background plate.
    Measured on the astronaut with jumping jacks: 0.78-0.93 agreement with its own frame's silhouette,
    0.07-0.22 with the other frame's. Bound: > 0.7 own, < 0.3 other.
    """
    import torch

    from bodydance.body import BodyModel, load_open_body_arrays
    from bodydance.reference_render import rasterize

    body, arrays = BodyModel.open_body(), load_open_body_arrays()
    dance = load_bundled("jumping_jacks")
    frames = list(client.frames(subject, dance, crop=False))
    plate = subject.tensors["background"][0].transpose(1, 2, 0).astype(float)

    def silhouette(i):
        with torch.no_grad():
            verts, _ = body(torch.from_numpy(subject.tensors["betas"].copy()), torch.from_numpy(dance.poses[i][None]),
                            torch.from_numpy(dance.translations[i][None]))
        return rasterize(verts[0].numpy(), arrays["faces"], subject.tensors["camera"][0], subject.resolution).silhouette

    for i, j in ((0, 30), (10, 40)):
        person = np.abs(frames[i].astype(float) - plate).sum(-1) > 30
        own, other = silhouette(i), silhouette(j)
        moving = own != other
        assert moving.sum() > 2000
        assert (person[moving] == own[moving]).mean() > 0.7, (i, j)
        assert (person[moving] == other[moving]).mean() < 0.3, (i, j)


def test_serve_command_shuts_down_cleanly_on_sigterm(cpu_repository, tmp_path):
    """`bodydance serve` in the foreground: ready on the chosen port, then SIGTERM stops it and its stubs."""
    import signal
    import subprocess
    import sys
    import time

    import tritonclient.grpc as grpcclient

    from bodydance.serving.server import free_port

    grpc_port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bodydance_client.cli", "serve", "--grpc-port", str(grpc_port),
                             "--http-port", str(free_port()), "--metrics-port", str(free_port()),
                             "--log", str(tmp_path / "serve.log"), "--repository", str(cpu_repository)],
                            stderr=subprocess.PIPE, text=True)
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if client.is_server_ready():
                break
        except Exception:
            pass
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.5)
    assert client.is_model_ready(C.FRAME_ENSEMBLE.name)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    time.sleep(0.5)
    leftovers = [p for p in os.listdir("/proc") if p.isdigit() and "tritonserver" in _cmdline(p)
                 and f"--grpc-port={grpc_port}" in _cmdline(p)]
    assert not leftovers


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
