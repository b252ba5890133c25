"""The client SDK and CLI against the real server: flavours, shared memory, failover, timeouts, files."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bodydance_client.aio import AsyncBodyDanceClient
from bodydance_client.errors import RequestTimeoutError, ServerNotReadyError
from bodydance_client.sdk import BodyDanceClient
from bodydance_client.templates import Template, load_bundled, save_template
from bodydance_client.video import read_video

from conftest import same_frame  # noqa: E402

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def short_template():
    full = load_bundled("jumping_jacks")
    return Template("short", full.fps, full.poses[:12:3].copy(), full.translations[:12:3].copy())


@pytest.fixture(scope="module")
def reference_frames(client, subject, short_template):
    return list(client.frames(subject, short_template, window=1))


def test_the_sdk_imports_without_torch_or_opencv():
    code = ("import sys, bodydance_client, bodydance_client.sdk, bodydance_client.aio, bodydance_client.cli;"
            "bad = [m for m in ('torch', 'cv2', 'onnxruntime', 'mediapipe') if m in sys.modules];"
            "assert not bad, bad")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_pipelined_frames_come_back_in_order(client, subject, short_template, reference_frames):
    pipelined = list(client.frames(subject, short_template, window=4))
    assert len(pipelined) == short_template.num_frames
    for a, b in zip(pipelined, reference_frames):
        assert same_frame(a, b)
    assert not same_frame(reference_frames[0], reference_frames[-1])


def test_shared_memory_gives_the_same_frames(server, subject, short_template, reference_frames):
    with BodyDanceClient(server.grpc_url, shared_memory=True) as shm_client:
        frames = list(shm_client.frames(subject, short_template))
        status = shm_client._clients[0].get_system_shared_memory_status()
    assert all(same_frame(a, b) for a, b in zip(frames, reference_frames))
    assert not status.regions  # released after the video


def test_asyncio_flavour_matches(server, subject, short_template, reference_frames):
    async def run():
        async with AsyncBodyDanceClient(server.grpc_url, window=3) as aclient:
            prepared = await aclient.prepare(subject.photo)
            return prepared, [f async for f in aclient.frames(subject, short_template)]
    prepared, frames = asyncio.run(run())
    assert np.allclose(prepared.tensors["camera"], subject.tensors["camera"])
    assert all(same_frame(a, b) for a, b in zip(frames, reference_frames))


def test_asyncio_flavour_with_shared_memory_matches_the_sync_client(server, subject, short_template,
                                                                    reference_frames):
    async def run():
        async with AsyncBodyDanceClient(server.grpc_url, shared_memory=True) as aclient:
            await aclient.wait_until_ready(timeout_s=30)
            frames = [f async for f in aclient.frames(subject, short_template)]
            status = await aclient._clients[0].get_system_shared_memory_status()
            return frames, status
    frames, status = asyncio.run(run())
    assert len(frames) == short_template.num_frames
    assert all(same_frame(a, b) for a, b in zip(frames, reference_frames))
    assert not status.regions  # released after the frames


def test_asyncio_animate_writes_the_video_and_the_contact_sheet(server, short_template, astronaut_path, tmp_path):
    seen = []

    async def run():
        async with AsyncBodyDanceClient(server.grpc_url, window=2) as aclient:
            return await aclient.animate(astronaut_path, short_template, tmp_path / "dance.mp4",
                                         contact_sheet_path=tmp_path / "sheet.png",
                                         progress=lambda done, total: seen.append((done, total)))
    subject = asyncio.run(run())
    frames, fps, codec = read_video(tmp_path / "dance.mp4")
    assert codec == "h264" and len(frames) == short_template.num_frames and subject.person_count >= 1
    assert seen == [(i + 1, short_template.num_frames) for i in range(short_template.num_frames)]
    assert (tmp_path / "sheet.png").stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dance.mp4", "sheet.png"]


def test_a_dead_server_in_the_list_is_skipped(server, subject, short_template, reference_frames):
    from bodydance.serving.server import free_port

    dead = f"127.0.0.1:{free_port()}"
    with BodyDanceClient([dead, server.grpc_url], retry_deadline_s=20) as failover:
        frames = list(failover.frames(subject, short_template))
    assert all(same_frame(a, b) for a, b in zip(frames, reference_frames))


def test_no_server_is_a_clear_error_after_the_deadline(subject, short_template):
    from bodydance.serving.server import free_port

    with BodyDanceClient(f"127.0.0.1:{free_port()}", retry_deadline_s=1.0) as nobody:
        with pytest.raises(ServerNotReadyError, match="no server answered"):
            list(nobody.frames(subject, short_template))


def test_timeouts_are_typed(server, subject):
    with BodyDanceClient(server.grpc_url, timeout_s=0.001) as hasty:
        with pytest.raises(RequestTimeoutError):
            hasty.prepare(subject.photo)


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "bodydance_client.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_cli_writes_a_playable_video_and_a_contact_sheet(server, short_template, astronaut_path, tmp_path):
    template = save_template(short_template, tmp_path / "short.npz")
    run = _cli("animate", str(astronaut_path), "-t", str(template), "-o", "dance.mp4", "--contact-sheet",
               "sheet.png", "--url", server.grpc_url, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    frames, fps, codec = read_video(tmp_path / "dance.mp4")
    assert codec == "h264" and len(frames) == short_template.num_frames and fps == pytest.approx(30)
    assert (tmp_path / "sheet.png").stat().st_size > 1000


@pytest.mark.parametrize("photo_bytes, kind", [(b"garbage", "bad_image"), (None, "no_person")])
def test_cli_bad_input_leaves_no_video(server, tmp_path, photo_bytes, kind):
    photo = tmp_path / "photo.png"
    if photo_bytes is None:
        from PIL import Image

        Image.new("RGB", (200, 300), (90, 140, 200)).save(photo)
    else:
        photo.write_bytes(photo_bytes)
    run = _cli("animate", str(photo), "-o", "dance.mp4", "--url", server.grpc_url, cwd=tmp_path)
    assert run.returncode == 2
    assert kind in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


def test_perf_analyzer_runs_against_the_server(server, subject, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from perf_analyzer_runs import run_perf_analyzer, write_inputs

    data = write_inputs(tmp_path / "data", {"photo": subject.photo})
    rows = run_perf_analyzer("bodydance_subject", server.grpc_url, data, tmp_path / "pa.csv", [1],
                             shapes={"photo": subject.photo.shape}, requests_per_window=4,
                             stability_percentage=1000)  # a smoke test of the binary, not a measurement
    assert float(rows[0]["Inferences/Second"]) > 0
