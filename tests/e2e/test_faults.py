"""Faults: a server killed mid-video, two servers with one killed, shutdown with requests in flight, overload."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from bodydance.serving.model_configs import describe_models, render, to_model_config
from bodydance.serving.server import EmbeddedTritonServer, free_port
from bodydance_client import contract as C
from bodydance_client.sdk import BodyDanceClient, frame_request, tensor_input
from bodydance_client.templates import Template, load_bundled

from conftest import same_frame  # noqa: E402

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def clip():
    dance = load_bundled("wave")
    return Template("clip", dance.fps, dance.poses[:40:2].copy(), dance.translations[:40:2].copy())


@pytest.fixture(scope="module")
def reference(client, subject, clip):
    return list(client.frames(subject, clip, window=1))


def _collect_in_background(client, subject, clip):
    frames, errors = [], []

    def run():
        try:
            for frame in client.frames(subject, clip, window=2):
                frames.append(frame)
        except Exception as err:  # reported to the test
            errors.append(err)
    thread = threading.Thread(target=run)
    thread.start()
    return thread, frames, errors


def _wait_for(frames, count, timeout=120):
    deadline = time.monotonic() + timeout
    while len(frames) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(frames) >= count, "the video did not start"


def test_video_completes_after_the_server_is_killed_and_restarted(cpu_repository, subject, clip, reference, tmp_path):
    port = free_port()
    first = EmbeddedTritonServer(cpu_repository, grpc_port=port, log_path=tmp_path / "first.log").start()
    with BodyDanceClient(f"127.0.0.1:{port}", retry_deadline_s=120) as client:
        thread, frames, errors = _collect_in_background(client, subject, clip)
        _wait_for(frames, 4)
        first.kill()  # SIGKILL, by the process id the test started
        second = EmbeddedTritonServer(cpu_repository, grpc_port=port, log_path=tmp_path / "second.log").start()
        try:
            thread.join(timeout=240)
        finally:
            second.stop()
    assert not errors, errors
    assert len(frames) == clip.num_frames  # every frame once
    assert all(same_frame(a, b) for a, b in zip(frames, reference))  # and in order


def test_video_moves_to_the_second_server_when_the_first_dies(cpu_repository, server, subject, clip, reference, tmp_path):
    doomed = EmbeddedTritonServer(cpu_repository, log_path=tmp_path / "doomed.log").start()
    with BodyDanceClient([doomed.grpc_url, server.grpc_url], retry_deadline_s=60) as client:
        thread, frames, errors = _collect_in_background(client, subject, clip)
        _wait_for(frames, 3)
        doomed.kill()
        thread.join(timeout=240)
    assert not errors, errors
    assert len(frames) == clip.num_frames
    assert all(same_frame(a, b) for a, b in zip(frames, reference))


def test_no_server_coming_back_is_a_clear_error_and_no_video(astronaut_path, tmp_path):
    dead = f"127.0.0.1:{free_port()}"
    run = subprocess.run([sys.executable, "-m", "bodydance_client.cli", "animate", str(astronaut_path), "-o", "v.mp4",
                          "--url", dead, "--timeout-s", "5"], capture_output=True, text=True, cwd=tmp_path, timeout=200)
    assert run.returncode == 2 and "server_not_ready" in run.stderr
    assert list(tmp_path.iterdir()) == []


def test_shutdown_with_requests_in_flight_ends_each_one_clearly(cpu_repository, subject, clip, tmp_path):
    srv = EmbeddedTritonServer(cpu_repository, log_path=tmp_path / "log.txt").start()
    inputs, outputs = frame_request([tensor_input(s, subject.tensors[s.name]) for s in C.FRAME_SUBJECT_TENSORS],
                                    clip.poses[3], clip.translations[3])
    results = []

    def send():
        conn = grpcclient.InferenceServerClient(srv.grpc_url)
        try:
            frame = conn.infer(C.FRAME_ENSEMBLE.name, inputs, outputs=outputs, client_timeout=60).as_numpy("frame")
            results.append(("ok", frame.shape))
        except InferenceServerException as err:
            results.append(("error", str(err.status())))
    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    group = srv.process.pid
    srv.stop()  # SIGTERM: Triton drains, then the group is killed
    for t in threads:
        t.join(timeout=90)
    assert len(results) == 6  # nobody hangs
    for kind, detail in results:
        assert (kind == "ok" and detail == (1,) + C.FRAME.concrete_shape(C.DEFAULT_RESOLUTION)) or \
               (kind == "error" and ("UNAVAILABLE" in detail or "CANCELLED" in detail or "INTERNAL" in detail)), detail
    with pytest.raises(ProcessLookupError):
        import os

        os.killpg(group, 0)


def test_a_full_queue_rejects_with_unavailable_and_the_server_recovers(cpu_repository, subject, clip, tmp_path):
    """A repository whose geometry stage queues at most one frame: a burst of 8 must see rejections."""
    tight = tmp_path / "tight"
    shutil.copytree(cpu_repository, tight)
    desc = next(d for d in describe_models() if d.contract.name == "body_geometry")
    import dataclasses

    strict = dataclasses.replace(desc, batching=dataclasses.replace(desc.batching, max_queue_size=1,
                                                                   max_queue_delay_us=0, preferred=(1,)))
    (tight / "body_geometry" / "config.pbtxt").write_text(render(to_model_config(strict, "cpu")))
    inputs, outputs = frame_request([tensor_input(s, subject.tensors[s.name]) for s in C.FRAME_SUBJECT_TENSORS],
                                    clip.poses[5], clip.translations[5])
    outcomes = []
    with EmbeddedTritonServer(tight, log_path=tmp_path / "log.txt") as srv:
        def send():
            conn = grpcclient.InferenceServerClient(srv.grpc_url)
            try:
                conn.infer(C.FRAME_ENSEMBLE.name, inputs, outputs=outputs, client_timeout=60)
                outcomes.append("ok")
            except InferenceServerException as err:
                outcomes.append(f"{err.status()} {err.message()}")
        threads = [threading.Thread(target=send) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        conn = grpcclient.InferenceServerClient(srv.grpc_url)
        after = conn.infer(C.FRAME_ENSEMBLE.name, inputs, outputs=outputs).as_numpy("frame")
    rejected = [o for o in outcomes if o != "ok"]
    assert rejected and all("UNAVAILABLE" in o for o in rejected), outcomes
    assert "ok" in outcomes and after.shape[0] == 1
