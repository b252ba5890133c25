"""The page's logic without a browser or a server: typed errors -> plain messages, upload checks, cleanup."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from bodydance_client import web
from bodydance_client.errors import (
    BadImageError, BadTemplateError, BodyDanceError, InvalidRequestError, NoPersonError, PhotoNotUprightError,
    RequestTimeoutError, ServerNotReadyError, ServerStartError,
)
from bodydance_client.templates import load_bundled, save_template
from bodydance_client.video import Mp4Writer

TYPED = [
    (NoPersonError("no person found in the photo (MediaPipe pose: 0 landmarks)"), "No person was found"),
    (PhotoNotUprightError("person lies sideways quarter_turns=1"), "upside down or lying on their side"),
    (BadImageError("photo could not be decoded as an image (UnidentifiedImageError: cannot identify image "
                   "file '/tmp/gradio/abc/x.jpg')"), "could not be read as a photo"),
    (BadTemplateError("a dancer was found in only 20% of the frames"),
     "This dance could not be used: A dancer was found in only 20% of the frames."),
    (web.UploadRefusedError("The video is 31 s long; the limit is 20 s. Trim it to the dance"),
     "The video is 31 s long; the limit is 20 s. Trim it to the dance."),
    (ServerNotReadyError("no server at 127.0.0.1:8001 answered within 60 s"), "not answering"),
    (ServerStartError("tritonserver exited: failed to load body_geometry"), "not answering"),
    (RequestTimeoutError("frame 12 did not finish within 60 s"), "too busy"),
    (InvalidRequestError("unexpected shape for input 'photo'"), "refused this request"),
    (RuntimeError("Traceback (most recent call last):\n  File \"/work/x.py\", line 1"), "Something went wrong"),
]


@pytest.mark.parametrize("err,expected", TYPED, ids=[type(e).__name__ for e, _ in TYPED])
def test_every_error_is_one_plain_message(err, expected):
    message = web.user_message(err)
    assert expected in message
    assert "Traceback" not in message and "/tmp" not in message and "/work" not in message and "\n" not in message
    assert "[" not in message  # no server tags such as [no_person]
    status = web.status_markdown(error=err)
    assert status.startswith("**The video was not made.**") and message in status


def test_every_typed_error_class_has_its_own_message():
    generic = web.user_message(RuntimeError("x"))
    classes = [c for c in vars(__import__("bodydance_client.errors", fromlist=["x"])).values()
               if isinstance(c, type) and issubclass(c, BodyDanceError) and c is not BodyDanceError]
    for cls in classes:
        assert web.user_message(cls("something")) != generic, cls


def test_paths_are_dropped_from_error_text():
    err = BadTemplateError("/tmp/gradio/9f/dance.mp4: not a readable video (Invalid data found)")
    assert web.user_message(err) == "This dance could not be used: Not a readable video (Invalid data found)."


def test_a_result_is_reported_with_its_frames_and_size(tmp_path):
    result = web.DanceResult(tmp_path / "a.mp4", tmp_path / "a.png", tmp_path, 150, "jumping_jacks", (512, 512), 2, 6.04)
    text = web.status_markdown(result)
    assert "150 frames" in text and "jumping_jacks" in text and "512 x 512" in text and "6.0 s" in text
    assert "2 people" in text


def test_uploads_are_size_checked(tmp_path):
    big = tmp_path / "big.jpg"
    with open(big, "wb") as f:
        f.truncate(web.MAX_UPLOAD_BYTES + 1)
    with pytest.raises(web.UploadRefusedError, match="the limit is 25 MB"):
        web.check_upload(big, "photo")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(web.UploadRefusedError, match="empty"):
        web.check_upload(tmp_path / "empty.jpg", "photo")
    with pytest.raises(web.UploadRefusedError, match="did not arrive"):
        web.check_upload(tmp_path / "missing.jpg", "photo")


@pytest.fixture
def studio(tmp_path):
    s = web.DanceStudio("127.0.0.1:1", root=tmp_path)
    yield s
    s.close()


def test_a_dance_is_picked_by_name_or_uploaded(studio, tmp_path):
    assert studio.template("wave").num_frames == load_bundled("wave").num_frames
    with pytest.raises(web.UploadRefusedError, match="Pick one of the dances"):
        studio.template("tango")
    with pytest.raises(web.UploadRefusedError, match="Upload a driving video"):
        studio.template(web.OWN_DANCE, None)
    own = save_template(load_bundled("disco"), tmp_path / "mine.npz")
    assert studio.template(web.OWN_DANCE, own).num_frames == load_bundled("disco").num_frames
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(web.UploadRefusedError, match="not a .txt file"):
        studio.template(web.OWN_DANCE, tmp_path / "notes.txt")
    (tmp_path / "bad.npz").write_bytes(b"PK not a zip")
    with pytest.raises(BadTemplateError):
        studio.template(web.OWN_DANCE, tmp_path / "bad.npz")
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(BadTemplateError, match="not a video"):
        studio.template(web.OWN_DANCE, tmp_path / "bad.mp4")


def test_a_long_driving_video_is_refused_before_the_builder_runs(studio, tmp_path, monkeypatch):
    path = tmp_path / "long.mp4"
    fps = 2
    with Mp4Writer(path, fps=fps) as writer:
        for _ in range(int(web.MAX_VIDEO_SECONDS * fps) + 4):
            writer.write(np.full((32, 32, 3), 100, np.uint8))
    assert web.video_length_s(path) > web.MAX_VIDEO_SECONDS

    def never(*a, **k):
        raise AssertionError("the template builder ran on a video over the limit")

    import bodydance.template_builder as builder
    monkeypatch.setattr(builder, "build_template", never)
    with pytest.raises(web.UploadRefusedError, match="the limit is 20 s"):
        studio.template(web.OWN_DANCE, path)


def test_a_photo_is_required(studio):
    with pytest.raises(web.UploadRefusedError, match="Upload a photo first"):
        studio.dance(None, "wave")


def test_job_folders_are_released_swept_and_removed_on_close(studio):
    job = studio.root / "job-1"
    job.mkdir()
    (job / "x.mp4").write_bytes(b"x")
    outside = studio.root.parent / "job-elsewhere"
    outside.mkdir()
    studio.release(outside)  # never anything outside the studio's root
    assert outside.is_dir()
    studio.release(job)
    assert not job.exists()
    stale, fresh = studio.root / "job-stale", studio.root / "job-fresh"
    stale.mkdir()
    fresh.mkdir()
    old = time.time() - studio.job_ttl_s - 5
    os.utime(stale, (old, old))
    assert studio.sweep() == [stale]
    assert fresh.is_dir()
    root = studio.root
    studio.close()
    assert not root.exists()
