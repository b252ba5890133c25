"""Client-side gRPC balancing over three real servers: every server serves frames, and one killed
mid-video costs no frame.

Three embedded tritonservers on loopback ports, one ``BodyDanceClient`` on the ``ipv4:`` target over
all three (gRPC's ``round_robin``), the way a client reaches the pods behind the headless Service of
deploy/k8s through ``dns:///``. Who served what comes from Triton's own per-model statistics.
"""

from __future__ import annotations

import threading

import pytest
import tritonclient.grpc as grpcclient

from bodydance.serving.server import EmbeddedTritonServer, prepare_server_dist
from bodydance_client import contract as C
from bodydance_client.policy import balanced_target
from bodydance_client.sdk import BodyDanceClient
from bodydance_client.templates import Template, load_bundled
from bodydance_client.video import read_video

from conftest import same_frame  # noqa: E402

pytestmark = pytest.mark.server

WINDOW = 3
KILL_AFTER = 8  # frames received before the second server is killed


@pytest.fixture(scope="module")
def three_servers(cpu_repository, tmp_path_factory):
    logs = tmp_path_factory.mktemp("three")
    servers = [EmbeddedTritonServer(cpu_repository, log_path=logs / f"server{i}.log") for i in range(3)]
    errors = []
    prepare_server_dist()  # the cached server copy, made once before three start-ups look for it

    def start(server):
        try:
            server.start()
        except Exception as err:  # reported below, after every start has ended
            errors.append(err)
    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=400)
        assert not errors, errors
        yield servers
    finally:
        for server in servers:  # each by the process it started
            server.stop()


@pytest.fixture(scope="module")
def clip():
    dance = load_bundled("disco")
    return Template("clip", dance.fps, dance.poses[:48:2].copy(), dance.translations[:48:2].copy())


def _frames_served(server) -> int:
    """Successful bodydance_frame requests on one server, from Triton's statistics."""
    conn = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        stats = conn.get_inference_statistics(model_name=C.FRAME_ENSEMBLE.name, as_json=True)
    finally:
        conn.close()
    (model,) = stats["model_stats"]
    return int(model["inference_stats"]["success"].get("count", 0))


def test_one_balanced_client_spreads_a_video_over_three_servers_and_survives_losing_one(
        three_servers, clip, astronaut_path, tmp_path):
    target = balanced_target([s.grpc_url for s in three_servers])
    assert target.startswith("ipv4:127.0.0.1:") and target.count(",") == 2
    with BodyDanceClient(target, timeout_s=120, retry_deadline_s=60, window=WINDOW) as client:
        client.wait_until_ready()

        # 1. A whole video through the one client: every server serves some of its frames, once each.
        start = [_frames_served(s) for s in three_servers]
        subject = client.animate(astronaut_path, clip, tmp_path / "balanced.mp4")
        served = [_frames_served(s) - b for s, b in zip(three_servers, start)]
        assert all(n > 0 for n in served), served
        assert sum(served) == clip.num_frames, served
        assert len(read_video(tmp_path / "balanced.mp4")[0]) == clip.num_frames

        # 2. The frames as they should be, in order, while all three serve.
        reference = list(client.frames(subject, clip, crop=False))

        # 3. Again, and the second server is SIGKILLed (by the process this test started) mid-video.
        doomed, survivors = three_servers[1], [three_servers[0], three_servers[2]]
        before = [_frames_served(s) for s in survivors]
        doomed_before, doomed_at_kill = _frames_served(doomed), None
        frames = []
        for frame in client.frames(subject, clip, crop=False):
            frames.append(frame)
            if len(frames) == KILL_AFTER:
                doomed_at_kill = _frames_served(doomed)
                doomed.kill()
        assert not doomed.is_running()
        assert doomed_at_kill > doomed_before  # it was serving this video when it died

    assert len(frames) == clip.num_frames  # every frame once
    assert all(same_frame(a, b) for a, b in zip(frames, reference))  # and in order
    assert not same_frame(frames[0], frames[-1])
    # Frames from KILL_AFTER + WINDOW on were first sent after the kill: only the survivors served them.
    after = sum(_frames_served(s) for s in survivors) - sum(before)
    assert after >= clip.num_frames - (KILL_AFTER + WINDOW), after
